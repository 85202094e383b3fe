"""The server API of a region: IAM-authorized routes a team's backends call (docs/protocol.md).

* ``POST /server/rooms/{room}/messages`` ``{"body": <any JSON>, "sender": "<name>"}``
  publishes a message into the room as the named system sender, exactly like
  a client's ``send`` (the bus replicates it to every region) -> 202 ``{"id"}``.
* ``POST /server/users/{userId}/disconnect`` closes every connection of the
  user in every region -> 202: it publishes a ``chat.disconnect`` event; in
  each region (the forwarding rules carry it like any chat event) a rule hands
  it to the same function, which finds the user's local connections (the
  connections table's ``ConnectionsByUser`` index) and deletes them through
  ``@connections``; API Gateway then runs ``$disconnect`` as for any close.

Why IAM-authorized HTTP routes rather than documented bus events a backend
puts itself: the caller gets an answer (the message id, or a validation
error with the same codes the clients get) from the same validation the
client frames pass; IAM is what AWS backends sign with anyway (SigV4, no
token to mint or rotate); and the bus stays private to the app (a
cross-account PutEvents permission would let callers put any event,
including forged ``chat.message`` ones).

HTTP APIs have no resource policies: access is granted on the caller's side
(:meth:`ChatServerApi.grant_publish`, ``ChatDeployment.grant_publish``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from aws_cdk import Arn, ArnFormat, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from multiregion_chat.infra.code_asset import handler_path
from multiregion_chat.infra.config import server_event_source
from multiregion_chat.infra.extensions import BusTargetContext, ChatBusConsumer
from multiregion_chat.infra.lambda_function import FunctionDefaults, FunctionRow, chat_function
from multiregion_chat.infra.replication import grant_put_chat_events
from multiregion_chat.infra.storage import CONNECTIONS_BY_USER_INDEX

__all__ = [
    "DISCONNECT_DETAIL_TYPE",
    "DISCONNECT_PATH",
    "PUBLISH_PATH",
    "ChatServerApi",
    "check_grantee_account",
]

PUBLISH_PATH = "/server/rooms/{room}/messages"
DISCONNECT_PATH = "/server/users/{userId}/disconnect"
# The bus event that carries a disconnect to every region (runtime/handlers/server_api_handler.py).
DISCONNECT_DETAIL_TYPE = "chat.disconnect"
SERVER_API_CONNECTIONS_ACTIONS = ("dynamodb:Query",)  # the ConnectionsByUser index


def check_grantee_account(stack: Stack, role_arn: str) -> None:
    """Refuse a role of another account: ValueError naming both accounts.

    A grant is a policy attached to the role *by name*, and an imported
    role's policy always lands in the deploying account: another account's
    ``arn:...:role/backend`` would give this account's ``backend`` the
    permission instead (and the intended role nothing). That role's account
    must grant it itself. The deploying account is the stack's, or, for the
    environment-agnostic stacks, ``CDK_DEFAULT_ACCOUNT``: the account of the
    credentials the CDK CLI synthesizes (and deploys) with. With neither
    known, or an ARN whose account is a token, there is nothing to compare.
    """
    role_account = Arn.split(role_arn, ArnFormat.SLASH_RESOURCE_NAME).account
    deploying = stack.account
    if Token.is_unresolved(deploying):
        deploying = os.environ.get("CDK_DEFAULT_ACCOUNT", "")
    if not deploying or role_account is None or Token.is_unresolved(role_account):
        return
    if role_account != deploying:
        raise ValueError(
            f"role {role_arn} is in account {role_account}, but this app deploys to account "
            f"{deploying}: a grant attaches a policy to the role by name, and it would land on "
            "this account's role of that name. Grant a role of this account (the other account "
            "can let its role assume it), or deploy the grant in the role's own account."
        )


class ChatServerApi(Construct):
    """The ServerApi function, its two IAM-authorized routes and its ``chat.disconnect`` rule.

    Attributes:
        function: ServerApi (handler ``runtime.handlers.server_api_handler.handler``).
        log_group: its log group.
        publish_route, disconnect_route: the ``HttpRoute`` objects.
        disconnect_consumer: the rule (with retries and dead-letter queue)
            that hands ``chat.disconnect`` events to the function.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        http_api: apigwv2.HttpApi,
        defaults: FunctionDefaults,
        environment: Mapping[str, str],
        event_bus: events.IEventBus,
        event_source: str,
        connections_table: dynamodb.ITable,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function, self.log_group = chat_function(
            self,
            FunctionRow(
                name="ServerApi",
                handler=handler_path("server_api_handler"),
                description="Server API (IAM): publish into a room, disconnect a user everywhere",
                memory_size=256,
                # HTTP API gives up on an integration after 30 s.
                timeout=Duration.seconds(29),
            ),
            defaults,
            environment=environment,
        )
        # chat.disconnect under the app's source, messages under the server's.
        grant_put_chat_events(
            event_bus, self.function, [event_source, server_event_source(event_source)]
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=list(SERVER_API_CONNECTIONS_ACTIONS),
                resources=[f"{connections_table.table_arn}/index/{CONNECTIONS_BY_USER_INDEX}"],
            )
        )

        integration = integrations.HttpLambdaIntegration(
            "ServerApiIntegration",
            self.function,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        iam_auth = authorizers.HttpIamAuthorizer()
        (self.publish_route,) = http_api.add_routes(
            path=PUBLISH_PATH,
            methods=[apigwv2.HttpMethod.POST],
            integration=integration,
            authorizer=iam_auth,
        )
        (self.disconnect_route,) = http_api.add_routes(
            path=DISCONNECT_PATH,
            methods=[apigwv2.HttpMethod.POST],
            integration=integration,
            authorizer=iam_auth,
        )

        def target(context: BusTargetContext) -> events.IRuleTarget:
            return targets.LambdaFunction(
                self.function,
                dead_letter_queue=context.dead_letter_queue,
                retry_attempts=context.retry_attempts,
                max_event_age=context.max_event_age,
            )

        self.disconnect_consumer = ChatBusConsumer(
            self,
            "Disconnects",
            event_bus=event_bus,
            event_pattern=events.EventPattern(
                source=[event_source], detail_type=[DISCONNECT_DETAIL_TYPE]
            ),
            target=target,
            removal_policy=removal_policy,
            description="chat.disconnect events (any region's server API) to ServerApi",
        )

    def allow_disconnect(self, disconnect_connections_arn: str) -> None:
        """Let the function close connections (``DELETE @connections/*`` on one API and stage)."""
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["execute-api:ManageConnections"],
                resources=[disconnect_connections_arn],
            )
        )

    def grant_publish(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` call ``POST /server/rooms/{room}/messages`` (execute-api:Invoke)."""
        return self.publish_route.grant_invoke(grantee)

    def grant_disconnect(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` call ``POST /server/users/{userId}/disconnect`` (execute-api:Invoke)."""
        return self.disconnect_route.grant_invoke(grantee)
