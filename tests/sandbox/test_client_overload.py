"""A slow region is not a dead one: a join without an answer is asked again on the same
connection while ``ping`` is answered, with a growing, jittered, capped wait; live messages that
arrive meanwhile are held and merged with the catch-up, each shown once (scripted socket)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from test_sandbox_cli_client import FakeSocket, _entry, _ids, _shown, join_refused

from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.clients.session import ChatSession
from multiregion_chat.runtime.protocol.ids import resume_after as ids_resume_after

Frame = dict[str, Any]


def _slow_options(**more: Any) -> ClientOptions:
    fields: dict[str, Any] = {
        "reply_seconds": 0.05,
        "alive_seconds": 5.0,
        "rejoin": Backoff(attempts=6, base=0.01, cap=0.04),
    }
    return ClientOptions(**{**fields, **more})


def _joined(ref: str, missed: list[Frame]) -> Frame:
    return {"type": "joined", "room": "r", "members": [], "missed": missed, "ref": ref}


def test_a_slow_join_is_asked_again_on_the_same_connection_and_nothing_is_lost() -> None:
    """The first two joins go unanswered (the server did join: live messages flow), pings are
    answered: the client stays, asks again with the same ``after``, and the third answer's
    ``missed`` fills the gap; held live messages are merged, each shown once, in id order."""
    ids = _ids(12)
    out = io.StringIO()
    session = ChatSession("r", out, _slow_options())
    session.show([_entry(ids[0])])
    joins: list[Frame] = []

    def answer(frame: Frame) -> list[Frame]:
        if frame["action"] == "ping":
            return [{"type": "pong", "ref": frame["ref"]}]
        joins.append(frame)
        if len(joins) < 3:  # live messages arrive, the join's answer does not
            live = [{"type": "message", **_entry(ids[9 + len(joins)])}]
            return [*live, {"message": "Internal server error", "connectionId": "c"}]
        return [_joined(frame["ref"], [_entry(i) for i in ids[0:10]])]

    async def scenario() -> FakeSocket:
        socket = FakeSocket(session, answer)
        session.ws = socket
        assert await session.join_room("r") is True
        return socket

    socket = asyncio.run(scenario())
    assert not socket.closed and session.unhealthy is None
    assert len(joins) == 3 and {j["after"] for j in joins} == {ids_resume_after(ids[0], 5000)}
    assert _shown(out) == ids[:12]
    assert out.getvalue().count("* join #r: no answer yet; ping answered: slow") == 2
    assert session.joined == {"r"} and not session.waiting and not session.held


def test_a_late_answer_to_an_earlier_join_counts_and_later_ones_are_dropped() -> None:
    """The first join's answer comes after the client asked again: it is used; the answer to
    the second attempt, coming later still, is neither shown nor applied."""
    ids = _ids(3)
    out = io.StringIO()
    session = ChatSession("r", out, _slow_options())
    joins: list[Frame] = []

    def answer(frame: Frame) -> list[Frame]:
        if frame["action"] == "ping":
            return [{"type": "pong", "ref": frame["ref"]}]
        joins.append(frame)
        if len(joins) == 2:  # the first join's answer arrives now, after the second was sent
            late = _joined(joins[0]["ref"], [_entry(ids[0])])
            asyncio.get_running_loop().call_later(0.01, session.receive, json.dumps(late))
        return []

    async def scenario() -> None:
        session.ws = FakeSocket(session, answer)
        session.joined_from["r"] = ids_resume_after(ids[0], 0)
        assert await session.join_room("r") is True
        assert len(joins) == 2
        stale = _joined(joins[1]["ref"], [_entry(ids[1])])  # the second's answer, too late
        session.receive(json.dumps(stale))

    asyncio.run(scenario())
    assert _shown(out) == [ids[0]]
    assert out.getvalue().count("* joined #r") == 1
    assert not session.stale and not session.waiting


def test_a_rate_limited_join_waits_for_the_hint_and_goes_again() -> None:
    out = io.StringIO()
    delays: list[float] = []
    session = ChatSession("r", out, _slow_options())
    original = session.options.rejoin

    class Recorded(Backoff):
        def delay(self, attempt: int, rng: Any = None, hint: float | None = None) -> float:
            delays.append(hint if hint is not None else -1.0)
            return original.delay(attempt, hint=hint)

    session.options.rejoin = Recorded(attempts=6, base=0.01, cap=0.04)
    answers = iter(
        [{"type": "error", "code": "rate_limited", "message": "slow down", "retryAfterMs": 30}]
    )

    def answer(frame: Frame) -> list[Frame]:
        reply = next(answers, None) or _joined("", [])
        return [{**reply, "ref": frame["ref"]}]

    async def scenario() -> None:
        session.ws = FakeSocket(session, answer)
        assert await session.join_room("r") is True

    asyncio.run(scenario())
    assert delays == [0.03]
    assert "* join #r: rate limited; asking again in" in out.getvalue()
    assert "rate_limited" not in out.getvalue()  # handled, not shown as an error


def test_a_region_slow_past_every_try_is_left_for_a_new_connection() -> None:
    out = io.StringIO()
    session = ChatSession("r", out, _slow_options(rejoin=Backoff(attempts=3, base=0.01, cap=0.02)))

    def answer(frame: Frame) -> list[Frame]:
        return [{"type": "pong", "ref": frame["ref"]}] if frame["action"] == "ping" else []

    assert join_refused(session, answer).closed
    assert session.unhealthy is None  # slow, not down: no failover on its account
    assert "! still no answer to join #r after 3 tries; reconnecting" in out.getvalue()


def test_an_unanswered_history_page_is_asked_again_not_skipped() -> None:
    """A catch-up page without an answer on a live region: the same page is asked again, so
    the messages after ``joined.missed`` are not left behind the live ones."""
    ids = _ids(8)
    out = io.StringIO()
    session = ChatSession("r", out, _slow_options())
    session.show([_entry(ids[0])])
    pages: list[Frame] = []

    def answer(frame: Frame) -> list[Frame]:
        if frame["action"] == "ping":
            return [{"type": "pong", "ref": frame["ref"]}]
        if frame["action"] == "join":
            live = {"type": "message", **_entry(ids[7])}
            return [live, {**_joined(frame["ref"], [_entry(i) for i in ids[:3]]), "more": True}]
        pages.append(frame)
        if len(pages) == 1:
            return []
        messages = [_entry(i) for i in ids[3:7]]
        return [{"type": "history", "room": "r", "messages": messages, "ref": frame["ref"]}]

    async def scenario() -> None:
        session.ws = FakeSocket(session, answer)
        assert await session.join_room("r") is True

    asyncio.run(scenario())
    assert [p["after"] for p in pages] == [ids[2], ids[2]]
    assert _shown(out) == ids
    assert session.last_id == {"r": ids[7]}
