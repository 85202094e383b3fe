"""The delivery engine (runtime.delivery.engine) against a local @connections server: signing,
outcomes, retries, deadline hand-off, limiter calls, AIMD pacing, use from several threads."""

from __future__ import annotations

import asyncio
import datetime
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from multiregion_chat.runtime.delivery import engine
from tests.unit.connections_server import (
    FORBIDDEN,
    GONE,
    SERVER_ERROR,
    THROTTLED,
    Answer,
    ConnectionsServer,
    ids_of,
)

FRAME = b'{"type":"message","body":"hi"}'


def ids(n: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{i:03d}=" for i in range(n)]


class RecordingLimiter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def acquire(self) -> None:
        self.calls["acquire"] += 1

    def throttled(self) -> None:
        self.calls["throttled"] += 1

    def succeeded(self) -> None:
        self.calls["succeeded"] += 1


class Gone:
    """The engine's ``on_gone``, recorded (presence's real clean-up is covered elsewhere)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, connection_id: str, room: str) -> None:
        self.calls.append((connection_id, room))


@pytest.fixture
def gone() -> Gone:
    return Gone()


def test_every_post_is_signed_with_sigv4(mgmt: ConnectionsServer, gone: Gone) -> None:
    result = engine.deliver("lobby", FRAME, connection_ids=["a=b/c", "plain"], on_gone=gone)
    assert (result.delivered, result.failed) == (2, 0)
    posts = {p.connection_id: p for p in mgmt.posts()}
    assert set(posts) == {"a=b/c", "plain"}
    assert posts["a=b/c"].path == "/test/@connections/a%3Db%2Fc"
    for post in posts.values():
        auth = post.headers["Authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=testing/")
        assert "/us-east-1/execute-api/aws4_request" in auth
        assert "SignedHeaders=host;x-amz-date;x-amz-security-token" in auth
        assert post.headers["X-Amz-Date"].endswith("Z")
        assert post.headers["X-Amz-Security-Token"] == "testing"
        assert post.body == FRAME
        assert post.region == "us-east-1"


def test_no_session_token_no_token_header(
    mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch, gone: Gone
) -> None:
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name)
    engine.reset_credentials()
    assert engine.deliver("lobby", FRAME, connection_ids=["c1"], on_gone=gone).delivered == 1
    (post,) = mgmt.posts()
    assert "X-Amz-Security-Token" not in post.headers
    assert "SignedHeaders=host;x-amz-date," in post.headers["Authorization"]


def test_signature_is_botocores_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached payload hash and signing key change nothing that is signed."""
    fixed = datetime.datetime(2026, 11, 29, 1, 2, 3)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: fixed)
    credentials = ReadOnlyCredentials("AKID", "secret", "token")
    url = "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections/x%3D"
    reference = AWSRequest(method="POST", url=url, data=FRAME)
    SigV4Auth(credentials, "execute-api", "eu-west-1").add_auth(reference)
    signer = engine._Signer(credentials, "eu-west-1", engine.hashlib.sha256(FRAME).hexdigest())
    for _ in range(2):  # the second call uses the cached key
        ours = signer.headers(url, "abc.execute-api.eu-west-1.amazonaws.com")
        assert ours["Authorization"] == reference.headers["Authorization"]
        assert ours["X-Amz-Date"] == reference.headers["X-Amz-Date"]


def test_outcomes_counts_and_retries(
    mgmt: ConnectionsServer, sleeps: list[float], gone: Gone
) -> None:
    mgmt.script("gone", GONE)
    mgmt.script("once", THROTTLED)  # then the default 200
    mgmt.script("coded", Answer(400, "ThrottlingException"))
    mgmt.script("in-body", Answer(400, body='{"__type":"TooManyRequestsException"}'))
    mgmt.script("always", then=THROTTLED)
    mgmt.script("broken", SERVER_ERROR)
    mgmt.script("denied", FORBIDDEN)
    mgmt.script("slow", Answer(delay_s=0.05))
    everyone = ["ok", "gone", "once", "coded", "in-body", "always", "broken", "denied", "slow"]
    result = engine.deliver("lobby", FRAME, connection_ids=everyone, on_gone=gone)
    assert (result.delivered, result.gone, result.failed) == (5, 1, 2)
    assert sorted(result.failed_ids) == ["broken", "denied"]
    # Still throttled after every attempt: certainly not delivered, handed back.
    assert result.unsent == ["always"]
    assert Counter(ids_of(mgmt.posts())) == {
        "ok": 1,
        "gone": 1,
        "once": 2,
        "coded": 2,
        "in-body": 2,
        "always": engine.POST_ATTEMPTS,
        "broken": 1,
        "denied": 1,
        "slow": 1,
    }
    assert result.throttled == 3 + engine.POST_ATTEMPTS
    assert result.retries == len(sleeps) == 3 + engine.POST_ATTEMPTS - 1
    assert all(0 <= s <= 1.0 for s in sleeps)
    assert gone.calls == [("gone", "lobby")]


def test_connection_failures_are_retried_then_handed_back(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float], gone: Gone
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CALLBACK_URL", f"http://127.0.0.1:{port}/test")
    engine.runtime_settings.reset()
    result = engine.deliver("lobby", FRAME, connection_ids=["c1", "c2"], on_gone=gone)
    assert (result.failed, result.delivered) == (0, 0)
    assert sorted(result.unsent) == ["c1", "c2"]  # nothing was sent: someone retries later
    assert result.retries == len(sleeps) == 2 * (engine.POST_ATTEMPTS - 1)


def test_pages_are_pulled_one_at_a_time_off_the_event_loop(
    mgmt: ConnectionsServer, gone: Gone
) -> None:
    pulled_on: list[str] = []

    def pages() -> Iterator[list[str]]:
        for page in (["a", "b"], ["c"], []):
            pulled_on.append(threading.current_thread().name)
            yield page

    result = engine.deliver("lobby", FRAME, pages=pages(), on_gone=gone)
    assert result.delivered == 3
    assert sorted(ids_of(mgmt.posts())) == ["a", "b", "c"]
    # Pulled on a worker thread, so a blocking reader does not stall the posts in flight.
    assert len(pulled_on) == 3 and threading.current_thread().name not in pulled_on


@pytest.mark.parametrize("members", [{}, {"connection_ids": ["a"], "pages": [["b"]]}])
def test_exactly_one_source_of_members(members: dict[str, Any], gone: Gone) -> None:
    with pytest.raises(TypeError, match="exactly one"):
        engine.deliver("lobby", FRAME, on_gone=gone, **members)


def test_a_failing_clean_up_does_not_stop_the_others(mgmt: ConnectionsServer) -> None:
    def broken(connection_id: str, room: str) -> None:
        raise RuntimeError("DynamoDB unavailable")

    mgmt.script("gone", GONE)
    result = engine.deliver("lobby", FRAME, connection_ids=["gone", "ok"], on_gone=broken)
    assert (result.delivered, result.gone, result.failed) == (1, 1, 0)


def test_many_in_flight_at_once(mgmt: ConnectionsServer, gone: Gone) -> None:
    mgmt.hold_until(8)  # nobody is answered until 8 posts are in flight together
    result = engine.deliver("lobby", FRAME, connection_ids=ids(8), concurrency=8, on_gone=gone)
    assert result.delivered == 8
    assert mgmt.max_in_flight == 8


def test_deadline_in_the_past_sends_nothing(mgmt: ConnectionsServer, gone: Gone) -> None:
    members = ids(5)
    result = engine.deliver("lobby", FRAME, connection_ids=members, deadline=0.0, on_gone=gone)
    assert result.unsent == members and result.attempted == 0
    assert mgmt.posts() == []


def test_deadline_midway_hands_back_every_unfinished_id(
    mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch, sleeps: list[float], gone: Gone
) -> None:
    """The clock passes the deadline once the server has seen 5 requests; the id that
    is waiting for a retry and those never tried come back in ``unsent``."""
    members = ids(10)
    mgmt.script(members[2], THROTTLED)
    monkeypatch.setattr(engine, "clock", lambda: 100.0 if mgmt.count() >= 5 else 0.0)
    result = engine.deliver(
        "lobby", FRAME, connection_ids=members, deadline=50.0, concurrency=1, on_gone=gone
    )
    done = Counter(ids_of(p for p in mgmt.posts() if p.status == 200))
    assert result.delivered == len(done) == 4
    assert set(result.unsent) == set(members) - set(done)
    assert members[2] in result.unsent
    assert sorted([*done, *result.unsent]) == members  # none lost, none twice
    assert len(result.unsent) == len(set(result.unsent))


def test_limiter_is_told_about_every_request(mgmt: ConnectionsServer, gone: Gone) -> None:
    limiter = RecordingLimiter()
    mgmt.script("gone", GONE)
    mgmt.script("busy", THROTTLED)
    result = engine.deliver(
        "lobby", FRAME, connection_ids=["ok", "gone", "busy"], limiter=limiter, on_gone=gone
    )
    assert (result.delivered, result.gone) == (2, 1)
    assert limiter.calls == {"acquire": 4, "throttled": 1, "succeeded": 3}


def test_a_limiter_slower_than_the_deadline_hands_back(mgmt: ConnectionsServer, gone: Gone) -> None:
    class Stuck(RecordingLimiter):
        async def acquire(self) -> None:
            await asyncio.Event().wait()  # never granted

    deadline = engine.time.monotonic() + 0.2
    result = engine.deliver(
        "lobby", FRAME, connection_ids=ids(3), limiter=Stuck(), deadline=deadline, on_gone=gone
    )
    assert sorted(result.unsent) == ids(3) and mgmt.posts() == []


def test_two_threads_deliver_at_once(mgmt: ConnectionsServer, gone: Gone) -> None:
    results: dict[str, engine.FanoutResult] = {}
    mgmt.hold_until(4)  # both threads' posts must be in flight together

    def run(prefix: str) -> None:
        results[prefix] = engine.deliver(
            "lobby", FRAME, connection_ids=ids(2, prefix), concurrency=2, on_gone=gone
        )

    threads = [threading.Thread(target=run, args=(p,)) for p in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["x"].delivered == results["y"].delivered == 2
    assert sorted(ids_of(mgmt.posts())) == sorted(ids(2, "x") + ids(2, "y"))
    assert mgmt.max_in_flight == 4


def test_sessions_are_kept_between_calls_on_a_thread(mgmt: ConnectionsServer, gone: Gone) -> None:
    engine.deliver("lobby", FRAME, connection_ids=["a"], on_gone=gone)
    first = engine._runtime().session
    engine.deliver("lobby", FRAME, connection_ids=["b"], on_gone=gone)
    assert engine._runtime().session is first


def test_callable_from_async_code(mgmt: ConnectionsServer, gone: Gone) -> None:
    async def inside() -> engine.FanoutResult:
        return engine.deliver("lobby", FRAME, connection_ids=["a"], on_gone=gone)

    assert asyncio.run(inside()).delivered == 1


# --- AIMD --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_aimd_paces_requests_at_its_rate() -> None:
    clock = Clock()
    limiter = engine.AimdLimiter(100, burst=1, clock=clock)
    waits = [limiter.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.01, 0.02, 0.03])
    clock.now += 1.0  # idle: no debt is carried over
    assert limiter.reserve() == 0.0


def test_aimd_allows_a_burst_after_idling() -> None:
    clock = Clock()
    limiter = engine.AimdLimiter(100, burst=5, clock=clock)
    assert [limiter.reserve() for _ in range(5)] == [0.0] * 5
    assert limiter.reserve() == pytest.approx(0.01)


def test_aimd_halves_once_per_cooldown_and_grows_back() -> None:
    clock = Clock()
    limiter = engine.AimdLimiter(1000, min_rate=100, increase=100, cooldown_s=0.5, clock=clock)
    limiter.throttled()
    limiter.throttled()  # same episode: counted once
    assert limiter.rate == 500
    clock.now += 0.6
    limiter.throttled()
    assert limiter.rate == 250
    for _ in range(3):
        clock.now += 1
        limiter.throttled()
    assert limiter.rate == 100  # the floor
    for _ in range(100):
        limiter.succeeded()  # about one second of traffic at 100/s: +100/s
    assert 150 <= limiter.rate <= 200
    for _ in range(100_000):
        limiter.succeeded()
    assert limiter.rate == 1000  # the ceiling


def test_aimd_acquire_sleeps_its_wait() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    limiter = engine.AimdLimiter(10, burst=1, clock=clock, sleep=sleep)

    async def three() -> None:
        for _ in range(3):
            await limiter.acquire()

    asyncio.run(three())
    assert slept == pytest.approx([0.1, 0.2])


def test_on_done_reports_each_finished_id_once(mgmt: ConnectionsServer, gone: Gone) -> None:
    mgmt.script("gone", GONE)
    mgmt.script("broken", SERVER_ERROR)
    mgmt.script("always", then=THROTTLED)
    finished: list[tuple[str, str]] = []
    result = engine.deliver(
        "lobby",
        FRAME,
        connection_ids=["ok", "gone", "broken", "always"],
        on_done=lambda cid, outcome: finished.append((cid, outcome)),
        on_gone=gone,
    )
    assert sorted(finished) == [("broken", "failed"), ("gone", "gone"), ("ok", "delivered")]
    assert result.unsent == ["always"]  # not finished: never reported done
