"""The client actions of the protocol (docs/protocol.md): the one list.

Standard library only (runtime.protocol's rule): the stacks import this list
(infra/websocket_api.py, ``CLIENT_ROUTE_KEYS``: one WebSocket route per action, plus
``$default``), and the runtime validates frames
against it (:func:`runtime.protocol.frames.parse_client_frame`). A team's own action is
not added here: it gets its own route and function
(``ChatDeployment.add_client_route``, :mod:`runtime.intake.extension`).
"""

from __future__ import annotations

from typing import Final

__all__ = ["BUILTIN_ACTIONS"]

BUILTIN_ACTIONS: Final = (
    "join",
    "leave",
    "send",
    "history",
    "presence",
    "ping",
    "refresh",
    "upload",
    "download",
)
