"""Presence replication: transitions published, remote presence items, ``member`` frames."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.presence import roster, transitions
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.protocol.chat_model import Sender
from multiregion_chat.runtime.store import room_store
from tests.unit.conftest import TEST_ENV, create_tables, frames_in, set_store_clock
from tests.unit.connections_server import GONE, ConnectionsServer

TTL = 10800


def presence_events(published: list[Any]) -> list[dict[str, Any]]:
    return [e.detail for e in published if e.detail_type == "chat.presence"]


def joined(chat: Any, cid: str, user: str, room: str = "lobby", name: str | None = None) -> None:
    chat.connect(cid, user, name)
    assert chat.send(cid, {"action": "join", "room": room})["type"] == "joined"


def remote(
    event: str = "joined",
    user: str = "dave",
    name: str | None = "Dave",
    region: str = "eu-west-1",
    room: str = "lobby",
    at: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    member = {"userId": user, "region": region}
    if name:
        member["name"] = name
    detail = {
        "originRegion": region,
        "room": room,
        "event": event,
        "member": member,
        "at": ids.now_ms() if at is None else at,
    }
    detail.update(extra)
    return detail


def remote_item(tables: Any, user: str = "dave", region: str = "eu-west-1") -> Any:
    key = {"pk": "ROOM#lobby", "sk": f"REMOTE#{region}#{user}"}
    return tables.connections.get_item(Key=key).get("Item")


# --- publishing on presence (origin region) ------------------------------------------


def test_first_join_publishes_the_contract_event(chat: Any, published: list[Any]) -> None:
    before = ids.now_ms()
    joined(chat, "c1", "alice", name="Alice")
    (event,) = [e for e in published if e.detail_type == "chat.presence"]
    assert (event.source, event.bus) == ("chat.chat", "chat-test-chat-bus")
    assert event.detail == {
        "originRegion": "us-east-1",
        "room": "lobby",
        "event": "joined",
        "member": {"userId": "alice", "name": "Alice", "region": "us-east-1"},
        "at": event.detail["at"],
    }
    assert before <= event.detail["at"] <= ids.now_ms()


def test_second_connection_and_rejoin_do_not_publish(
    chat: Any, published: list[Any], tables: Any
) -> None:
    joined(chat, "c1", "alice")
    joined(chat, "c2", "alice")  # same user, second connection
    chat.send("c1", {"action": "join", "room": "lobby"})  # re-join: no transition
    joined(chat, "c3", "bob")
    assert [(e["event"], e["member"]["userId"]) for e in presence_events(published)] == [
        ("joined", "alice"),
        ("joined", "bob"),
    ]
    # the second connection's membership is marked "not announced" (renewed at its first ping)
    c2 = tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c2"})["Item"]
    c1 = tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c1"})["Item"]
    assert "presenceAt" not in c2 and "presenceAt" in c1


def test_leaving_one_of_two_connections_does_not_publish_left(
    chat: Any, published: list[Any]
) -> None:
    joined(chat, "c1", "alice")
    joined(chat, "c2", "alice")
    published.clear()
    assert chat.send("c1", {"action": "leave", "room": "lobby"})["type"] == "left"
    assert presence_events(published) == []
    assert chat.send("c2", {"action": "leave", "room": "lobby"})["type"] == "left"
    (event,) = presence_events(published)
    assert event["event"] == "left" and event["member"] == {
        "userId": "alice",
        "region": "us-east-1",
    }


def test_join_after_leave_has_a_later_at(chat: Any, published: list[Any]) -> None:
    joined(chat, "c1", "alice")
    chat.send("c1", {"action": "leave", "room": "lobby"})
    chat.send("c1", {"action": "join", "room": "lobby"})
    ats = [e["at"] for e in presence_events(published)]
    assert [e["event"] for e in presence_events(published)] == ["joined", "left", "joined"]
    assert ats == sorted(ats) and len(set(ats)) == 3


def test_a_live_connection_of_the_user_makes_a_join_no_transition(
    chat: Any, published: list[Any], tables: Any
) -> None:
    # What a concurrent first join looks like to the later one: the user item
    # already holds the other connection's live entry, so only that one announces.
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "USER#alice",
            "userId": "alice",
            "c:c0": int(time.time()) + TTL,
            "v": 1,
            "expiresAt": int(time.time()) + TTL,
        }
    )
    joined(chat, "c1", "alice")
    assert presence_events(published) == []
    # an expired (dead) connection does not count, and the join prunes its entry
    tables.connections.put_item(
        Item={
            "pk": "ROOM#other",
            "sk": "USER#alice",
            "userId": "alice",
            "c:c9": int(time.time()) - 1,
            "v": 1,
            "expiresAt": int(time.time()) - 1,
        }
    )
    chat.send("c1", {"action": "join", "room": "other"})
    assert [e["room"] for e in presence_events(published)] == ["other"]
    item = tables.connections.get_item(Key={"pk": "ROOM#other", "sk": "USER#alice"})["Item"]
    assert "c:c9" not in item and "c:c1" in item


def test_disconnect_publishes_left_where_it_was_the_last_connection(
    chat: Any, published: list[Any]
) -> None:
    joined(chat, "c1", "alice", name="Alice")
    chat.send("c1", {"action": "join", "room": "team"})
    joined(chat, "c2", "alice", room="lobby", name="Alice")  # alice stays in lobby via c2
    published.clear()
    assert chat.disconnect("c1") == {"statusCode": 200}
    assert [(e["event"], e["room"]) for e in presence_events(published)] == [("left", "team")]
    assert presence_events(published)[0]["member"] == {
        "userId": "alice",
        "name": "Alice",
        "region": "us-east-1",
    }
    published.clear()
    chat.disconnect("c2")
    assert [(e["event"], e["room"]) for e in presence_events(published)] == [("left", "lobby")]


def test_gone_cleanup_publishes_left(
    chat: Any, published: list[Any], items_of: Any, mgmt: ConnectionsServer
) -> None:
    joined(chat, "c1", "alice")
    published.clear()
    mgmt.script("c1", GONE)
    result = chat.deliver(
        {
            "originRegion": "us-east-1",
            "room": "lobby",
            "id": (message_id := ids.new_id()),
            "sender": {"userId": "bob", "region": "us-east-1"},
            "body": "hi",
            "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
        }
    )
    assert result["gone"] == 1
    assert items_of("c1") == []
    assert [(e["event"], e["member"]["userId"]) for e in presence_events(published)] == [
        ("left", "alice")
    ]


def test_gone_cleanup_of_an_orphan_membership_names_the_user_from_it(
    chat: Any, published: list[Any], tables: Any
) -> None:
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "CONN#orphan",
            "connectionId": "orphan",
            "userId": "zoe",
            "name": "Zoe",
        }
    )
    # The orphan's user entry is still there: this cleanup is zoe's last leave.
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "USER#zoe",
            "userId": "zoe",
            "name": "Zoe",
            "c:orphan": int(time.time()) + TTL,
            "v": 1,
            "expiresAt": int(time.time()) + TTL,
        }
    )
    result = transitions.cleanup_connection("orphan", rooms_hint=("lobby", "never-joined"))
    assert result.removed_rooms == ["lobby"] and result.deleted == 1
    (event,) = presence_events(published)
    assert event["member"] == {"userId": "zoe", "name": "Zoe", "region": "us-east-1"}
    assert tables.connections.scan()["Items"] == []


def test_overlapping_cleanups_of_one_connection_announce_and_count_one_leave(
    chat: Any, published: list[Any], tables: Any
) -> None:
    """$disconnect racing a 410 cleanup (or two 410s): both find the membership,
    only the one that removes the user's entry is the user's last leave."""
    for cid, user in (("a1", "alice"), ("b1", "bob"), ("c1", "carol")):
        chat.connect(cid, user)
        assert chat.send(cid, {"action": "join", "room": "lobby"})["type"] == "joined"
    published.clear()
    alice = Sender(user_id="alice", name=None, region="us-east-1")
    transitions.after_leave("lobby", alice, "a1")
    transitions.after_leave("lobby", alice, "a1")  # the overlapping second cleanup
    assert [e["event"] for e in presence_events(published)] == ["left"]
    assert roster.read("lobby").total == 2


def test_presence_publish_failure_never_breaks_join_or_leave(
    chat: Any, published: list[Any], emitted_metrics: Any, tables: Any
) -> None:
    chat.connect("c1", "alice")
    emitted_metrics()
    with Stubber(aws_clients.events()) as events:
        events.add_client_error("put_events", "AccessDeniedException", http_status_code=400)
        events.add_client_error("put_events", "InternalException", http_status_code=500)
        reply = chat.send("c1", {"action": "join", "room": "lobby", "ref": "j"})
        assert reply["type"] == "joined" and reply["ref"] == "j"
        assert chat.send("c1", {"action": "leave", "room": "lobby"})["type"] == "left"
        events.assert_no_pending_responses()
    assert emitted_metrics()["PresencePublishFailures"] == 2


def test_rejected_presence_entries_are_retried(
    chat: Any, published: list[Any], sleeps: list[float]
) -> None:
    chat.connect("c1", "alice")
    entry = {
        "Source": "chat.chat",
        "DetailType": "chat.presence",
        "Detail": ANY,
        "EventBusName": "chat-test-chat-bus",
    }
    with Stubber(aws_clients.events()) as events:
        failed = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}
        events.add_response("put_events", failed, {"Entries": [entry]})
        ok = {"FailedEntryCount": 0, "Entries": [{"EventId": "e"}]}
        events.add_response("put_events", ok, {"Entries": [entry]})
        assert chat.send("c1", {"action": "join", "room": "lobby"})["type"] == "joined"
        events.assert_no_pending_responses()
    assert len(sleeps) == 1
    # the retry sent the same event again
    first, second = published
    assert first == second and first.detail["event"] == "joined"


def test_ping_renews_presence_when_due_and_repairs_a_failed_announcement(
    chat: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch, tables: Any
) -> None:
    joined(chat, "c1", "alice")
    published.clear()
    assert chat.send("c1", {"action": "ping"}) == {"type": "pong"}
    assert presence_events(published) == []  # announced just now: nothing due
    later = int(time.time()) + TTL // 3 + 1
    set_store_clock(monkeypatch, lambda: later)
    assert chat.send("c1", {"action": "ping"}) == {"type": "pong"}
    (event,) = presence_events(published)
    assert (event["event"], event["refresh"]) == ("joined", True)
    item = tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c1"})["Item"]
    assert int(item["presenceAt"]) == later
    published.clear()
    chat.send("c1", {"action": "ping"})
    assert presence_events(published) == []  # renewed: not due again
    # a second connection never announced: its first ping does
    set_store_clock(monkeypatch, ids.epoch_seconds)
    joined(chat, "c2", "alice")
    published.clear()
    chat.send("c2", {"action": "ping"})
    assert [(e["event"], e.get("refresh")) for e in presence_events(published)] == [
        ("joined", True)
    ]


# --- remote regions' events ------------------------------------------------------------


def test_remote_joined_writes_a_lease_and_pushes_member_frames(
    chat: Any, posted: Any, tables: Any, emitted_metrics: Any
) -> None:
    joined(chat, "c1", "alice")
    joined(chat, "c2", "bob")
    joined(chat, "c-other", "carol", room="other")
    d = remote(at=ids.now_ms())
    emitted_metrics()
    assert chat.deliver(d, "chat.presence") == {
        "status": "delivered",
        "delivered": 2,
        "gone": 0,
        "failed": 0,
        "shards": 0,
        "handedOn": 0,
    }
    frame = {
        "type": "member",
        "room": "lobby",
        "event": "joined",
        "member": {"userId": "dave", "name": "Dave", "region": "eu-west-1"},
    }
    assert posted("c1")[-1] == frame and posted("c2")[-1] == frame
    assert all(f["type"] != "member" or f["room"] == "other" for f in posted("c-other"))
    item = remote_item(tables)
    assert item["userId"] == "dave" and item["name"] == "Dave"
    assert item["region"] == "eu-west-1" and item["state"] == "joined"
    assert int(item["updatedAt"]) == d["at"]
    now = int(time.time())
    assert now + TTL - 5 <= int(item["expiresAt"]) <= now + TTL
    totals = emitted_metrics()
    assert totals["PresenceFrames"] == 1 and totals["DeliveredMessages"] == 2
    reply = chat.send("c1", {"action": "presence", "room": "lobby"})
    assert reply["members"] == [
        {"userId": "alice", "region": "us-east-1"},
        {"userId": "bob", "region": "us-east-1"},
        {"userId": "dave", "name": "Dave", "region": "eu-west-1"},
    ]


def test_member_frame_bytes_on_the_wire(chat: Any, mgmt: ConnectionsServer) -> None:
    joined(chat, "c1", "alice")
    d = remote(name=None)
    data = (
        b'{"type":"member","room":"lobby","event":"joined",'
        b'"member":{"userId":"dave","region":"eu-west-1"}}'
    )
    mgmt.reset()
    assert chat.deliver(d, "chat.presence")["delivered"] == 1
    assert [(p.connection_id, p.body) for p in mgmt.posts()] == [("c1", data)]


def test_older_and_duplicate_events_are_ignored(
    chat: Any, posted: Any, tables: Any, emitted_metrics: Any
) -> None:
    joined(chat, "c1", "alice")
    now = ids.now_ms()
    assert chat.deliver(remote(at=now), "chat.presence")["status"] == "delivered"
    frames = len(posted("c1"))
    emitted_metrics()
    assert chat.deliver(remote(at=now), "chat.presence") == {"status": "stale"}  # duplicate
    assert chat.deliver(remote("left", at=now - 10), "chat.presence") == {"status": "stale"}
    assert chat.deliver(remote(name="Old", at=now - 5), "chat.presence") == {"status": "stale"}
    assert len(posted("c1")) == frames
    item = remote_item(tables)
    assert (item["state"], item["name"], int(item["updatedAt"])) == ("joined", "Dave", now)
    assert emitted_metrics()["StalePresenceEvents"] == 3


def test_left_removes_the_user_and_a_late_joined_cannot_resurrect_it(
    chat: Any, posted: Any, tables: Any
) -> None:
    joined(chat, "c1", "alice")
    now = ids.now_ms()
    chat.deliver(remote(at=now - 100), "chat.presence")
    assert chat.deliver(remote("left", at=now), "chat.presence")["delivered"] == 1
    assert posted("c1")[-1] == {
        "type": "member",
        "room": "lobby",
        "event": "left",
        "member": {"userId": "dave", "name": "Dave", "region": "eu-west-1"},
    }
    members = chat.send("c1", {"action": "presence", "room": "lobby"})["members"]
    assert [m["userId"] for m in members] == ["alice"]
    item = remote_item(tables)
    assert item["state"] == "left" and int(item["updatedAt"]) == now  # the tombstone
    assert int(item["expiresAt"]) >= int(time.time()) + TTL - 5
    frames = len(posted("c1"))
    # a "joined" published before the "left" but delivered after it
    assert chat.deliver(remote(at=now - 50), "chat.presence") == {"status": "stale"}
    assert len(posted("c1")) == frames
    assert [
        m["userId"] for m in chat.send("c1", {"action": "presence", "room": "lobby"})["members"]
    ] == ["alice"]
    # a really newer join is applied
    assert chat.deliver(remote(at=now + 1), "chat.presence")["status"] == "delivered"
    assert remote_item(tables)["state"] == "joined"


def test_left_for_an_unknown_user_and_renewals_push_nothing(
    chat: Any, posted: Any, tables: Any
) -> None:
    joined(chat, "c1", "alice")
    frames = len(posted("c1"))
    now = ids.now_ms()
    assert chat.deliver(remote("left", at=now - 10), "chat.presence") == {"status": "unchanged"}
    assert remote_item(tables)["state"] == "left"
    # a renewal of a user not known here (its "joined" was lost): shown, with a frame
    assert chat.deliver(remote(at=now, refresh=True), "chat.presence")["delivered"] == 1
    frames += 1
    # a renewal of a known user: lease extended, no frame
    assert chat.deliver(remote(at=now + 10, refresh=True), "chat.presence") == {
        "status": "unchanged"
    }
    assert chat.deliver(remote(at=now + 20), "chat.presence") == {"status": "unchanged"}
    assert len(posted("c1")) == frames
    assert int(remote_item(tables)["updatedAt"]) == now + 20


def test_events_from_this_region_write_nothing_but_push_frames(
    chat: Any, posted: Any, tables: Any
) -> None:
    joined(chat, "c1", "alice")
    d = remote(user="bob", name=None, region="us-east-1")
    assert chat.deliver(d, "chat.presence")["delivered"] == 1
    assert posted("c1")[-1]["member"] == {"userId": "bob", "region": "us-east-1"}
    assert remote_item(tables, "bob", "us-east-1") is None
    assert chat.deliver({**d, "refresh": True}, "chat.presence") == {"status": "unchanged"}
    assert not [i for i in tables.connections.scan()["Items"] if i["sk"].startswith("REMOTE#")]


def test_member_frames_follow_the_merged_presence_of_the_user(
    chat: Any, posted: Any, published: list[Any]
) -> None:
    """A user connected in two regions stays listed when one region reports "left"."""
    joined(chat, "c1", "bob")
    joined(chat, "c-alice", "alice", name="Alice")
    now = ids.now_ms()
    chat.deliver(remote(user="alice", name="Alice", at=now), "chat.presence")
    # alice leaves eu-west-1 but is still connected here: "joined" with this region
    chat.deliver(remote("left", user="alice", name="Alice", at=now + 1), "chat.presence")
    local_alice = {"userId": "alice", "name": "Alice", "region": "us-east-1"}
    assert posted("c1")[-1] == {
        "type": "member",
        "room": "lobby",
        "event": "joined",
        "member": local_alice,
    }
    # alice joins eu-west-1 again, then leaves here: the origin's own "left" event
    # shows her in eu-west-1 now
    chat.deliver(remote(user="alice", name="Alice", at=now + 2), "chat.presence")
    published.clear()
    chat.send("c-alice", {"action": "leave", "room": "lobby"})
    (left,) = presence_events(published)
    assert left["event"] == "left" and left["member"] == local_alice
    chat.deliver(left, "chat.presence")
    assert posted("c1")[-1]["event"] == "joined"
    assert posted("c1")[-1]["member"] == {"userId": "alice", "name": "Alice", "region": "eu-west-1"}
    assert chat.send("c1", {"action": "presence", "room": "lobby"})["members"][0] == {
        "userId": "alice",
        "name": "Alice",
        "region": "eu-west-1",
    }
    # and when she is gone everywhere: "left"
    chat.deliver(remote("left", user="alice", name="Alice", at=now + 3), "chat.presence")
    assert posted("c1")[-1] == {
        "type": "member",
        "room": "lobby",
        "event": "left",
        "member": {"userId": "alice", "name": "Alice", "region": "eu-west-1"},
    }


def test_events_older_than_the_lease_are_dropped(chat: Any, tables: Any) -> None:
    old = ids.now_ms() - (TTL + 60) * 1000
    assert chat.deliver(remote(at=old), "chat.presence") == {"status": "stale"}
    assert remote_item(tables) is None


def test_remote_write_failure_raises_for_retry(
    chat: Any, monkeypatch: pytest.MonkeyPatch, emitted_metrics: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("dynamodb down")

    monkeypatch.setattr(room_store, "apply_remote_presence", broken)
    emitted_metrics()
    with pytest.raises(RuntimeError):
        chat.deliver(remote(), "chat.presence")
    assert emitted_metrics()["PresenceWriteFailures"] == 1


def test_gone_during_member_fanout_cleans_up_and_publishes_left(
    chat: Any, published: list[Any], items_of: Any, mgmt: ConnectionsServer
) -> None:
    joined(chat, "c1", "alice")
    published.clear()
    mgmt.script("c1", GONE)
    assert chat.deliver(remote(), "chat.presence")["gone"] == 1
    assert items_of("c1") == []
    assert [(e["event"], e["member"]["userId"]) for e in presence_events(published)] == [
        ("left", "alice")
    ]


# --- presence lists ------------------------------------------------------------------------


def test_presence_lists_each_user_once_across_regions(chat: Any, tables: Any) -> None:
    joined(chat, "c1", "alice", name="Alice")
    now = ids.now_ms()
    # alice is also connected in two other regions; bob only remotely, in two regions
    chat.deliver(remote(user="alice", name="Alice", region="ap-south-1", at=now), "chat.presence")
    chat.deliver(remote(user="alice", name="Alice", region="eu-west-1", at=now), "chat.presence")
    chat.deliver(remote(user="bob", name=None, region="us-west-2", at=now), "chat.presence")
    chat.deliver(remote(user="bob", name="Bob", region="eu-west-1", at=now), "chat.presence")
    chat.deliver(remote(user="carol", region="eu-west-1", at=now), "chat.presence")
    chat.deliver(remote("left", user="carol", region="eu-west-1", at=now + 1), "chat.presence")
    # a lease whose expiry passed (its region stopped renewing it) is not shown
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "REMOTE#sa-east-1#erin",
            "userId": "erin",
            "region": "sa-east-1",
            "state": "joined",
            "updatedAt": now,
            "expiresAt": int(time.time()) - 1,
        }
    )
    reply = chat.send("c1", {"action": "presence", "room": "lobby"})
    assert reply["members"] == [
        {"userId": "alice", "name": "Alice", "region": "us-east-1"},
        {"userId": "bob", "name": "Bob", "region": "eu-west-1"},
    ]
    joined(chat, "c2", "dan")
    reply = chat.send("c2", {"action": "join", "room": "lobby"})
    assert [m["userId"] for m in reply["members"]] == ["alice", "bob", "dan"]


def test_ttl_attributes_on_history_presence_and_connection_items(chat: Any, tables: Any) -> None:
    now = int(time.time())
    joined(chat, "c1", "alice")
    chat.deliver(remote(), "chat.presence")
    message_id = ids.new_id()
    chat.deliver(
        {
            "originRegion": "eu-west-1",
            "room": "lobby",
            "id": message_id,
            "sender": {"userId": "dave", "region": "eu-west-1"},
            "body": 1,
            "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
        }
    )
    expiries = {
        "meta": tables.connections.get_item(Key={"pk": "CONN#c1", "sk": "META"})["Item"],
        "membership": tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c1"})[
            "Item"
        ],
        "remote": remote_item(tables),
        "history": tables.messages.get_item(Key={"room": "lobby", "id": message_id})["Item"],
    }
    for kind, item in expiries.items():
        ttl = 86400 if kind == "history" else TTL
        assert now + ttl - 5 <= int(item["expiresAt"]) <= int(time.time()) + ttl, kind
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    for table in (TEST_ENV["CONNECTIONS_TABLE"], TEST_ENV["MESSAGES_TABLE"]):
        ttl_spec = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl_spec["AttributeName"] == "expiresAt"


# --- two regions, end to end through the handlers -----------------------------------------

OTHER = "eu-west-1"


@pytest.fixture
def two_regions(chat: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tables in a second region and a switch that makes the handlers run "there"."""
    boto3.client("events", region_name=OTHER).create_event_bus(Name=TEST_ENV["EVENT_BUS_NAME"])
    create_tables(OTHER)

    def use(region: str) -> None:
        monkeypatch.setenv("AWS_REGION", region)
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
        aws_clients.reset()

    yield use
    use(TEST_ENV["AWS_REGION"])


def test_presence_flows_between_two_regions(
    chat: Any, two_regions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus: list[dict[str, Any]] = []

    def capture() -> None:
        events = aws_clients.events()
        real = events.put_events

        def recording(**kwargs: Any) -> Any:
            bus.extend(json.loads(e["Detail"]) for e in kwargs["Entries"])
            return real(**kwargs)

        monkeypatch.setattr(events, "put_events", recording)

    def relay() -> None:
        """Deliver what was published to the handler of every region (the rules' job)."""
        pending = list(bus)
        bus.clear()
        for detail in pending:
            for region in ("us-east-1", OTHER):
                two_regions(region)
                chat.deliver(detail, "chat.presence")

    two_regions(OTHER)
    capture()
    joined(chat, "eu-bob", "bob", name="Bob")
    two_regions("us-east-1")
    capture()
    joined(chat, "us-alice", "alice", name="Alice")
    relay()
    alice = {"userId": "alice", "name": "Alice", "region": "us-east-1"}
    bob = {"userId": "bob", "name": "Bob", "region": OTHER}
    # bob (eu-west-1) was told of alice's join; alice of bob's (which happened first)
    assert {"type": "member", "room": "lobby", "event": "joined", "member": alice} in frames_in(
        OTHER, "eu-bob"
    )
    assert {"type": "member", "room": "lobby", "event": "joined", "member": bob} in frames_in(
        "us-east-1", "us-alice"
    )
    for region, connection_id in (("us-east-1", "us-alice"), (OTHER, "eu-bob")):
        two_regions(region)
        reply = chat.send(connection_id, {"action": "presence", "room": "lobby"})
        assert reply["members"] == [alice, bob], region
    two_regions(OTHER)
    capture()
    chat.disconnect("eu-bob")
    relay()
    two_regions("us-east-1")
    assert frames_in("us-east-1", "us-alice")[-1] == {
        "type": "member",
        "room": "lobby",
        "event": "left",
        "member": bob,
    }
    assert chat.send("us-alice", {"action": "presence", "room": "lobby"})["members"] == [alice]
