"""At most ``maxConnectionsPerUser`` open connections per user and region (issue 18, item 4)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.quota import connection_cap


@pytest.fixture
def cap_of_3(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("MAX_CONNECTIONS_PER_USER", "3")
    runtime_settings.reset()
    return 3


def test_a_connect_over_the_cap_is_refused_at_the_handshake(
    chat: Any, tables: Any, cap_of_3: int, emitted_metrics: Any
) -> None:
    for n in range(cap_of_3):
        assert chat.connect(f"c{n}", "alice")["statusCode"] == 200
    emitted_metrics()
    assert chat.connect("c-over", "alice") == {"statusCode": 429}
    assert emitted_metrics()["ConnectionCapRefused"] == 1
    # nothing was recorded for the refused connection
    assert "Item" not in tables.connections.get_item(Key={"pk": "CONN#c-over", "sk": "META"})
    # another user is not affected
    assert chat.connect("c-bob", "bob")["statusCode"] == 200


def test_a_disconnect_frees_a_place(chat: Any, tables: Any, cap_of_3: int) -> None:
    for n in range(cap_of_3):
        chat.connect(f"c{n}", "alice")
    chat.disconnect("c1")
    assert chat.connect("c-new", "alice")["statusCode"] == 200
    assert chat.connect("c-over", "alice")["statusCode"] == 429


def test_a_connection_that_ended_without_disconnect_stops_counting_at_its_expiry(
    chat: Any, tables: Any, cap_of_3: int
) -> None:
    for n in range(cap_of_3):
        chat.connect(f"c{n}", "alice")
    later = int(time.time()) + runtime_settings.get_settings().connection_ttl_seconds + 1
    assert connection_cap.admit("alice", "c-late", cap_of_3, now=later)
    item = tables.connections.get_item(Key={"pk": "CONNS#alice", "sk": "CONNS"})["Item"]
    assert sorted(item["conns"]) == ["c-late"]  # the expired entries were pruned


def test_the_same_connection_is_admitted_again(chat: Any, tables: Any, cap_of_3: int) -> None:
    """API Gateway may invoke $connect twice for one handshake."""
    for n in range(cap_of_3):
        chat.connect(f"c{n}", "alice")
    assert connection_cap.admit("alice", "c2", cap_of_3)


def test_concurrent_connects_never_pass_the_cap(tables: Any, cap_of_3: int) -> None:
    admitted: list[str] = []
    start = threading.Barrier(12)

    def connect(connection_id: str) -> None:
        start.wait()
        if connection_cap.admit("alice", connection_id, cap_of_3):
            admitted.append(connection_id)

    threads = [threading.Thread(target=connect, args=(f"c{n}",)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) <= cap_of_3
    item = tables.connections.get_item(Key={"pk": "CONNS#alice", "sk": "CONNS"})["Item"]
    assert sorted(item["conns"]) == sorted(admitted)
