"""Posting one frame to every local connection of a room via ``@connections``.

Members are read one Query page at a time (projected to ``connectionId``) and
posted to by a bounded thread pool of ``FANOUT_CONCURRENCY`` workers sharing
one management API client whose HTTP pool has the same size
(:func:`chat.clients.management_api`). Per connection:

* success -> delivered;
* 410 ``GoneException`` -> the connection is dead: its records are removed
  with :func:`chat.presence.cleanup_connection` (the ``$disconnect`` cleanup,
  "left" presence events included; the room is passed as a hint so an
  orphaned membership goes too);
* throttling (``LimitExceededException``, ``TooManyRequestsException``,
  ``ThrottlingException``, HTTP 429) or a failure to even connect -> retried
  with exponential backoff and full jitter, at most ``POST_ATTEMPTS`` times.
  These are the cases where the frame certainly was not delivered, so a retry
  cannot duplicate it; botocore's own retries are off for this client;
* anything else (403, 5xx, read timeouts, throttling that persists) -> failed.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from chat import clients, config, presence, retry, store
from chat.observability import logger

__all__ = ["FanoutResult", "deliver"]

POST_ATTEMPTS = 4
THROTTLING_CODES = frozenset(
    {"LimitExceededException", "TooManyRequestsException", "ThrottlingException", "Throttling"}
)
_NOT_SENT_ERRORS = (EndpointConnectionError, ConnectTimeoutError)


class Outcome(Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


@dataclass(slots=True)
class FanoutResult:
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    retries: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.gone + self.failed


def _error_info(error: ClientError) -> tuple[str, int]:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code, status


def _cleanup(connection_id: str, room: str) -> None:
    try:
        presence.cleanup_connection(connection_id, rooms_hint=(room,))
    except Exception:  # a failed cleanup must not fail the delivery of the others
        logger.exception(
            "cleanup of a gone connection failed", extra={"connectionId": connection_id}
        )


def _post(connection_id: str, room: str, data: bytes) -> tuple[Outcome, int]:
    """Post ``data`` to one connection; returns the outcome and the retries spent."""
    client = clients.management_api()
    for attempt in range(1, POST_ATTEMPTS + 1):
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
            return Outcome.DELIVERED, attempt - 1
        except ClientError as error:
            code, status = _error_info(error)
            if code == "GoneException" or status == 410:
                _cleanup(connection_id, room)
                return Outcome.GONE, attempt - 1
            retryable = code in THROTTLING_CODES or status == 429
            failure = code or str(status)
        except BotoCoreError as error:  # network level: retry only if nothing was sent
            retryable, failure = isinstance(error, _NOT_SENT_ERRORS), type(error).__name__
        except Exception as error:  # never let one connection fail the fan-out
            logger.exception("unexpected error posting", extra={"connectionId": connection_id})
            retryable, failure = False, type(error).__name__
        if not retryable or attempt == POST_ATTEMPTS:
            logger.warning(
                "post_to_connection failed",
                extra={"connectionId": connection_id, "error": failure, "attempts": attempt},
            )
            return Outcome.FAILED, attempt - 1
        retry.pause(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def deliver(room: str, data: bytes, page_size: int | None = None) -> FanoutResult:
    """Post ``data`` to every local connection in ``room``; never raises for a post."""
    result = FanoutResult()
    concurrency = config.get_settings().fanout_concurrency
    clients.management_api()  # build the shared client before the workers use it
    futures: list[Future[tuple[Outcome, int]]] = []
    # The pool lives for one invocation: idle threads are not kept in a frozen container.
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fanout") as pool:
        for page in store.iter_room_connection_ids(room, page_size):
            futures.extend(pool.submit(_post, cid, room, data) for cid in page)
        for future in futures:
            outcome, retries = future.result()
            result.retries += retries
            if outcome is Outcome.DELIVERED:
                result.delivered += 1
            elif outcome is Outcome.GONE:
                result.gone += 1
            else:
                result.failed += 1
    return result
