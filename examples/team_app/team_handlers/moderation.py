"""A consumer of the chat bus: flags ``chat.message`` events whose body has a blocked word.

EventBridge delivers every message of every room once per region (local and
forwarded); this one acts on the messages accepted in its own region only
(``originRegion``), so each message is looked at once, globally.
Raising would make EventBridge retry (then dead-letter) the event: a message
that cannot be read is logged and counted instead.
"""

from __future__ import annotations

import json
import os
from typing import Any

from multiregion_chat.runtime.platform.observability import count, logger, metrics

BLOCKED_WORDS = frozenset(
    word.strip().lower() for word in os.environ.get("BLOCKED_WORDS", "").split(",") if word.strip()
)


def flagged(body: Any) -> bool:
    """Whether ``body`` (any JSON value) contains a blocked word."""
    words = json.dumps(body).lower().replace('"', " ").split()
    return any(word.strip(".,!?:;") in BLOCKED_WORDS for word in words)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    detail = event.get("detail") or {}
    if detail.get("originRegion") != os.environ.get("AWS_REGION"):
        return {"status": "not-ours"}
    if flagged(detail.get("body")):
        logger.info("message flagged", extra={"room": detail.get("room"), "id": detail.get("id")})
        count("FlaggedMessages")
        return {"status": "flagged"}
    return {"status": "ok"}
