"""The five Lambda functions of a region (six with the global endpoint), each with its
own least-privilege role.

Each function is one row of :func:`function_rows`: handler, memory, timeout,
the exact table actions it may call, whether it publishes on the bus. Adding
a function is adding a row (and its handler module in ``runtime/handlers/``).

Handler strings, environment variable names and the metrics namespace are the
contract in ``docs/contracts.md``. The code is the runtime (``multiregion_chat/runtime/``) with
its bytecode compiled for the runtime (:mod:`infra.code_asset`);
everything the runtime lacks (``runtime/requirements.txt``: Powertools with
its tracer and parser extras, aiohttp, PyJWT with cryptography, their
dependencies, all pinned) is one
layer built by the app for arm64 without Docker
(:func:`infra.bundling.dependencies_layer`), the same in every region: no
public layer, no SSM lookup.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from multiregion_chat.infra.bundling import dependencies_layer
from multiregion_chat.infra.code_asset import (
    RUNTIME_REQUIREMENTS,
    handler_path,
    python_code,
    runtime_source,
)
from multiregion_chat.infra.concurrency import HEALTH_HANDLER_RESERVED_CONCURRENCY
from multiregion_chat.infra.config import ChatConfig
from multiregion_chat.infra.lambda_function import (
    ARCHITECTURE,
    RUNTIME,
    FunctionDefaults,
    FunctionRow,
    chat_function,
)
from multiregion_chat.infra.replication import grant_put_chat_events
from multiregion_chat.infra.settings_table import environment_values
from multiregion_chat.infra.storage import dead_letter_queue

__all__ = [
    "SERVICE_NAME",
    "ChatFunctions",
    "authorizer_environment",
    "function_rows",
]

# Powertools' default `service` dimension: one value for every function so the
# alarms in monitoring.py have one dimension set to match.
SERVICE_NAME = "chat"

# Exactly the DynamoDB actions each handler calls (docs/contracts.md, "IAM the
# handlers need"), spelled out: grant_read_write_data() would add Scan,
# BatchGetItem, ConditionCheckItem, DescribeTable and more.
CONNECTION_HANDLER_CONNECTIONS_ACTIONS = (
    "dynamodb:PutItem",  # $connect: META; the user's first connection entry
    "dynamodb:GetItem",  # $disconnect: META's room list
    "dynamodb:BatchWriteItem",  # $disconnect: memberships
    "dynamodb:DeleteItem",  # $disconnect: META; the user item on the last leave
    "dynamodb:UpdateItem",  # $disconnect: the user item (last leave?), member count
)
CLIENT_HANDLER_CONNECTIONS_ACTIONS = (
    "dynamodb:BatchGetItem",  # runtime.intake.frame_state: budget, META and sequence in one read
    "dynamodb:GetItem",  # budget and sequence re-reads after a lost race; join's cap check
    "dynamodb:PutItem",  # join: membership
    "dynamodb:UpdateItem",  # join/leave/ping: META rooms and expiry; the user item
    "dynamodb:DeleteItem",  # leave: membership; the user item on the last leave
    "dynamodb:Query",  # presence: member pages (USER#, REMOTE#<region># ranges)
)
CLIENT_HANDLER_MESSAGES_ACTIONS = ("dynamodb:Query",)  # history, join's `missed`
# The same-region fast path (runtime.delivery.local_delivery): the conditional history write.
FAST_PATH_MESSAGES_ACTIONS = ("dynamodb:PutItem",)
BUS_HANDLER_MESSAGES_ACTIONS = ("dynamodb:PutItem",)  # conditional history write
BUS_HANDLER_CONNECTIONS_ACTIONS = (
    "dynamodb:Query",  # fan-out: the room's connections; remote regions of a room
    "dynamodb:GetItem",  # 410 Gone cleanup: META; member_presence: user/remote items
    "dynamodb:UpdateItem",  # chat.presence: REMOTE#<region>#<userId> (conditional upsert)
    "dynamodb:BatchWriteItem",  # 410 Gone cleanup: memberships
    "dynamodb:DeleteItem",  # 410 Gone cleanup: META
)
# What every client frame's intake needs (runtime.intake.frame_intake), also a team's client route.
FRAME_INTAKE_CONNECTIONS_ACTIONS = (
    "dynamodb:BatchGetItem",  # runtime.intake.frame_state: budget, META and sequence in one read
    "dynamodb:GetItem",  # runtime.quota.client_budget: the budget again after a lost race
    "dynamodb:UpdateItem",  # runtime.quota.client_budget: conditional budget write
)
HTTP_HANDLER_MESSAGES_ACTIONS = ("dynamodb:Query",)  # GET: history page / long-poll
HTTP_HANDLER_CONNECTIONS_ACTIONS = (
    "dynamodb:GetItem",  # runtime.quota.client_budget: the user's request budget
    "dynamodb:UpdateItem",  # runtime.quota.client_budget: conditional budget write
    "dynamodb:PutItem",  # runtime.delivery.long_poll: take a lease slot (conditional)
    "dynamodb:DeleteItem",  # runtime.delivery.long_poll: release it (conditional)
)


def authorizer_environment(config: ChatConfig) -> dict[str, str]:
    """The token rules of the authorizer (docs/contracts.md, "Authorizer environment")."""
    environment = environment_values(config, "token")
    if not config.oidc:
        # The literal name, like the bus name: the same in every region.
        return {"SIGNING_SECRET_NAME": config.signing_secret_id, **environment}
    assert config.jwt_issuer is not None and config.jwt_audience is not None
    environment.update(
        {
            "JWT_ISSUER": config.jwt_issuer,
            "JWT_AUDIENCE": config.jwt_audience,
            "JWT_USER_ID_CLAIM": config.jwt_user_id_claim,
            "JWT_NAME_CLAIM": config.jwt_name_claim,
            "JWT_ROOMS_CLAIM": config.jwt_rooms_claim,
            "JWT_DEFAULT_ROOMS": ",".join(config.jwt_default_rooms or ("*",)),
        }
    )
    if config.jwks_url:
        environment["JWKS_URL"] = config.jwks_url
    return environment


def function_rows(config: ChatConfig) -> tuple[FunctionRow, ...]:
    """Every function :class:`ChatFunctions` builds, one declaration each."""
    return (
        FunctionRow(
            name="ConnectionHandler",
            handler=handler_path("connection_handler"),
            description="WebSocket $connect/$disconnect: connection records",
            memory_size=256,
            timeout=Duration.seconds(10),
            connections_actions=CONNECTION_HANDLER_CONNECTIONS_ACTIONS,
            # Presence: "left" when $disconnect removed the user's last membership.
            puts_events=True,
        ),
        FunctionRow(
            name="ClientMessageHandler",
            handler=handler_path("client_message_handler"),
            description="WebSocket client actions; replies through route responses",
            # The sender waits for the ack: more memory buys CPU for cold starts.
            memory_size=512,
            timeout=Duration.seconds(10),
            connections_actions=CLIENT_HANDLER_CONNECTIONS_ACTIONS,
            messages_actions=(
                CLIENT_HANDLER_MESSAGES_ACTIONS + FAST_PATH_MESSAGES_ACTIONS
                if config.local_fast_path_max_members > 0
                else CLIENT_HANDLER_MESSAGES_ACTIONS
            ),
            # send; presence "joined"/"left" from join, leave and ping.
            puts_events=True,
            # `refresh` verifies a fresh token by the authorizer's rules.
            environment=authorizer_environment(config),
        ),
        FunctionRow(
            name="EventBusMessageHandler",
            handler=handler_path("event_bus_message_handler"),
            description="Chat bus events: history write, then fan-out to local connections",
            # Fan-out is CPU-bound (signing, HTTP): by default the memory that
            # buys one full vCPU (fanoutMemoryMb).
            memory_size=config.fanout_memory_mb,
            timeout=Duration.seconds(30),
            connections_actions=BUS_HANDLER_CONNECTIONS_ACTIONS,
            messages_actions=BUS_HANDLER_MESSAGES_ACTIONS,
            # Presence: "left" when a 410 Gone cleanup removed the user's last membership.
            puts_events=True,
            # EventBridge invokes it asynchronously.
            async_failure_queue=True,
        ),
        FunctionRow(
            name="HttpHandler",
            handler=handler_path("http_handler"),
            description="HTTP fallback API: send a message, read or long-poll history",
            memory_size=256,
            # HTTP API gives up on an integration after 30 s and a long-poll GET
            # waits up to 20 s: end the function first so the client gets the
            # handler's answer (or a clean 5xx), never a hung request.
            timeout=Duration.seconds(29),
            # No membership check (there is no connection): the connections
            # table holds only the user's request budget and long-poll leases.
            connections_actions=HTTP_HANDLER_CONNECTIONS_ACTIONS,
            messages_actions=HTTP_HANDLER_MESSAGES_ACTIONS,
            # POST publishes the message exactly like `send`.
            puts_events=True,
            # How often a waiting long-poll GET probes history (runtime.delivery.long_poll).
            environment=environment_values(config, "HttpHandler"),
            # A long poll holds an execution for up to 20 s: without a cap,
            # polls could take the region's whole concurrency (docs/operations.md).
            reserved_concurrency=config.http_reserved_concurrency,
        ),
        # Only with the global endpoint, like its one route (GET /health/<key>).
        *(
            (
                FunctionRow(
                    name="HealthHandler",
                    handler=handler_path("health_handler"),
                    description="GET /health: Route 53's health check of the region",
                    # CPU for the cold start: Route 53 waits 2 s for an answer.
                    memory_size=256,
                    # It answers in milliseconds; Route 53 gave up long before.
                    timeout=Duration.seconds(3),
                    # No table, bus or secret (runtime/handlers/health_handler.py says why).
                    shared_environment=False,
                    # Its own executions: HttpHandler's long polls cannot queue it
                    # (and fail the region over), and a burst elsewhere in the
                    # region cannot throttle it: overload is for the alarms, a
                    # failover would only move the load. It also caps what a flood
                    # of this unauthenticated route takes from the region's pool.
                    # A check takes milliseconds: 5 answer far more than the
                    # stage's throttle lets through.
                    reserved_concurrency=HEALTH_HANDLER_RESERVED_CONCURRENCY,
                ),
            )
            if config.domain_name and config.hosted_zone_id
            else ()
        ),
        FunctionRow(
            name="Authorizer",
            handler=handler_path("authorizer"),
            description=(
                "Token authorizer (OIDC: RS256/ES256) of the WebSocket $connect and the HTTP API"
                if config.oidc
                else "Token authorizer (HS256) of the WebSocket $connect and the HTTP API"
            ),
            memory_size=256,
            timeout=Duration.seconds(10),
            # No table, bus or API: only the secret (allow_read_signing_secret),
            # or with an issuer its public JWKS (nothing to grant).
            shared_environment=False,
            environment=authorizer_environment(config),
        ),
    )


class ChatFunctions(Construct):
    """ConnectionHandler, ClientMessageHandler, EventBusMessageHandler, HttpHandler, Authorizer
    (and HealthHandler with the global endpoint).

    Each function has an explicit role with no managed policies: it may write
    to its own log group, send X-Ray traces, use exactly the table actions its
    row lists (docs/contracts.md, "IAM the handlers need") and, if its row
    says so, put events on the region's chat bus. The stack adds what depends
    on other constructs (``CALLBACK_URL`` and the ``@connections`` permission)
    through :meth:`allow_manage_connections` and ``add_environment``.

    Attributes:
        connection_handler: ``$connect`` / ``$disconnect``.
        client_message_handler: every client action (route responses).
        event_bus_message_handler: the delivery rule's target (history + fan-out).
        http_handler: the HTTP fallback API's routes (send, history long-poll).
        health_handler: ``GET /health/<key>``, Route 53's health check (None without
            the global endpoint).
        authorizer: the token authorizer of both APIs (``$connect``, the HTTP
            routes). Its environment is only Powertools' and the token rules
            (:func:`authorizer_environment`); its one permission beyond logs
            and X-Ray, reading the signing secret (none with an OIDC issuer), is
            added by :meth:`allow_read_signing_secret`. ClientMessageHandler
            carries the same token rules and permission (``refresh``); only these
            two import PyJWT and cryptography from the dependencies layer.
        async_failure_queue: where Lambda puts EventBusMessageHandler invocations
            that still fail after its async retries (on-failure destination).
        dependencies_layer: the one layer every function carries (Powertools,
            aiohttp, ...: ``runtime/requirements.txt``).
        defaults: code, layers and log settings every function shares (also
            the fan-out worker's).
        environment: the app's variables every function but the authorizer gets.
        log_groups: each function's log group, by logical name.
        functions: every function, by logical name.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ChatConfig,
        connections_table: dynamodb.ITable,
        messages_table: dynamodb.ITable,
        event_bus: events.IEventBus,
        removal_policy: RemovalPolicy,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        powertools_environment = {
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        self.environment: dict[str, str] = {
            "CONNECTIONS_TABLE": connections_table.table_name,
            "MESSAGES_TABLE": messages_table.table_name,
            # The literal name, not a Ref: it is the same in every region and
            # the local sandbox reads it straight from the template.
            "EVENT_BUS_NAME": config.bus_name,
            "EVENT_SOURCE": config.event_source,
            # Bus events from anywhere else are forged (event_bus_message_handler).
            "CHAT_REGIONS": ",".join(config.regions),
            # Attachments (runtime.attachments.transfers): deterministic bucket names, so a
            # function can name another region's bucket (a download before replication)
            # without a lookup.
            "ATTACHMENT_BUCKET": config.attachment_bucket_name(Aws.REGION, Aws.ACCOUNT_ID),
            "ATTACHMENT_BUCKET_PATTERN": config.attachment_bucket_name("{region}", Aws.ACCOUNT_ID),
            # Limits and sizes: every "shared" row of the settings table.
            **environment_values(config, "shared"),
            **powertools_environment,
        }
        # Everything the runtime lacks, built for arm64 without Docker. aiohttp
        # is in every function's layer but imported only by the code that
        # posts, on first use (runtime.delivery.engine): a layer costs nothing at init.
        self.dependencies_layer = dependencies_layer(
            self,
            "Dependencies",
            requirements=RUNTIME_REQUIREMENTS,
            architecture=ARCHITECTURE,
            runtime=RUNTIME,
        )
        self.defaults = FunctionDefaults(
            code=python_code([runtime_source()], runtime=RUNTIME),
            layers=(self.dependencies_layer,),
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.functions: dict[str, lambda_.Function] = {}
        failure_queues: dict[str, sqs.Queue] = {}

        for row in function_rows(config):
            on_failure = None
            if row.async_failure_queue:
                # Lambda hands an event that failed its retries (with the
                # error) to this queue: a replicated message never vanishes.
                queue = dead_letter_queue(
                    self, f"{row.name}Failures", removal_policy=removal_policy
                )
                failure_queues[row.name] = queue
                on_failure = destinations.SqsDestination(queue)
            base = self.environment if row.shared_environment else powertools_environment
            function, log_group = chat_function(
                self,
                row,
                self.defaults,
                environment={**base, **row.environment},
                on_failure=on_failure,
            )
            if row.connections_actions:
                connections_table.grant(function, *row.connections_actions)
            if row.messages_actions:
                messages_table.grant(function, *row.messages_actions)
            if row.puts_events:
                grant_put_chat_events(event_bus, function, [config.event_source])
            self.functions[row.name] = function
            self.log_groups[row.name] = log_group

        self.connection_handler = self.functions["ConnectionHandler"]
        self.client_message_handler = self.functions["ClientMessageHandler"]
        self.event_bus_message_handler = self.functions["EventBusMessageHandler"]
        self.http_handler = self.functions["HttpHandler"]
        self.authorizer = self.functions["Authorizer"]
        self.health_handler: lambda_.Function | None = self.functions.get("HealthHandler")
        self.async_failure_queue = failure_queues["EventBusMessageHandler"]

    # ---- wiring done by the stack ---------------------------------------
    def allow_manage_connections(
        self,
        manage_connections_arn: str,
        function: lambda_.IFunction | None = None,
        close_connections_arn: str | None = None,
    ) -> None:
        """Let ``function`` (default EventBusMessageHandler) post to ``@connections``
        (and close connections, given ``close_connections_arn``).

        The ARNs should name one API, one stage and one method each, e.g.
        ``ChatWebSocketApi.manage_connections_arn`` (POST) and
        ``close_connections_arn`` (DELETE).
        """
        resources = [manage_connections_arn]
        if close_connections_arn is not None:
            resources.append(close_connections_arn)
        (function or self.event_bus_message_handler).add_to_role_policy(
            iam.PolicyStatement(actions=["execute-api:ManageConnections"], resources=resources)
        )

    def allow_read_signing_secret(self, secret_arn: str) -> None:
        """Let the authorizer and ClientMessageHandler (``refresh``) read the signing
        secret (GetSecretValue on it, nothing else).

        ``secret_arn`` is the secret's full ARN in the region that creates it,
        or ``arn:...:secret:<name>-??????`` for a secret referenced by name
        (Secrets Manager appends six random characters to every ARN).
        """
        # ClientMessageHandler verifies the fresh token of ``refresh`` the same way.
        for function in (self.authorizer, self.client_message_handler):
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue"], resources=[secret_arn]
                )
            )
