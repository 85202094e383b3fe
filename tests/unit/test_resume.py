"""Loss-free resume and ordering: ``join`` with ``after``, paging with ``history``,
messages from several regions, and the skew-safe ``ids.resume_after``."""

from __future__ import annotations

import random
from typing import Any

import pytest

from multiregion_chat.runtime.protocol import ids


def message_detail(message_id: str, origin: str, body: Any, room: str = "lobby") -> dict[str, Any]:
    return {
        "originRegion": origin,
        "room": room,
        "id": message_id,
        "sender": {"userId": f"user-{origin}", "region": origin},
        "body": body,
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
    }


@pytest.fixture
def member(chat: Any) -> str:
    chat.connect("c1", "alice")
    assert chat.send("c1", {"action": "join", "room": "lobby"})["type"] == "joined"
    return "c1"


def test_resume_after_250_missed_messages(chat: Any, member: str) -> None:
    base = ids.now_ms() - 60_000
    sent = [ids.new_id(base + i) for i in range(251)]
    for i, message_id in enumerate(sent):
        chat.deliver(message_detail(message_id, "us-east-1", i))
    last_seen, missed = sent[0], sent[1:]
    chat.disconnect(member)

    chat.connect("c2", "alice")
    reply = chat.send("c2", {"action": "join", "room": "lobby", "after": last_seen})
    assert [m["id"] for m in reply["missed"]] == missed[:100]
    assert reply["more"] is True
    received = [m["id"] for m in reply["missed"]]
    pages = 0
    more = reply["more"]
    while more:
        page = chat.send(
            "c2", {"action": "history", "room": "lobby", "after": received[-1], "limit": 100}
        )
        received += [m["id"] for m in page["messages"]]
        more = page["more"]
        pages += 1
    assert pages == 2
    assert received == missed  # every missed message once, oldest first
    assert [m["body"] for m in reply["missed"][:3]] == [1, 2, 3]


def test_history_orders_messages_from_several_regions_by_id(chat: Any, member: str) -> None:
    base = ids.now_ms() - 10_000
    regions = ["us-east-1", "eu-west-1", "ap-south-1"]
    # interleaved by time: region i accepted a message at base + 3k + i
    expected = [
        (ids.new_id(base + 3 * k + i), region)
        for k in range(10)
        for i, region in enumerate(regions)
    ]
    delivery = list(expected)
    random.Random(7).shuffle(delivery)  # replication delivers them in any order
    for message_id, region in delivery:
        chat.deliver(message_detail(message_id, region, region))
    page = chat.send(member, {"action": "history", "room": "lobby", "limit": 100})
    assert [m["id"] for m in page["messages"]] == sorted(i for i, _ in expected)
    assert [m["sender"]["region"] for m in page["messages"]] == [r for _, r in expected]
    assert [m["body"] for m in page["messages"]][:3] == regions
    reply = chat.send(member, {"action": "join", "room": "lobby", "after": expected[4][0]})
    assert [m["id"] for m in reply["missed"]] == [i for i, _ in expected[5:]]


def test_resume_window_catches_a_late_replicated_message(chat: Any, member: str) -> None:
    """A message with a smaller id that reaches history after the client saw a
    larger one is missed by ``after = last id``, caught with ``resume_after``."""
    now = ids.now_ms()
    early_remote = ids.new_id(now - 800)  # accepted in eu-west-1, replicated late
    local = ids.new_id(now - 500)
    chat.deliver(message_detail(local, "us-east-1", "local"))
    seen = chat.send(member, {"action": "history", "room": "lobby"})["messages"]
    assert [m["id"] for m in seen] == [local]
    chat.deliver(message_detail(early_remote, "eu-west-1", "late"))  # arrives now

    naive = chat.send(member, {"action": "join", "room": "lobby", "after": local})
    assert naive["missed"] == []  # the limit documented in runtime.protocol.ids
    after = ids.resume_after(local)  # 5 s window
    safe = chat.send(member, {"action": "join", "room": "lobby", "after": after})
    have = {m["id"] for m in seen}
    new = [m for m in safe["missed"] if m["id"] not in have]  # de-duplicate by id
    assert [m["id"] for m in new] == [early_remote]


def id_at(ms: int, random_part: str = "0" * 16) -> str:
    """An id with exactly this timestamp (new_id is monotonic, so it may not give one)."""
    return ids._encode(ms, 10) + random_part


def test_resume_after_bounds() -> None:
    ts = 1_700_000_000_000
    last = id_at(ts, "7" * 16)
    bound = ids.resume_after(last, 5_000)
    assert ids.is_valid_id(bound)
    assert ids.id_timestamp_ms(bound) == ts - 5_001
    assert bound == id_at(ts - 5_001, "Z" * 16)
    # every id of the window's first millisecond is after the bound, none before it
    assert id_at(ts - 5_000) > bound
    assert id_at(ts - 5_001, "Z" * 16) <= bound
    assert ids.resume_after(last, 0) < id_at(ts)
    assert ids.resume_after(last) == bound  # 5 s is the default
    assert ids.resume_after(last, ts) == "0" * 26
    assert ids.resume_after(last, ts + 1) == "0" * 26
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            ids.resume_after(last, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ids.resume_after("nope")
