"""The settings table: every simple setting of the app, once.

Each row holds what used to be spelled in several places: the CDK context
key, the :class:`~multiregion_chat.infra.config.ChatConfig` field, the
runtime's environment variable and which functions get it, the accepted
range, the default and a one-line doc. From it come ``ChatConfig``'s field
defaults and ``from_mapping``'s parsing, and the environment entries the
stacks set (:func:`environment_values`). What cannot be derived from it is
checked against it by tests/infra/test_settings_table.py: README's
configuration table, docs/contracts.md's environment tables, cdk.json's
context defaults, ``CONTEXT_KEYS`` and the runtime's own defaults
(``runtime.platform.runtime_settings``, ``runtime.auth.tokens``), which it
keeps as literals so that a cold start imports nothing from ``infra``.

Settings whose parsing or default depends on more than a range (appName,
stage, regions, removalPolicy, alarmEmail, apiGatewayAccountRole,
httpCorsOrigins, signingSecretName, domainName, hostedZoneId, the ``jwt*``
keys) stay hand-written in ``ChatConfig.from_mapping``.

Standard library only, like ``config``: tools and tests read it without jsii.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLOUDWATCH_LOG_RETENTION",
    "LAMBDA_MEMORY_MB",
    "SETTINGS",
    "Placement",
    "Setting",
    "environment_values",
    "setting",
]

# Which functions the stacks give the variable: "shared" every chat handler
# (ChatFunctions.environment), "token" the Authorizer and ClientMessageHandler
# (functions.authorizer_environment), "HttpHandler" that function only, and
# "unset" none: the runtime's default applies.
Placement = Literal["shared", "token", "HttpHandler", "unset"]


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One setting. ``context_key`` and ``field`` are None for a runtime-only
    variable; ``env`` is None for a setting only the stacks use."""

    context_key: str | None
    field: str | None
    env: str | None
    placement: Placement = "shared"
    kind: Literal["int", "bool"] = "int"
    # Inclusive range of the context value (of the variable, for a runtime-only one).
    minimum: int | None = None
    maximum: int | None = None
    # When set, the only values accepted, and what they are called in an error.
    allowed: tuple[int, ...] = ()
    allowed_meaning: str = ""
    # None: ChatConfig derives the value from other settings (the doc says how).
    default: int | bool | None
    # The variable's value is the field's times this (hours -> seconds).
    env_scale: int = 1
    doc: str

    @property
    def env_default(self) -> int | bool | None:
        """What the variable holds when the stacks set the default."""
        if self.default is None or isinstance(self.default, bool):
            return self.default
        return self.default * self.env_scale


# The only retention periods CloudWatch Logs accepts (PutRetentionPolicy), each
# with the name of its ``aws_logs.RetentionDays`` member: the one list both the
# validation and the stacks (infra.region_stack.log_retention) use.
# tests/infra/test_config.py ties it to CDK's enum (every finite member).
CLOUDWATCH_LOG_RETENTION: Mapping[int, str] = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}

# Lambda's memory range in MB (fanoutMemoryMb, RegionOverrides.memory_size).
LAMBDA_MEMORY_MB = (128, 10_240)

# API Gateway closes every WebSocket connection after 2 hours; connection and
# membership items must outlive that or a live connection loses its records.
_API_GATEWAY_MAX_CONNECTION_HOURS = 2

# A `send` frame carrying the largest body must fit in one WebSocket frame:
# API Gateway closes the connection (1009) on a frame over 32 KB, and browsers
# never fragment what they send. 32,768 bytes less the envelope (action, room,
# ref, JSON framing). One such message then also fits in any reply (128 KB,
# runtime.protocol.reply_limits) beside a full member page (64 KiB).
_MAX_BODY_BYTES_LIMIT = 32_000

# AWS keeps 100 of a region's concurrency (1,000 by default) unreserved; the
# HTTP fallback's share must leave the WebSocket path and the authorizer most
# of it, hence at most half of the default quota.
_HTTP_RESERVED_CONCURRENCY_LIMIT = 500

_HOUR = 3600

# In ChatConfig's field order (runtime-only variables last).
SETTINGS: tuple[Setting, ...] = (
    Setting(
        context_key="maxBodyBytes",
        field="max_body_bytes",
        env="MAX_BODY_BYTES",
        minimum=1,
        maximum=_MAX_BODY_BYTES_LIMIT,
        default=16384,
        doc="largest message body (compact JSON, UTF-8 bytes)",
    ),
    Setting(
        context_key="historyRetentionHours",
        field="history_retention_hours",
        env="HISTORY_RETENTION_SECONDS",
        minimum=1,
        maximum=24 * 365,
        default=24,
        env_scale=_HOUR,
        doc="how long messages stay in every region's history",
    ),
    Setting(
        context_key="connectionTtlHours",
        field="connection_ttl_hours",
        env="CONNECTION_TTL_SECONDS",
        minimum=_API_GATEWAY_MAX_CONNECTION_HOURS + 1,
        maximum=24 * 7,
        default=3,
        env_scale=_HOUR,
        doc="expiry of connection and membership items (outlives API Gateway's 2 h)",
    ),
    Setting(
        context_key="throttleRateLimit",
        field="throttle_rate_limit",
        env=None,
        minimum=1,
        maximum=10_000,
        default=100,
        doc="default route throttling (requests/s) of the WebSocket and HTTP stages",
    ),
    Setting(
        context_key="throttleBurstLimit",
        field="throttle_burst_limit",
        env=None,
        minimum=1,
        maximum=5_000,
        default=200,
        doc="default route burst of the WebSocket and HTTP stages",
    ),
    Setting(
        context_key="logRetentionDays",
        field="log_retention_days",
        env=None,
        allowed=tuple(CLOUDWATCH_LOG_RETENTION),
        allowed_meaning="a CloudWatch Logs retention period",
        default=30,
        doc="retention of function and access log groups",
    ),
    Setting(
        context_key="fanoutConcurrency",
        field="fanout_concurrency",
        env="FANOUT_CONCURRENCY",
        minimum=1,
        maximum=1024,
        default=128,
        doc="@connections requests in flight in one fan-out invocation",
    ),
    Setting(
        context_key="fanoutMemoryMb",
        field="fanout_memory_mb",
        env=None,
        minimum=LAMBDA_MEMORY_MB[0],
        maximum=LAMBDA_MEMORY_MB[1],
        # Where Lambda gives a function one full vCPU: the fan-out is CPU-bound.
        default=1769,
        doc="memory of EventBusMessageHandler and FanoutWorker",
    ),
    Setting(
        context_key="fanoutShardThreshold",
        field="fanout_shard_threshold",
        env="FANOUT_SHARD_THRESHOLD",
        minimum=1,
        maximum=1_000_000,
        default=2000,
        doc="local members above which a room is fanned out by FanoutWorkers",
    ),
    Setting(
        context_key="fanoutShardSize",
        field="fanout_shard_size",
        env="FANOUT_SHARD_SIZE",
        # A job carries the frame (<= maxBodyBytes) and the ids inside SQS's
        # 256 KiB message limit: 2,000 ids of API Gateway's 16 characters stay near 40 KB.
        minimum=1,
        maximum=2000,
        default=1000,
        doc="connection ids per shard job (one FanoutWorker invocation's work)",
    ),
    Setting(
        context_key="fanoutRequestBudget",
        field="fanout_request_budget",
        env="FANOUT_REQUEST_BUDGET",
        # API Gateway's account quota is 10,000/s per region, shared with clients.
        minimum=1,
        maximum=10_000,
        default=5000,
        doc="@connections requests/s all FanoutWorkers of a region make together",
    ),
    Setting(
        context_key="fanoutMaxWorkers",
        field="fanout_max_workers",
        env=None,
        # Lambda's SQS MaximumConcurrency accepts 2-1000.
        minimum=2,
        maximum=1000,
        default=10,
        doc="FanoutWorker invocations at once per region (the queue's MaximumConcurrency)",
    ),
    Setting(
        context_key="presenceLiveMaxMembers",
        field="presence_live_max_members",
        env="PRESENCE_LIVE_MAX_MEMBERS",
        minimum=0,
        maximum=100_000,
        default=200,
        doc="rooms with more members get no live member frames (docs/protocol.md)",
    ),
    Setting(
        context_key="busClockSkewSeconds",
        field="bus_clock_skew_seconds",
        env="BUS_CLOCK_SKEW_SECONDS",
        minimum=0,
        maximum=3600,
        default=60,
        doc="how far in the future a bus event's timestamps may be; later ones are forged",
    ),
    Setting(
        context_key="connectionRateLimit",
        field="connection_rate_limit",
        env="CONNECTION_RATE_LIMIT",
        minimum=1,
        maximum=1000,
        default=10,
        doc="frames/s one WebSocket connection may send (docs/protocol.md, Limits)",
    ),
    Setting(
        context_key="connectionBurstLimit",
        field="connection_burst_limit",
        env="CONNECTION_BURST_LIMIT",
        minimum=1,
        maximum=10_000,
        default=30,
        doc="burst of frames one WebSocket connection may send",
    ),
    Setting(
        context_key="userRateLimit",
        field="user_rate_limit",
        env="USER_RATE_LIMIT",
        minimum=1,
        maximum=1000,
        default=20,
        doc="requests/s of one user: all its connections' frames and HTTP requests",
    ),
    Setting(
        context_key="userBurstLimit",
        field="user_burst_limit",
        env="USER_BURST_LIMIT",
        minimum=1,
        maximum=10_000,
        default=60,
        doc="burst of one user's requests",
    ),
    Setting(
        context_key="maxRoomsPerConnection",
        field="max_rooms_per_connection",
        env="MAX_ROOMS_PER_CONNECTION",
        # ping renews every membership (one UpdateItem each) within one invocation.
        minimum=1,
        maximum=500,
        default=50,
        doc="rooms one connection may be in at once",
    ),
    Setting(
        context_key="maxConnectionsPerUser",
        field="max_connections_per_user",
        env="MAX_CONNECTIONS_PER_USER",
        # Every message to a room costs one post per member connection, from
        # the region's shared fan-out budget.
        minimum=1,
        maximum=1000,
        default=20,
        doc="open WebSocket connections of one user in one region",
    ),
    Setting(
        context_key="localFastPathMaxMembers",
        field="local_fast_path_max_members",
        env="LOCAL_FAST_PATH_MAX_MEMBERS",
        minimum=0,
        maximum=1000,
        # Fits one concurrent round of posts (fanoutConcurrency, 128), so the
        # sender's ack waits about one POST.
        default=100,
        doc="rooms up to this many local members skip the bus hop (0: off)",
    ),
    Setting(
        context_key="maxLongPollsPerUser",
        field="max_long_polls_per_user",
        env="MAX_LONG_POLLS_PER_USER",
        minimum=1,
        maximum=20,
        default=4,
        doc="HTTP long polls one user may hold open at once",
    ),
    Setting(
        context_key="httpReservedConcurrency",
        field="http_reserved_concurrency",
        env=None,
        minimum=1,
        maximum=_HTTP_RESERVED_CONCURRENCY_LIMIT,
        default=100,
        doc="HttpHandler's reserved concurrency: long polls never take the WebSocket path's",
    ),
    Setting(
        context_key="signingSecretManaged",
        field="signing_secret_managed",
        env=None,
        kind="bool",
        default=True,
        doc="true: the first region creates the replicated signing secret; false: it exists",
    ),
    Setting(
        context_key="maxTokenLifetimeHours",
        field="max_token_lifetime_hours",
        env="MAX_TOKEN_LIFETIME_SECONDS",
        placement="token",
        minimum=1,
        maximum=24 * 30,
        default=24,
        env_scale=_HOUR,
        doc="longest token lifetime accepted (exp - now, and exp - iat)",
    ),
    Setting(
        context_key="attachmentRetentionDays",
        field="attachment_retention_days",
        env=None,
        minimum=1,
        maximum=3650,
        default=None,
        doc="days S3 keeps an attachment; unset: the history retention in whole days",
    ),
    Setting(
        context_key="maxAttachmentBytes",
        field="max_attachment_bytes",
        env="MAX_ATTACHMENT_BYTES",
        # S3 takes at most 5 GB in one POST.
        minimum=1,
        maximum=5 * 1024**3,
        default=10 * 1024 * 1024,
        doc="largest attachment (S3 refuses a larger upload itself)",
    ),
    Setting(
        context_key="uploadSlotsPerUserPerMinute",
        field="upload_slots_per_user_per_minute",
        env="UPLOAD_SLOTS_PER_USER_PER_MINUTE",
        minimum=1,
        maximum=600,
        default=10,
        doc="upload slots (presigned POSTs) one user may get per minute",
    ),
    # Runtime-only: no context key; the stacks set a fixed value or none.
    Setting(
        context_key=None,
        field=None,
        env="HTTP_POLL_INTERVAL_MS",
        placement="HttpHandler",
        minimum=1,
        default=250,
        doc="a waiting long-poll GET's first history probe interval (doubling)",
    ),
    Setting(
        context_key=None,
        field=None,
        env="HTTP_POLL_MAX_INTERVAL_MS",
        placement="HttpHandler",
        minimum=1,
        default=2000,
        doc="the longest interval between a long-poll GET's history probes",
    ),
    Setting(
        context_key=None,
        field=None,
        env="FANOUT_BUDGET_WINDOW_MS",
        placement="unset",
        minimum=10,
        default=50,
        doc="length of a fan-out request-budget window",
    ),
    Setting(
        context_key=None,
        field=None,
        env="SEQUENCE_WAIT_MS",
        placement="unset",
        minimum=0,
        default=3000,
        doc="how long a numbered send waits for the sends before it (sequence_gap after)",
    ),
)


def setting(name: str) -> Setting:
    """The row whose context key, field or variable is ``name``."""
    for row in SETTINGS:
        if name in (row.context_key, row.field, row.env):
            return row
    raise KeyError(name)


def environment_values(config: object, placement: Placement) -> dict[str, str]:
    """The variables of ``placement``'s functions, from ``config`` (a ``ChatConfig``)."""
    values: dict[str, str] = {}
    for row in SETTINGS:
        if row.env is None or row.placement != placement:
            continue
        if row.field is None:
            values[row.env] = str(row.env_default)
        else:
            values[row.env] = str(getattr(config, row.field) * row.env_scale)
    return values
