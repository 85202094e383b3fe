"""Powertools Logger, Metrics and Tracer shared by every handler.

Service name, metrics namespace and log level come from the standard
``POWERTOOLS_*`` environment variables. Nothing here logs message bodies or
tokens: handlers log ids, room names, counts and error codes only.
"""

from __future__ import annotations

import threading

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["MetricUnit", "count", "logger", "metrics", "tracer"]

logger = Logger()
metrics = Metrics()
tracer = Tracer()
_metrics_lock = threading.Lock()


def count(name: str, value: int = 1) -> None:
    """Add ``value`` to the count metric ``name`` (emitted as EMF at the end of the call).

    Safe from the fan-out's worker threads (a 410 cleanup may count presence
    failures there).
    """
    if value:
        with _metrics_lock:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
