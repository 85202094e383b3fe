"""The team's chat: the project's ChatDeployment, extended as docs/extending.md describes.

It adds:

* a client action ``whoami`` served by the team's own function (team_handlers/whoami.py),
  which reads the connection's record, so it gets GetItem on the connections table;
* a bus consumer ``Moderation`` (team_handlers/moderation.py) that sees every
  ``chat.message`` in every region, with EventBridge retries and a dead-letter queue;
* per-region overrides for eu-west-1: lower throttles, more memory for the
  consumer, a higher integration-error alarm threshold;
* an environment variable for the built-in ClientMessageHandler.

A module of the team's own ``stacks`` package, beside the installed ``multiregion_chat``:
a team's ``stacks``, ``clients`` and ``app`` never meet the project's (tests/infra/test_wheel.py).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import App
from multiregion_chat import ChatConfig, ChatDeployment, FunctionSpec, RegionOverrides

from clients.support import SUPPORT_ROOM

HANDLERS = Path(__file__).resolve().parent.parent / "team_handlers"


def build(app: App) -> ChatDeployment:
    chat = ChatDeployment(
        app,
        config=ChatConfig.from_context(app.node),
        overrides={
            "eu-west-1": RegionOverrides(
                throttle_rate_limit=50,
                throttle_burst_limit=100,
                memory_size={"Moderation": 512},
                alarm_thresholds={"WebSocketIntegrationErrors": 25},
            )
        },
    )
    chat.add_client_route(
        "whoami",
        name="WhoAmI",
        spec=FunctionSpec(
            code_dir=str(HANDLERS),
            handler="whoami.handler",
            description="whoami: the identity this connection was accepted with",
        ),
        permissions=lambda stack, fn: stack.storage.connections_table.grant(fn, "dynamodb:GetItem"),
    )
    chat.add_bus_consumer_function(
        "Moderation",
        spec=FunctionSpec(
            code_dir=str(HANDLERS),
            handler="moderation.handler",
            description="Flags chat messages with words the team does not allow",
            environment={"BLOCKED_WORDS": "spam,scam"},
        ),
        detail_types=["chat.message"],
    )
    chat.add_environment("ClientMessageHandler", "TEAM_SUPPORT_ROOM", SUPPORT_ROOM)
    return chat
