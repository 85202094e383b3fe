"""The AWS requests ClientMessageHandler makes per frame, counted exactly (issue 16, item 2).

A new request on a frame's path fails this test: adding one is a decision (update the
table here and docs/performance.md's cost table), never an accident. The sandbox's call
bench (``python -m bench --parts calls``) counts the same across every function and region.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from multiregion_chat.runtime.platform import aws_clients, runtime_settings


@pytest.fixture
def requests_made(aws: None) -> Iterator[Counter[str]]:
    """``service:Operation`` of every request the runtime's boto3 clients send."""
    made: Counter[str] = Counter()
    watched = [aws_clients.dynamodb(), aws_clients.events()]

    def record(model: Any, **_: Any) -> None:
        made[f"{model.service_model.service_name}:{model.name}"] += 1

    for client in watched:
        client.meta.events.register("before-call", record)
    yield made
    for client in watched:
        client.meta.events.unregister("before-call", record)


def _count(
    chat: Any, made: Counter[str], connection_id: str, frame: dict[str, Any]
) -> Counter[str]:
    made.clear()
    reply = chat.send(connection_id, frame)
    assert reply["type"] != "error", reply
    return Counter(made)


def test_requests_per_frame(chat: Any, requests_made: Counter[str]) -> None:
    chat.connect("c1", "alice")
    chat.connect("c2", "bob")
    join = _count(chat, requests_made, "c1", {"action": "join", "room": "lobby"})
    chat.send("c2", {"action": "join", "room": "lobby"})
    send = _count(chat, requests_made, "c1", {"action": "send", "room": "lobby", "body": "hi"})
    numbered = _count(
        chat, requests_made, "c1", {"action": "send", "room": "lobby", "body": "n", "seq": 1}
    )
    history = _count(chat, requests_made, "c1", {"action": "history", "room": "lobby"})
    ping = _count(chat, requests_made, "c1", {"action": "ping"})

    # One consistent BatchGetItem reads the budget, META and the sequence; the budget's
    # UpdateItem records the charge. Before issue 16: GetItem x3 (budget, expiry,
    # membership) + UpdateItem, and three more for a numbered send.
    frame_reads = {"dynamodb:BatchGetItem": 1, "dynamodb:UpdateItem": 1}
    # The same-region fast path (issue 17): the members' page that shows the room is small,
    # the conditional history write, the members again after it (the posts themselves go
    # to @connections through the delivery engine, not boto3).
    fast_path = {"dynamodb:Query": 2, "dynamodb:PutItem": 1}
    assert send == Counter({**frame_reads, **fast_path, "events:PutEvents": 1})
    # claim and commit of the seq (the sequence item was read with the frame)
    assert numbered == Counter(
        {**frame_reads, **fast_path, "dynamodb:UpdateItem": 3, "events:PutEvents": 1}
    )
    assert history == Counter({**frame_reads, "dynamodb:Query": 1})
    assert ping["dynamodb:BatchGetItem"] == 1 and "dynamodb:GetItem" not in ping
    assert join["dynamodb:BatchGetItem"] == 1
    assert "dynamodb:GetItem" not in send + numbered + history


def test_without_the_fast_path_a_send_makes_two_dynamodb_requests(
    chat: Any, requests_made: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_FAST_PATH_MAX_MEMBERS", "0")
    runtime_settings.reset()
    chat.connect("c1", "alice")
    chat.send("c1", {"action": "join", "room": "lobby"})
    send = _count(chat, requests_made, "c1", {"action": "send", "room": "lobby", "body": "hi"})
    assert send == Counter(
        {"dynamodb:BatchGetItem": 1, "dynamodb:UpdateItem": 1, "events:PutEvents": 1}
    )
