"""Presence reads are O(what they return): the per-user item (``ROOM#<room>/USER#<userId>``)
decides first-join / last-leave in one update, member pages read about a page per source.

Every DynamoDB call is counted by wrapping ``aws_clients.dynamodb()``: items read are a Query's
``ScannedCount``, one per GetItem that found an item, one per update or delete that
returned attributes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.protocol.chat_model import Sender
from multiregion_chat.runtime.store import connection_store, room_store
from tests.unit.conftest import set_store_clock

TTL = 10800
LOBBY = "lobby"
REMOTE = "eu-west-1"
REGION = "us-east-1"


@dataclass
class Call:
    name: str
    read: int


@dataclass
class Meter:
    """Records the DynamoDB calls made through ``aws_clients.dynamodb()``."""

    calls: list[Call] = field(default_factory=list)

    @property
    def read(self) -> int:
        return sum(call.read for call in self.calls)

    def of(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]

    def reset(self) -> None:
        self.calls.clear()


class CountingClient:
    def __init__(self, real: Any, meter: Meter) -> None:
        self._real, self._meter = real, meter

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            response = method(*args, **kwargs)
            if str(kwargs.get("Key", {}).get("pk", {}).get("S", "")).startswith("RATE#"):
                return response  # the request budget (runtime.quota.client_budget), not presence
            if name == "query":
                read = int(response.get("ScannedCount", len(response.get("Items", []))))
            elif name == "get_item":
                read = 1 if response.get("Item") else 0
            else:
                read = 1 if response.get("Attributes") else 0
            self._meter.calls.append(Call(name, read))
            return response

        return call


@pytest.fixture
def meter(chat: Any, monkeypatch: pytest.MonkeyPatch) -> Meter:
    found = Meter()
    real = aws_clients.dynamodb()
    counting = CountingClient(real, found)
    monkeypatch.setattr(aws_clients, "dynamodb", lambda: counting)
    return found


def seed(tables: Any, room: str, users: int, remote: int = 0, prefix: str = "m") -> None:
    """``users`` local members (membership + user item, as ``join`` writes them) and
    ``remote`` present users of another region (``REMOTE#`` items)."""
    expires = int(time.time()) + TTL
    with tables.connections.batch_writer() as batch:
        for n in range(users):
            user, cid = f"{prefix}-{n:05d}", f"{prefix}c{n:05d}"
            batch.put_item(
                Item={
                    "pk": f"ROOM#{room}",
                    "sk": f"CONN#{cid}",
                    "connectionId": cid,
                    "userId": user,
                    "joinedAt": "2026-01-01T00:00:00.000Z",
                    "expiresAt": expires,
                }
            )
            batch.put_item(
                Item={
                    "pk": f"ROOM#{room}",
                    "sk": f"USER#{user}",
                    "userId": user,
                    f"c:{cid}": expires,
                    "v": 1,
                    "expiresAt": expires,
                }
            )
        for n in range(remote):
            user = f"r-{n:05d}"
            batch.put_item(
                Item={
                    "pk": f"ROOM#{room}",
                    "sk": f"REMOTE#{REMOTE}#{user}",
                    "userId": user,
                    "region": REMOTE,
                    "state": "joined",
                    "updatedAt": 1,
                    "expiresAt": expires,
                }
            )


def user_item(tables: Any, user: str, room: str = LOBBY) -> Any:
    return tables.connections.get_item(Key={"pk": f"ROOM#{room}", "sk": f"USER#{user}"}).get("Item")


def presence_events(published: list[Any]) -> list[tuple[str, str]]:
    return [
        (e.detail["event"], e.detail["member"]["userId"])
        for e in published
        if e.detail_type == "chat.presence"
    ]


def join_and_leave_reads(chat: Any, meter: Meter) -> tuple[int, int, int]:
    chat.connect("zc", "zed")
    meter.reset()
    reply = chat.send("zc", {"action": "join", "room": LOBBY, "memberLimit": 0})
    assert reply["type"] == "joined" and reply["members"] == []
    join = meter.read
    assert not [c for c in meter.of("query") if c.read > 1]  # no partition read
    meter.reset()
    assert chat.send("zc", {"action": "leave", "room": LOBBY})["type"] == "left"
    leave = meter.read
    assert meter.of("query") == []
    meter.reset()
    chat.send("zc", {"action": "join", "room": LOBBY, "memberLimit": 0})
    meter.reset()
    chat.disconnect("zc")
    return join, leave, meter.read


# --- reads per operation ---------------------------------------------------------------


def test_join_leave_and_disconnect_read_the_same_whatever_the_room_size(
    chat: Any, tables: Any, meter: Meter, published: list[Any]
) -> None:
    seed(tables, LOBBY, 30, prefix="a")
    small = join_and_leave_reads(chat, meter)
    seed(tables, LOBBY, 270, prefix="b")  # now 300 members
    large = join_and_leave_reads(chat, meter)
    assert small == large
    join, leave, disconnect = large
    assert join <= 4 and leave <= 4 and disconnect <= 6
    assert presence_events(published).count(("joined", "zed")) == 4
    assert presence_events(published).count(("left", "zed")) == 4


def test_a_page_reads_about_a_page_per_region(chat: Any, tables: Any, meter: Meter) -> None:
    seed(tables, LOBBY, 300, remote=300)
    chat.connect("c1", "viewer")
    chat.send("c1", {"action": "join", "room": LOBBY, "memberLimit": 0})
    cursor = None
    seen: list[str] = []
    for _ in range(100):  # bounded: a cursor that never advances fails, never hangs
        meter.reset()
        frame: dict[str, Any] = {"action": "presence", "room": LOBBY, "limit": 50}
        if cursor:
            frame["cursor"] = cursor
        reply = chat.send("c1", frame)
        assert len(reply["members"]) <= 50
        seen += [m["userId"] for m in reply["members"]]
        queried = [c.read for c in meter.of("query")]
        # the local USER# range and eu-west-1's REMOTE# range: <= 52 items each, plus
        # the skip scan that finds the remote regions (one item per region)
        assert sum(queried) <= 2 * 52 + 2, queried
        assert max(queried) <= 52
        cursor = reply.get("next")
        if cursor is None:
            break
    assert seen == sorted(set(seen)) and len(seen) == 601  # every user once, in order


def test_member_presence_reads_the_user_not_the_room(chat: Any, tables: Any, meter: Meter) -> None:
    seed(tables, LOBBY, 200, remote=200)
    meter.reset()
    assert room_store.member_presence(LOBBY, "r-00007") == {"userId": "r-00007", "region": REMOTE}
    assert room_store.member_presence(LOBBY, "m-00007") == {"userId": "m-00007", "region": REGION}
    assert room_store.member_presence(LOBBY, "nobody") is None
    assert meter.read <= 3 * 4


def test_fanout_reads_only_memberships(chat: Any, tables: Any) -> None:
    seed(tables, LOBBY, 5, remote=5)
    ids = [cid for page in room_store.iter_room_connection_ids(LOBBY) for cid in page]
    assert sorted(ids) == [f"mc{n:05d}" for n in range(5)]


# --- first / last decisions --------------------------------------------------------------


def test_two_connections_of_one_user_first_and_last(
    chat: Any, tables: Any, published: list[Any]
) -> None:
    chat.connect("a1", "alice", "Alice")
    chat.connect("a2", "alice", "Alice")
    chat.send("a1", {"action": "join", "room": LOBBY})
    chat.send("a2", {"action": "join", "room": LOBBY})
    assert presence_events(published) == [("joined", "alice")]
    item = user_item(tables, "alice")
    assert {k for k in item if k.startswith("c:")} == {"c:a1", "c:a2"}
    assert item["name"] == "Alice" and room_store.user_connections(LOBBY, "alice") == ["a1", "a2"]
    chat.send("a1", {"action": "leave", "room": LOBBY})
    assert presence_events(published) == [("joined", "alice")]
    assert {k for k in user_item(tables, "alice") if k.startswith("c:")} == {"c:a2"}
    chat.disconnect("a2")
    assert presence_events(published) == [("joined", "alice"), ("left", "alice")]
    assert user_item(tables, "alice") is None  # deleted with the last entry


def test_ping_renews_the_entry_and_an_expired_entry_counts_as_absent(
    chat: Any, tables: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A frozen clock: on a loaded machine the join and the ping may land in
    # different seconds of the real one.
    now = int(time.time())
    set_store_clock(monkeypatch, lambda: now)
    chat.connect("a1", "alice")
    chat.send("a1", {"action": "join", "room": LOBBY})
    before = int(user_item(tables, "alice")["c:a1"])
    set_store_clock(monkeypatch, lambda: now + 60)
    assert chat.send("a1", {"action": "ping"})["type"] == "pong"
    assert int(user_item(tables, "alice")["c:a1"]) == before + 60
    # a1 dies without $disconnect: past its expiry it counts as absent
    set_store_clock(monkeypatch, lambda: now + TTL + 120)
    assert room_store.user_connections(LOBBY, "alice") == []
    assert room_store.member_presence(LOBBY, "alice") is None
    assert room_store.room_members_page(LOBBY, 10) == ([], None)
    published.clear()
    chat.connect("a2", "alice")
    chat.send("a2", {"action": "join", "room": LOBBY})  # first again; prunes a1
    assert presence_events(published) == [("joined", "alice")]
    assert {k for k in user_item(tables, "alice") if k.startswith("c:")} == {"c:a2"}


def test_leaving_with_only_a_stale_entry_left_is_the_last_leave(
    chat: Any, tables: Any, published: list[Any]
) -> None:
    chat.connect("a1", "alice")
    chat.send("a1", {"action": "join", "room": LOBBY})
    tables.connections.update_item(
        Key={"pk": "ROOM#lobby", "sk": "USER#alice"},
        UpdateExpression="SET #c = :old",
        ExpressionAttributeNames={"#c": "c:dead"},
        ExpressionAttributeValues={":old": int(time.time()) - 5},
    )
    published.clear()
    chat.send("a1", {"action": "leave", "room": LOBBY})
    assert presence_events(published) == [("left", "alice")]
    assert user_item(tables, "alice") is None


def test_a_leave_never_recreates_the_user_item(chat: Any, tables: Any) -> None:
    # Nothing here: not a leave (no second "left", no second decrement), nothing written.
    assert connection_store.remove_user_connection(LOBBY, "ghost", "g1") is False
    assert user_item(tables, "ghost") is None


def test_a_join_racing_the_last_leave_keeps_the_item(
    chat: Any, tables: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # alice's a1 leaves while a2 joins: a2's entry lands between a1's REMOVE and the
    # conditional delete of the (then empty) item; the delete must not remove it.
    chat.connect("a1", "alice")
    chat.connect("a2", "alice")
    chat.send("a1", {"action": "join", "room": LOBBY})
    real = aws_clients.dynamodb()

    class Interleaving:
        def __getattr__(self, name: str) -> Any:
            method = getattr(real, name)
            if name != "delete_item":
                return method

            def delete(**kwargs: Any) -> Any:
                if kwargs["Key"]["sk"]["S"] == "USER#alice":
                    monkeypatch.setattr(aws_clients, "dynamodb", lambda: real)
                    assert chat.send("a2", {"action": "join", "room": LOBBY})["type"] == "joined"
                return method(**kwargs)

            return delete

    monkeypatch.setattr(aws_clients, "dynamodb", lambda: Interleaving())
    published.clear()
    chat.send("a1", {"action": "leave", "room": LOBBY})
    # a1's leave was the last (left), a2's join the first after it (joined)
    assert sorted(presence_events(published)) == [("joined", "alice"), ("left", "alice")]
    assert {k for k in user_item(tables, "alice") if k.startswith("c:")} == {"c:a2"}
    assert room_store.member_presence(LOBBY, "alice") == {"userId": "alice", "region": REGION}


def test_entry_removal_failure_never_breaks_a_leave(
    chat: Any, tables: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    chat.connect("a1", "alice")
    chat.send("a1", {"action": "join", "room": LOBBY})

    def broken(*args: Any) -> bool:
        raise RuntimeError("throttled")

    monkeypatch.setattr(connection_store, "remove_user_connection", broken)
    published.clear()
    assert chat.send("a1", {"action": "leave", "room": LOBBY})["type"] == "left"
    assert presence_events(published) == []  # the entry lapses at its expiry instead
    transitions.after_leave(LOBBY, Sender(user_id="", name=None, region=REGION), "x")
