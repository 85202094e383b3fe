"""``{"action": "whoami", "ref"?}`` -> ``{"type": "whoami", "userId", "name", "rooms"}``.

A client action of the team's own, served by its own function: the frame is
validated, errors become ``error`` frames, logs and metrics are the runtime's,
all by :func:`runtime.intake.extension.client_action`.
"""

from __future__ import annotations

from typing import Any

from multiregion_chat.runtime.intake.extension import ActionRequest, client_action


@client_action("whoami")
def handler(request: ActionRequest) -> dict[str, Any]:
    connection = request.connection()
    return {
        "userId": connection.user_id,
        "name": connection.name,
        "rooms": sorted(connection.rooms),
    }
