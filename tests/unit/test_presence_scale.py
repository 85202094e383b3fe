"""Presence at scale: ``memberCount`` (runtime.presence.roster), quiet big rooms, paged member
lists."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.presence import roster
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.store import room_store
from tests.unit.connections_server import GONE, ConnectionsServer

LOBBY = "lobby"


@pytest.fixture
def threshold(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set PRESENCE_LIVE_MAX_MEMBERS for this test (small rooms stand in for big ones)."""

    def set_to(value: int) -> None:
        monkeypatch.setenv("PRESENCE_LIVE_MAX_MEMBERS", str(value))
        runtime_settings.reset()

    yield set_to
    runtime_settings.reset()


class Room:
    """Joins users and relays the presence events they publish to the event handler,
    as the region's delivery rule does."""

    def __init__(self, chat: Any, published: list[Any]) -> None:
        self.chat, self.published, self.relayed = chat, published, 0

    def pump(self) -> list[dict[str, Any]]:
        events = [e.detail for e in self.published if e.detail_type == "chat.presence"]
        new, self.relayed = events[self.relayed :], len(events)
        return [self.chat.deliver(detail, "chat.presence") for detail in new]

    def join(self, cid: str, user: str, **extra: Any) -> dict[str, Any]:
        self.chat.connect(cid, user)
        reply = self.chat.send(cid, {"action": "join", "room": LOBBY, **extra})
        assert reply["type"] == "joined", reply
        self.pump()
        return reply


@pytest.fixture
def room(chat: Any, published: list[Any]) -> Room:
    return Room(chat, published)


def remote(event: str, user: str, region: str = "eu-west-1", at: int | None = None) -> dict:
    return {
        "originRegion": region,
        "room": LOBBY,
        "event": event,
        "member": {"userId": user, "region": region},
        "at": ids.now_ms() if at is None else at,
    }


def count_item(tables: Any) -> Any:
    return tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "COUNT"}).get("Item")


def member_count(chat: Any, cid: str) -> int:
    reply = chat.send(cid, {"action": "presence", "room": LOBBY, "limit": 0})
    assert reply["members"] == [] and "next" not in reply
    return int(reply["memberCount"])


# --- memberCount ---------------------------------------------------------------------


def test_count_follows_first_join_and_last_leave_of_each_user(
    room: Room, chat: Any, tables: Any
) -> None:
    room.join("a1", "alice")
    room.join("a2", "alice")  # second connection: no transition
    chat.send("a1", {"action": "join", "room": LOBBY})  # re-join: no transition
    room.join("b1", "bob")
    assert member_count(chat, "a1") == 2
    assert chat.send("a1", {"action": "leave", "room": LOBBY})["type"] == "left"
    assert member_count(chat, "b1") == 2  # alice still has a2
    chat.disconnect("a2")
    assert member_count(chat, "b1") == 1
    chat.disconnect("b1")
    # back to zero: the count item is gone (nothing left in the room's partition)
    assert count_item(tables) is None
    assert not [i for i in tables.connections.scan()["Items"] if i["pk"].startswith("ROOM#")]


def test_gone_cleanup_decrements_the_count(
    room: Room, chat: Any, mgmt: ConnectionsServer, tables: Any
) -> None:
    room.join("a1", "alice")
    room.join("b1", "bob")
    mgmt.script("a1", GONE)
    message_id = ids.new_id()
    detail = {
        "originRegion": "us-east-1",
        "room": LOBBY,
        "id": message_id,
        "sender": {"userId": "bob", "region": "us-east-1"},
        "body": "hi",
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
    }
    assert chat.deliver(detail)["gone"] == 1
    assert member_count(chat, "b1") == 1
    assert int(count_item(tables)["n:us-east-1"]) == 1


def test_remote_events_count_once_and_never_below_zero(room: Room, chat: Any, tables: Any) -> None:
    room.join("a1", "alice")
    now = ids.now_ms()
    assert chat.deliver(remote("joined", "dave", at=now), "chat.presence")["status"] == "delivered"
    assert chat.deliver(remote("joined", "dave", at=now), "chat.presence")["status"] == "stale"
    renewal = {**remote("joined", "dave", at=now + 1), "refresh": True}
    assert chat.deliver(renewal, "chat.presence")["status"] == "unchanged"
    assert member_count(chat, "a1") == 2
    assert int(count_item(tables)["n:eu-west-1"]) == 1
    chat.deliver(remote("left", "dave", at=now + 2), "chat.presence")
    chat.deliver(remote("left", "dave", at=now + 3), "chat.presence")  # unchanged: no -1
    chat.deliver(remote("left", "erin", at=now + 4), "chat.presence")  # unknown user
    assert member_count(chat, "a1") == 1
    assert int(count_item(tables)["n:eu-west-1"]) == 0


def test_a_decrement_never_makes_a_count_negative(aws: None, tables: Any) -> None:
    roster.add(LOBBY, "us-east-1", -1)
    assert count_item(tables) is None
    roster.add(LOBBY, "us-east-1", +1)
    roster.add(LOBBY, "eu-west-1", +1)
    roster.add(LOBBY, "us-east-1", -1)
    roster.add(LOBBY, "us-east-1", -1)
    assert roster.read(LOBBY).total == 1
    roster.add(LOBBY, "eu-west-1", -1)
    assert count_item(tables) is None


def test_count_failures_never_break_join_or_leave(
    room: Room, chat: Any, monkeypatch: pytest.MonkeyPatch, emitted_metrics: Any
) -> None:
    ddb = aws_clients.dynamodb()
    real = ddb.update_item

    def failing(**kwargs: Any) -> Any:
        if kwargs["Key"]["sk"]["S"] == roster.COUNT_SK:
            raise RuntimeError("dynamodb down")
        return real(**kwargs)

    monkeypatch.setattr(ddb, "update_item", failing)
    emitted_metrics()
    room.join("a1", "alice")
    assert chat.send("a1", {"action": "leave", "room": LOBBY})["type"] == "left"
    assert emitted_metrics()["PresenceCountFailures"] == 2


# --- quiet big rooms ---------------------------------------------------------------------


def frames(mgmt: ConnectionsServer, cid: str) -> list[dict[str, Any]]:
    return [json.loads(p.body) for p in mgmt.posts(cid)]


def test_above_the_threshold_joins_push_no_member_frames(
    room: Room, chat: Any, mgmt: ConnectionsServer, threshold: Any
) -> None:
    threshold(2)
    room.join("c0", "u0")
    room.join("c1", "u1")
    assert [f["type"] for f in frames(mgmt, "c0")] == ["member", "member"]
    mgmt.reset()
    # the third member makes the room quiet: one "members" frame to everybody, no "member"
    reply = room.join("c2", "u2")
    assert (reply["memberCount"], reply["live"]) == (3, False)
    switch = {"type": "members", "room": LOBBY, "live": False, "memberCount": 3}
    assert {cid: frames(mgmt, cid) for cid in ("c0", "c1", "c2")} == {
        "c0": [switch],
        "c1": [switch],
        "c2": [switch],
    }
    mgmt.reset()
    # from now on joins, leaves and remote changes cost no post at all
    room.join("c3", "u3")
    room.join("c4", "u4")
    chat.send("c4", {"action": "leave", "room": LOBBY})
    outcomes = room.pump()
    outcomes.append(chat.deliver(remote("joined", "dave"), "chat.presence"))
    assert [o["status"] for o in outcomes] == ["quiet", "quiet"]
    assert mgmt.posts() == []
    assert member_count(chat, "c0") == 5  # u0-u3 and dave
    # back at the threshold: one "members" frame with live: true, then member frames again
    for cid in ("c3", "c2"):
        chat.disconnect(cid)  # (their "left" events are relayed after dave's below)
    chat.deliver(remote("left", "dave"), "chat.presence")
    room.pump()
    left = [("dave", "eu-west-1"), ("u3", "us-east-1"), ("u2", "us-east-1")]
    assert frames(mgmt, "c0") == [
        {"type": "members", "room": LOBBY, "live": True, "memberCount": 2},
        *(
            {"type": "member", "room": LOBBY, "event": "left", "member": {"userId": u, "region": r}}
            for u, r in left
        ),
    ]
    assert chat.send("c0", {"action": "presence", "room": LOBBY})["live"] is True


def test_a_failing_count_read_keeps_member_frames_live(
    room: Room, chat: Any, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    room.join("c0", "u0")

    def broken(room: str) -> Any:
        raise RuntimeError("dynamodb down")

    monkeypatch.setattr(roster, "read", broken)
    assert chat.deliver(remote("joined", "dave"), "chat.presence")["delivered"] == 1


# --- paged member lists --------------------------------------------------------------------


def test_paging_returns_every_member_exactly_once_in_order(
    room: Room, chat: Any, threshold: Any
) -> None:
    threshold(3)
    for i in range(7):
        room.join(f"c{i}", f"user-{i}")
    now = ids.now_ms()
    for user in ("dave", "user-3", "zed"):  # user-3 is also local: listed once, here
        chat.deliver({**remote("joined", user, at=now)}, "chat.presence")
    everyone = chat.send("c0", {"action": "presence", "room": LOBBY})
    assert "next" not in everyone and len(everyone["members"]) == 9
    seen: list[dict[str, str]] = []
    cursor = None
    pages = 0
    for _ in range(20):  # bounded: a cursor that never advances fails, never hangs
        frame: dict[str, Any] = {"action": "presence", "room": LOBBY, "limit": 2, "ref": "p"}
        if cursor is not None:
            frame["cursor"] = cursor
        reply = chat.send("c0", frame)
        assert reply["ref"] == "p" and len(reply["members"]) <= 2
        assert (reply["memberCount"], reply["live"]) == (10, False)
        seen.extend(reply["members"])
        pages += 1
        if "next" not in reply:
            break
        cursor = reply["next"]
        assert cursor == reply["members"][-1]["userId"]
    assert pages == 5
    assert seen == everyone["members"]
    assert [m["userId"] for m in seen] == sorted({m["userId"] for m in seen})
    assert {m["userId"]: m["region"] for m in seen}["user-3"] == "us-east-1"


def test_join_pages_its_member_list_with_member_limit(room: Room, chat: Any) -> None:
    for i in range(3):
        room.join(f"c{i}", f"user-{i}")
    chat.connect("c9", "user-9")
    reply = chat.send("c9", {"action": "join", "room": LOBBY, "memberLimit": 2})
    assert [m["userId"] for m in reply["members"]] == ["user-0", "user-1"]
    assert reply["membersNext"] == "user-1" and reply["memberCount"] == 4
    rest = chat.send("c9", {"action": "presence", "room": LOBBY, "cursor": reply["membersNext"]})
    assert [m["userId"] for m in rest["members"]] == ["user-2", "user-9"] and "next" not in rest
    reply = chat.send("c9", {"action": "join", "room": LOBBY, "memberLimit": 0})
    assert reply["members"] == [] and "membersNext" not in reply and reply["memberCount"] == 4


def test_a_page_stops_below_the_byte_budget(
    room: Room, chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        room.join(f"c{i}", f"user-{i}")
    entry = len(json.dumps({"userId": "user-0", "region": "us-east-1"}, separators=(",", ":")))
    monkeypatch.setattr(room_store, "MEMBER_PAGE_BYTES", 2 + 2 * (entry + 1))
    reply = chat.send("c0", {"action": "presence", "room": LOBBY})
    assert [m["userId"] for m in reply["members"]] == ["user-0", "user-1"]
    assert reply["next"] == "user-1"


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"action": "presence", "limit": "5"}, "'limit'"),
        ({"action": "presence", "limit": True}, "'limit'"),
        ({"action": "presence", "limit": 1.5}, "'limit'"),
        ({"action": "presence", "limit": -1}, "'limit'"),
        ({"action": "presence", "limit": 501}, "'limit'"),
        ({"action": "presence", "cursor": 5}, "'cursor'"),
        ({"action": "presence", "cursor": ""}, "'cursor'"),
        ({"action": "presence", "cursor": "x" * 129}, "'cursor'"),
        ({"action": "join", "memberLimit": "all"}, "'memberLimit'"),
        ({"action": "join", "memberLimit": 1000}, "'memberLimit'"),
    ],
)
def test_bad_page_fields_are_bad_request(chat: Any, frame: dict[str, Any], field: str) -> None:
    chat.connect("c1", "alice")
    chat.send("c1", {"action": "join", "room": LOBBY})
    reply = chat.send("c1", {**frame, "room": LOBBY, "ref": "r"})
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "bad_request", "r")
    assert field in reply["message"]


def test_null_page_fields_count_as_absent(room: Room, chat: Any) -> None:
    room.join("c1", "alice")
    reply = chat.send("c1", {"action": "presence", "room": LOBBY, "limit": None, "cursor": None})
    assert [m["userId"] for m in reply["members"]] == ["alice"]
    reply = chat.send("c1", {"action": "join", "room": LOBBY, "memberLimit": None})
    assert [m["userId"] for m in reply["members"]] == ["alice"]
