"""Powertools Logger, Metrics and Tracer shared by every handler.

Service name, metrics namespace and log level come from the standard
``POWERTOOLS_*`` environment variables. Nothing here logs message bodies or
tokens: handlers log ids, room names, counts and error codes only.

The Tracer is the costly one at cold start (python -m bench.cold_start): it
imports the X-Ray SDK, which pulls in asyncio and wrapt, and by default
``patch_all`` imports every library it can trace that happens to be
installed (requests, httpx, sqlite3, ...). So:

* it patches botocore only: the AWS calls are what the traces are for (a
  subsegment per ``@connections`` post of a big fan-out would cost more
  than the post; the fan-out reports those as metrics);
* it is built on first use of ``tracer`` (a module ``__getattr__``), so a
  function that never traces (the authorizer) never imports the X-Ray SDK.
  Handlers decorate with it at import, so for them it is still built during
  init, not moved into the first invocation.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

    tracer: Tracer

__all__ = ["TRACED_MODULES", "MetricUnit", "count", "logger", "metrics", "tracer"]

# What the Tracer patches (Powertools' patch_modules): the AWS SDK only.
TRACED_MODULES = ("botocore",)

logger = Logger()
metrics = Metrics()
# Powertools' metric set is process-wide. In Lambda one invocation runs per
# container, but the local sandbox runs concurrent invocations on threads of
# one process: a flush racing another invocation's flush could serialize an
# emptied set and raise (SchemaValidationError), failing an invocation that
# did its work. Adding and flushing under one (re-entrant: add_metric flushes
# at 100 metrics) lock avoids that; uncontended in Lambda.
_metrics_lock = threading.RLock()
_flush_metrics = metrics.provider.flush_metrics


def _locked_flush(raise_on_empty_metrics: bool = False) -> None:
    with _metrics_lock:
        _flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


metrics.provider.flush_metrics = _locked_flush  # type: ignore[method-assign]
_tracer_lock = threading.Lock()


def count(name: str, value: int = 1) -> None:
    """Add ``value`` to the count metric ``name`` (emitted as EMF at the end of the call).

    Safe from the fan-out's worker threads (a 410 cleanup may count presence
    failures there).
    """
    if value:
        with _metrics_lock:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def __getattr__(name: str) -> Any:
    """``tracer``: the Powertools Tracer, created (and the X-Ray SDK imported) on first use."""
    if name != "tracer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _tracer_lock:
        created = globals().get("tracer")
        if created is None:
            from aws_lambda_powertools import Tracer

            created = globals()["tracer"] = Tracer(patch_modules=TRACED_MODULES)
    return created
