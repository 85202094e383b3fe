"""Message ids on the client side (the resume point), from the handlers' ``chat/ids.py``.

One implementation for the handlers and the clients: ``lambdas/chat/ids.py`` imports only the
standard library, so it is loaded here by path. The clients therefore need neither boto3 nor
Powertools, nor ``lambdas/`` on ``sys.path``. The web page (``clients/web/app.js``) carries the
one port of ``resume_after`` to JavaScript; ``tests/e2e/test_browser.py`` checks that the two
agree.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

IDS_PATH = Path(__file__).resolve().parent.parent / "lambdas" / "chat" / "ids.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clients._chat_ids", IDS_PATH)
    if spec is None or spec.loader is None:  # pragma: no cover - the repository is broken
        raise ImportError(f"cannot load {IDS_PATH}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ids = _load()

#: The protocol's resume window (docs/protocol.md, "Resuming after a disconnect").
RESUME_WINDOW_MS: int = int(_ids.DEFAULT_RESUME_WINDOW_MS)


def resume_after(last_id: str, window_ms: int = RESUME_WINDOW_MS) -> str:
    """The ``after`` to resume from when ``last_id`` is the newest id seen (``chat.ids``)."""
    return str(_ids.resume_after(last_id, window_ms))


def resume_from_now(window_ms: int = RESUME_WINDOW_MS) -> str:
    """An ``after`` that selects every message of the last ``window_ms`` (by this clock)."""
    return resume_after(str(_ids.new_id()), window_ms)


def id_timestamp_ms(value: str) -> int:
    """The millisecond timestamp of an id (ValueError if malformed)."""
    return int(_ids.id_timestamp_ms(value))


def is_valid_id(value: object) -> bool:
    return bool(_ids.is_valid_id(value))
