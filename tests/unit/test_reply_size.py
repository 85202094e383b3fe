"""Replies fit API Gateway's WebSocket message limit (issue 8, "Replies that fit").

``history`` and ``joined.missed`` stop before ``MAX_REPLY_BYTES`` and say
``more``; paging on from the last id returns the rest; one message at the
largest body always fits. And the cheaper long poll, counted.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from multiregion_chat.runtime.handlers import client_message_handler
from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol import ids, reply_limits

from .test_http_handler import history_item


def seed_big(tables: Any, room: str, count: int, body: Any) -> list[str]:
    made = [ids.new_id() for _ in range(count)]
    with tables.messages.batch_writer() as batch:
        for message_id in made:
            batch.put_item(Item=history_item(room, message_id, body))
    return made


def reply_bytes(response: dict[str, Any]) -> int:
    return len(response["body"].encode("utf-8"))


def test_history_of_large_messages_is_cut_with_more_and_pages_on(chat: Any, tables: Any) -> None:
    """The issue's case: 100 x 16 KB bodies made a 1.65 MB reply."""
    made = seed_big(tables, "lobby", 100, "x" * 16_000)
    chat.connect("c1")
    chat.send("c1", {"action": "join", "room": "lobby"})
    got: list[str] = []
    pages = 0
    after: str | None = None
    for _ in range(100):  # bounded
        frame = {"action": "history", "room": "lobby", "limit": 100}
        if after:
            frame["after"] = after
        raw = chat.raw("c1", json.dumps(frame), "history")
        assert reply_bytes(raw) <= reply_limits.MAX_REPLY_BYTES
        reply = json.loads(raw["body"])
        assert reply["type"] == "history" and reply["messages"]
        got += [m["id"] for m in reply["messages"]]
        pages += 1
        if not reply["more"]:
            break
        after = reply["messages"][-1]["id"]
    assert got == made  # every message once, in order
    assert pages == 15  # 7 messages of 16 KB per reply (the last page fewer)


def test_one_message_at_the_largest_body_always_fits(
    chat: Any, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "32000")
    monkeypatch.setenv("LOCAL_FAST_PATH_MAX_MEMBERS", "0")  # history holds the seeded ones only
    runtime_settings.reset()
    # 4-byte UTF-8 characters: as ASCII escapes (\\ud83d\\ude00) this would be 96 KB
    body = "\U0001f600" * 7999
    assert len(json.dumps(body, ensure_ascii=False).encode()) <= 32000
    chat.connect("c1")
    chat.send("c1", {"action": "join", "room": "lobby"})
    assert chat.send("c1", {"action": "send", "room": "lobby", "body": body})["type"] == "ack"
    made = seed_big(tables, "lobby", 5, body)
    raw = chat.raw("c1", json.dumps({"action": "history", "room": "lobby"}), "history")
    reply = json.loads(raw["body"])
    assert reply_bytes(raw) <= reply_limits.MAX_REPLY_BYTES
    assert [m["id"] for m in reply["messages"]] == made[:3] and reply["more"] is True
    assert reply["messages"][0]["body"] == body
    # beside a full member page (64 KiB, the most a page holds), one still fits
    members = [{"userId": f"u{n:05d}", "name": "n" * 50, "region": "us-east-1"} for n in range(640)]
    assert 60_000 < reply_limits.encoded_size(members) <= 64 * 1024
    frame = {"type": "joined", "room": "lobby", "members": members, "memberCount": 640}
    message = reply["messages"][0]
    kept, cut = reply_limits.fit_messages(frame, "missed", [message, message])
    assert kept == [message] and cut


def test_joined_missed_is_cut_with_more(chat: Any, tables: Any) -> None:
    chat.connect("c1")
    first = seed_big(tables, "lobby", 1, "a")[0]
    seed_big(tables, "lobby", 40, "y" * 16_000)
    raw = chat.raw("c1", json.dumps({"action": "join", "room": "lobby", "after": first}), "join")
    reply = json.loads(raw["body"])
    assert reply_bytes(raw) <= reply_limits.MAX_REPLY_BYTES
    assert reply["type"] == "joined" and reply["more"] is True
    assert 0 < len(reply["missed"]) < 40


def test_an_oversized_reply_becomes_an_error_frame(
    chat: Any, emitted_metrics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A safety net: no reply the gateway would drop leaves the client waiting."""
    monkeypatch.setattr(
        client_message_handler,
        "dispatch",
        lambda *_: {"type": "pong", "ref": "r", "junk": "z" * 200_000},
    )
    chat.connect("c1")
    reply = chat.send("c1", {"action": "ping", "ref": "r"})
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "internal", "r")
    assert emitted_metrics().get("OversizedReplies") == 1


def test_a_quiet_long_poll_probes_cheaply(
    chat: Any, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queries per 20 s poll of a quiet room: was 81 strongly consistent ones."""
    from multiregion_chat.runtime.handlers import http_handler

    last = seed_big(tables, "lobby", 1, "a")[0]
    start = time.monotonic()
    clock = [start]
    monkeypatch.setattr(http_handler, "monotonic", lambda: clock[0])
    monkeypatch.setattr(http_handler, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    ddb = aws_clients.dynamodb()
    real_query = ddb.query
    queries: list[dict[str, Any]] = []

    def counting(**kwargs: Any) -> Any:
        queries.append(kwargs)
        return real_query(**kwargs)

    monkeypatch.setattr(ddb, "query", counting)
    response = chat.http("GET", query={"after": last, "wait": "20"})
    assert response["json"] == {"messages": [], "more": False}
    assert clock[0] - start == pytest.approx(20.0)
    consistent = [q for q in queries if q.get("ConsistentRead")]
    probes = [q for q in queries if not q.get("ConsistentRead")]
    assert len(consistent) == 1  # the first read only
    assert all(q["Limit"] == 1 and q["ProjectionExpression"] == "#id" for q in probes)
    # 0.25 + 0.5 + 1 s, then every 2 s, the last one cut at the deadline
    assert len(probes) == 13
