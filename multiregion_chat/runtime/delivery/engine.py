"""Posting one frame to many connections via ``@connections``, fast, from one invocation.

API Gateway has no broadcast: every recipient costs one signed HTTP POST to
``{CALLBACK_URL}/@connections/{id}``. The previous engine used boto3's
``apigatewaymanagementapi`` client from a thread pool; it spent about 2 ms of
CPU per post (request serialisation, event hooks, retry handlers, parsing),
so one invocation was CPU-bound at about 400 posts/s however many threads it
had. This engine keeps only what a post needs:

* **Signing**: botocore's :class:`~botocore.auth.SigV4Auth` (service
  ``execute-api``), with two per-fan-out shortcuts that do not change a single
  signed byte: the payload hash is computed once per frame (every post carries
  the same bytes), and the derived signing key is cached per (secret, day).
  Credentials come from botocore's default chain, built once per container;
  ``get_frozen_credentials()`` is called at the start of every delivery and
  again every :data:`CREDENTIALS_MAX_AGE_S`, so refreshable credentials are
  refreshed the way boto3 refreshes them.
* **Transport**: one :class:`aiohttp.ClientSession` per thread with a
  keep-alive connection pool, ``concurrency`` requests in flight (default
  ``FANOUT_CONCURRENCY``). The session and its event loop persist across
  invocations (Lambda reuses one thread), so warm invocations reuse open
  connections. Pooled connections idle longer than :data:`KEEPALIVE_S` are
  closed rather than reused, so a thawed container does not post on sockets
  the server already dropped. :func:`deliver` stays synchronous: it runs the
  fan-out to completion on the calling thread's loop (the local sandbox runs
  concurrent invocations on several threads; each gets its own loop).

Per connection:

* 2xx -> delivered;
* 410 ``GoneException`` -> the connection is dead: the caller's ``on_gone(id, room)`` is
  called on a worker thread (the real one,
  :func:`runtime.presence.transitions.cleanup_gone`, is synchronous boto3: it removes the
  connection's records and announces "left"); an exception it raises is logged, and the
  other connections are delivered all the same;
* throttling (HTTP 429, or a throttling code in ``x-amzn-ErrorType`` or the
  body) or a failure to even connect -> retried after a backoff with full
  jitter (:func:`runtime.platform.retry.backoff_delay`, slept with
  :data:`runtime.platform.retry`-style hook :data:`async_sleep`), at most
  :data:`POST_ATTEMPTS` times. These are the cases where the frame certainly
  was not delivered, so a retry cannot duplicate it. A retry waits off the
  worker, so other connections keep flowing;
* anything else (403, 5xx, a dropped connection after the request was sent,
  read timeouts) -> failed, logged with the connection id (never the frame).

Throttling (or a refused connection) that persists past ``POST_ATTEMPTS`` is
not a failure: the frame was certainly not delivered, so the id is returned
in ``unsent`` and the caller hands it on (:mod:`runtime.delivery.broadcast` to the
fan-out queue, FanoutWorker to a delayed job) instead of dropping it.

``deadline`` (a :func:`time.monotonic` value) stops new posts: every id not
finished by then (never attempted, or waiting for a retry) is returned in
``unsent`` for someone else to deliver; posts already in flight complete.
``limiter`` paces requests (:class:`Limiter`; :class:`AimdLimiter` halves its
rate on throttling and grows it back additively). ``on_done(id, outcome)`` is
called as each id finishes (``"delivered"``, ``"gone"`` or ``"failed"``; on
the engine's thread), so a caller can checkpoint progress while it runs.
Every id ends in exactly one of delivered / gone / failed / unsent.

Whom to post to and what a dead connection means are the caller's: ``deliver`` takes the
ids (``connection_ids``, or ``pages`` of them pulled off the event loop while posts flow)
and the clean-up (``on_gone``) as arguments, so this module imports only the platform
(settings, logging, retry) and knows nothing of storage, presence or tokens. A test or a
benchmark hands it lists and a recording callable, without DynamoDB.

Limits: one process core signs and drives the sockets, so the rate per
invocation is bounded by CPU (about 0.3-0.5 ms per post) and, at low
concurrency, by latency / in-flight. Memory grows with the ids of one call
(a few dozen bytes each) and the in-flight requests.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import hmac
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from multiregion_chat.runtime.platform import retry, runtime_settings
from multiregion_chat.runtime.platform.observability import logger

if TYPE_CHECKING:
    import aiohttp

# aiohttp (with yarl, multidict, ...) costs about as much to import as boto3: it is
# imported on the first delivery, not at module import, so handlers that import
# this module but rarely deliver keep a lean cold start.

__all__ = [
    "POST_ATTEMPTS",
    "AimdLimiter",
    "FanoutResult",
    "Limiter",
    "OnGone",
    "deliver",
]

POST_ATTEMPTS = 4
THROTTLING_CODES = frozenset(
    {"LimitExceededException", "TooManyRequestsException", "ThrottlingException", "Throttling"}
)
CREDENTIALS_MAX_AGE_S = 60.0
KEEPALIVE_S = 10.0
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 3.0
SERVICE = "execute-api"

# Patchable like ``runtime.platform.retry.sleep``: tests replace it to make retries instant.
async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
# The clock ``deadline`` is read against (tests replace it to end a fan-out midway).
clock: Callable[[], float] = time.monotonic


# What to do with a connection @connections answered 410 for: (connection id, room).
OnGone = Callable[[str, str], None]


class Limiter(Protocol):
    """Paces the requests of a fan-out (shared budgets, adaptive slow-down)."""

    async def acquire(self) -> None:
        """Wait until one more request may start."""

    def throttled(self) -> None:
        """API Gateway answered 429 or a throttling code."""

    def succeeded(self) -> None:
        """A request was accepted (2xx or 410)."""


@dataclass(slots=True)
class FanoutResult:
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    retries: int = 0
    throttled: int = 0
    unsent: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + self.gone + self.failed


# --- limiter ----------------------------------------------------------------------------


class AimdLimiter:
    """Token-bucket pacing whose rate adapts to throttling (AIMD).

    Requests are spaced ``1/rate`` apart (a burst of up to ``burst`` may start at
    once after an idle spell). :meth:`throttled` halves the rate, at most once per
    ``cooldown_s`` (the many 429s of one overload episode count once), never
    below ``min_rate``; every :meth:`succeeded` adds ``increase / rate``, so the
    rate grows by about ``increase`` per second of successful traffic, up to
    ``max_rate``. Thread-safe: loops on several threads may share one instance
    (the lead composes it with the region's shared budget).
    """

    def __init__(
        self,
        rate: float,
        *,
        min_rate: float = 10.0,
        max_rate: float | None = None,
        increase: float = 50.0,
        burst: float = 10.0,
        cooldown_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if rate <= 0 or min_rate <= 0:
            raise ValueError("rates must be positive")
        self.min_rate = min_rate
        self.max_rate = max_rate if max_rate is not None else rate
        self.rate = min(max(rate, min_rate), self.max_rate)
        self.increase = increase
        self.burst = max(1.0, burst)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = -float("inf")  # virtual start time of the next request
        self._last_decrease = -float("inf")

    def reserve(self) -> float:
        """Book the next slot; returns how long to wait before using it."""
        with self._lock:
            now = self._clock()
            interval = 1.0 / self.rate
            self._next = max(self._next, now - (self.burst - 1) * interval)
            start = self._next
            self._next = start + interval
            return max(0.0, start - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await (self._sleep or async_sleep)(delay)

    def throttled(self) -> None:
        with self._lock:
            now = self._clock()
            if now - self._last_decrease < self.cooldown_s:
                return
            self._last_decrease = now
            self.rate = max(self.min_rate, self.rate / 2)

    def succeeded(self) -> None:
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.increase / self.rate)


# --- signing ----------------------------------------------------------------------------


class _Signer(SigV4Auth):
    """botocore's SigV4 with the payload hash and signing key computed once."""

    def __init__(self, credentials: ReadOnlyCredentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, SERVICE, region)
        self._scope = (region, SERVICE, "aws4_request")
        self._payload_hash = payload_hash
        self._keys: dict[str, bytes] = {}

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        day: str = request.context["timestamp"][0:8]
        key = self._keys.get(day)
        if key is None:
            key = f"AWS4{self.credentials.secret_key}".encode()
            for part in (day, *self._scope):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}
        return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

    def canonical_query_string(self, request: AWSRequest) -> str:
        return ""  # @connections URLs have no query string

    def headers(self, url: str, host: str) -> dict[str, str]:
        # ``host`` is given (not derived from the URL on every call, twice, as
        # botocore otherwise does): it is the same for every post of a fan-out.
        request = AWSRequest(method="POST", url=url, headers={"host": host})
        self.add_auth(request)
        return dict(request.headers.items())


_credentials_lock = threading.Lock()
_credentials: Credentials | None = None


def _container_credentials() -> Credentials:
    """botocore's default credential chain, resolved once per container."""
    global _credentials
    with _credentials_lock:
        if _credentials is None:
            found = botocore.session.get_session().get_credentials()
            if found is None:
                raise RuntimeError("no AWS credentials found for signing @connections posts")
            _credentials = found
        return _credentials


def reset_credentials() -> None:
    """Forget the container's credentials (tests change the environment)."""
    global _credentials
    with _credentials_lock:
        _credentials = None


# --- per-thread loop and session --------------------------------------------------------


class _Runtime:
    """One event loop and one HTTP session, reused by every call on a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.limit = 0

    def session_for(self, concurrency: int) -> aiohttp.ClientSession:
        """This thread's session, with a pool of at least ``concurrency`` connections."""
        if self.session is not None and not self.session.closed and self.limit >= concurrency:
            return self.session
        if self.session is not None:
            self.loop.run_until_complete(self.session.close())
        self.session = self.loop.run_until_complete(self._open(concurrency))
        self.limit = concurrency
        return self.session

    @staticmethod
    async def _open(concurrency: int) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=concurrency, limit_per_host=0, keepalive_timeout=KEEPALIVE_S
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
            ),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            raise_for_status=False,
        )

    def close(self) -> None:
        if self.session is not None and not self.loop.is_running() and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.session.close())


_local = threading.local()
_runtimes: weakref.WeakSet[_Runtime] = weakref.WeakSet()


def _runtime() -> _Runtime:
    runtime: _Runtime | None = getattr(_local, "runtime", None)
    if runtime is None or runtime.loop.is_closed():
        runtime = _Runtime()
        _local.runtime = runtime
        _runtimes.add(runtime)
    return runtime


@atexit.register
def _close_sessions() -> None:
    """Close idle sessions at interpreter exit (the sandbox, tests): no warnings."""
    for runtime in list(_runtimes):
        runtime.close()


# --- the fan-out ------------------------------------------------------------------------


def _not_sent_errors() -> tuple[type[BaseException], ...]:
    """Failures that certainly sent nothing (safe to retry)."""
    import aiohttp

    return (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def _throttling_code(error_type: str, body: bytes) -> str | None:
    code = error_type.split(":", 1)[0].strip()
    if code in THROTTLING_CODES:
        return code
    if body:
        text = body[:512].decode("utf-8", "replace")
        for candidate in THROTTLING_CODES:
            if candidate in text:
                return candidate
    return None


def _host(url: str) -> str:
    """The Host header botocore signs (and aiohttp sends): no default port."""
    parts = urlsplit(url)
    default = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
    netloc = parts.netloc
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


def _cleanup(on_gone: OnGone, connection_id: str, room: str) -> None:
    try:
        on_gone(connection_id, room)
    except Exception:  # a failed cleanup must not fail the delivery of the others
        logger.exception(
            "cleanup of a gone connection failed", extra={"connectionId": connection_id}
        )


_DONE = object()


class _Fanout:
    def __init__(
        self,
        room: str,
        data: bytes,
        session: aiohttp.ClientSession,
        *,
        on_gone: OnGone,
        deadline: float | None,
        limiter: Limiter | None,
        concurrency: int,
        on_done: Callable[[str, str], None] | None = None,
    ) -> None:
        import aiohttp
        import yarl

        settings = runtime_settings.get_settings()
        self.url_type = yarl.URL
        self.not_sent = _not_sent_errors()
        self.client_error = aiohttp.ClientError
        self.room = room
        self.data = data
        self.session = session
        self.on_gone = on_gone
        self.deadline = deadline
        self.limiter = limiter
        self.concurrency = concurrency
        self.on_done = on_done
        self.base = settings.callback_endpoint.rstrip("/") + "/@connections/"
        self.host = _host(self.base)
        self.region = settings.region
        self.payload_hash = hashlib.sha256(data).hexdigest()
        self.signer = self._new_signer()
        self.signed_at = time.monotonic()
        self.result = FanoutResult()
        self.ready: asyncio.Queue[Any] = asyncio.Queue()
        self.pending = 0  # ids queued, in flight or waiting for a retry
        self.feeding = True
        self.idle = asyncio.Event()
        self.retry_tasks: set[asyncio.Task[None]] = set()

    def _new_signer(self) -> _Signer:
        frozen = _container_credentials().get_frozen_credentials()
        return _Signer(frozen, self.region, self.payload_hash)

    def _sign(self, url: str) -> dict[str, str]:
        if time.monotonic() - self.signed_at > CREDENTIALS_MAX_AGE_S:
            self.signer = self._new_signer()
            self.signed_at = time.monotonic()
        return self.signer.headers(url, self.host)

    def _expired(self) -> bool:
        return self.deadline is not None and clock() >= self.deadline

    def add(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.pending += 1
            self.ready.put_nowait((cid, 1))

    def _done(self, cid: str, outcome: str) -> None:
        if self.on_done is not None:
            try:
                self.on_done(cid, outcome)
            except Exception:  # a checkpoint failing must not stop the fan-out
                logger.exception("on_done callback failed", extra={"connectionId": cid})
        self._finish()

    def _finish(self) -> None:
        self.pending -= 1
        if self.pending == 0 and not self.feeding:
            self.idle.set()

    def end_of_input(self) -> None:
        self.feeding = False
        if self.pending == 0:
            self.idle.set()

    async def worker(self) -> None:
        while True:
            item = await self.ready.get()
            if item is _DONE:
                return
            cid, attempt = item
            if self._expired():
                self.result.unsent.append(cid)
                self._finish()
                continue
            if self.limiter is not None and not await self._permitted():
                self.result.unsent.append(cid)
                self._finish()
                continue
            await self._post(cid, attempt)

    async def _acquire(self) -> bool:
        """Wait for the limiter; False if the deadline passed first."""
        assert self.limiter is not None
        if self.deadline is None:
            await self.limiter.acquire()
            return True
        remaining = self.deadline - clock()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(self.limiter.acquire(), remaining)
        except TimeoutError:
            return False
        return not self._expired()

    async def _permitted(self) -> bool:
        """:meth:`_acquire`, where a limiter that fails (its store is down) means
        "not now": the id is handed back, never lost, and the worker lives on."""
        try:
            return await self._acquire()
        except Exception:
            logger.exception("the request limiter failed; the connection is handed back")
            return False

    async def _post(self, cid: str, attempt: int) -> None:
        url = self.base + quote(cid, safe="")
        failure: str
        try:
            headers = self._sign(url)
            async with self.session.post(
                self.url_type(url, encoded=True), data=self.data, headers=headers
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    await response.release()
                    self.result.delivered += 1
                    if self.limiter is not None:
                        self.limiter.succeeded()
                    self._done(cid, "delivered")
                    return
                body = await response.read()
                error_type = response.headers.get("x-amzn-ErrorType", "")
        except self.not_sent as error:
            self._retry_or_fail(cid, attempt, type(error).__name__)
            return
        except Exception as error:  # sent (maybe), or a bug: never retried, never raised
            if not isinstance(error, self.client_error | TimeoutError):
                logger.exception("unexpected error posting", extra={"connectionId": cid})
            self._fail(cid, attempt, type(error).__name__)
            return
        if status == 410 or error_type.startswith("GoneException"):
            if self.limiter is not None:
                self.limiter.succeeded()
            self.result.gone += 1
            await asyncio.get_running_loop().run_in_executor(
                None, _cleanup, self.on_gone, cid, self.room
            )
            self._done(cid, "gone")
            return
        code = _throttling_code(error_type, body) if status in (400, 429) else None
        if status == 429 or code:
            self.result.throttled += 1
            if self.limiter is not None:
                self.limiter.throttled()
            self._retry_or_fail(cid, attempt, code or "429")
            return
        failure = error_type.split(":", 1)[0] or str(status)
        self._fail(cid, attempt, failure)

    def _fail(self, cid: str, attempt: int, failure: str) -> None:
        logger.warning(
            "post_to_connection failed",
            extra={"connectionId": cid, "error": failure, "attempts": attempt},
        )
        self.result.failed += 1
        self.result.failed_ids.append(cid)
        self._done(cid, "failed")

    def _retry_or_fail(self, cid: str, attempt: int, failure: str) -> None:
        if attempt >= POST_ATTEMPTS:
            # Certainly not delivered: give it back for someone to retry later.
            logger.warning(
                "post_to_connection still refused; handed back",
                extra={"connectionId": cid, "error": failure, "attempts": attempt},
            )
            self.result.unsent.append(cid)
            self._finish()
            return
        self.result.retries += 1
        task = asyncio.get_running_loop().create_task(self._later(cid, attempt + 1))
        self.retry_tasks.add(task)
        task.add_done_callback(self.retry_tasks.discard)

    async def _later(self, cid: str, attempt: int) -> None:
        """Sleep the backoff before ``attempt``, then queue it (or give it back)."""
        delay = retry.backoff_delay(attempt - 1)
        if self.deadline is not None:
            delay = min(delay, max(0.0, self.deadline - clock()))
        await async_sleep(delay)
        if self._expired():
            self.result.unsent.append(cid)
            self._finish()
        else:
            self.ready.put_nowait((cid, attempt))

    async def run(self, pages: Iterator[Iterable[str]] | None) -> FanoutResult:
        workers = [asyncio.create_task(self.worker()) for _ in range(self.concurrency)]
        try:
            if pages is not None:
                loop = asyncio.get_running_loop()
                while (page := await loop.run_in_executor(None, next, pages, None)) is not None:
                    self.add(page)
            self.end_of_input()
            await self.idle.wait()
        finally:
            for _ in workers:
                self.ready.put_nowait(_DONE)
            done, _ = await asyncio.wait(workers)
            for task in list(self.retry_tasks):
                task.cancel()
            for task in done:
                with contextlib.suppress(asyncio.CancelledError):
                    task.result()
        return self.result


def deliver(
    room: str,
    data: bytes,
    *,
    on_gone: OnGone,
    connection_ids: Sequence[str] | None = None,
    pages: Iterable[Iterable[str]] | None = None,
    deadline: float | None = None,
    limiter: Limiter | None = None,
    concurrency: int | None = None,
    on_done: Callable[[str, str], None] | None = None,
) -> FanoutResult:
    """Post ``data`` to ``connection_ids``, or to the ids of ``pages`` (exactly one of the
    two); ``on_gone(id, room)`` for each connection answered 410. Never raises for a post.

    ``pages`` is pulled one page at a time on a worker thread while the posts of earlier
    pages flow, so a blocking reader (a DynamoDB Query) does not stall the event loop.
    Raises only if reading ``pages`` fails (nothing is retried then: the caller decides)
    or no credentials are available.
    """
    if (connection_ids is None) == (pages is None):
        raise TypeError("deliver() takes exactly one of connection_ids and pages")
    width = max(1, concurrency or runtime_settings.get_settings().fanout_concurrency)
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        # Called from async code: this thread's loop is busy, so run on a helper thread.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fanout") as pool:
            return pool.submit(
                deliver,
                room,
                data,
                on_gone=on_gone,
                connection_ids=connection_ids,
                pages=pages,
                deadline=deadline,
                limiter=limiter,
                concurrency=width,
                on_done=on_done,
            ).result()
    runtime = _runtime()
    session = runtime.session_for(width)
    fanout = _Fanout(
        room,
        data,
        session,
        on_gone=on_gone,
        deadline=deadline,
        limiter=limiter,
        concurrency=width,
        on_done=on_done,
    )
    if connection_ids is not None:
        fanout.add(connection_ids)
    return runtime.loop.run_until_complete(fanout.run(None if pages is None else iter(pages)))
