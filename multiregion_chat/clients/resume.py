"""Message ids on the client side (the resume point), from the runtime's ids.

One implementation for the handlers and the clients: :mod:`runtime.protocol`
imports only the standard library, so the clients need neither boto3 nor Powertools. The web
page (``clients/web/app.js``) carries the one port of ``resume_after`` to
JavaScript; ``tests/e2e/test_browser.py`` checks that the two agree.
"""

from __future__ import annotations

from multiregion_chat.runtime.protocol import ids as _ids

#: The protocol's resume window (docs/protocol.md, "Resuming after a disconnect").
RESUME_WINDOW_MS: int = int(_ids.DEFAULT_RESUME_WINDOW_MS)


def resume_after(last_id: str, window_ms: int = RESUME_WINDOW_MS) -> str:
    """The ``after`` to resume from when ``last_id`` is the newest id seen
    (``runtime.protocol.ids``)."""
    return str(_ids.resume_after(last_id, window_ms))


def resume_from_now(window_ms: int = RESUME_WINDOW_MS) -> str:
    """An ``after`` that selects every message of the last ``window_ms`` (by this clock)."""
    return resume_after(str(_ids.new_id()), window_ms)


def id_timestamp_ms(value: str) -> int:
    """The millisecond timestamp of an id (ValueError if malformed)."""
    return int(_ids.id_timestamp_ms(value))


def is_valid_id(value: object) -> bool:
    return bool(_ids.is_valid_id(value))
