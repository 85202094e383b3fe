"""The app's one typed, validated configuration.

Values come from CDK context: the ``context`` block of ``cdk.json`` provides
defaults and ``cdk synth -c key=value`` overrides any of them. Context from the
command line always arrives as a string, context from ``cdk.json`` keeps its
JSON type, so every parser here accepts both (``"3"`` and ``3``,
``"us-east-1,eu-west-1"`` and ``["us-east-1", "eu-west-1"]``).

A bad value raises :class:`ConfigError` whose message is one line naming the
key, the offending value and what is accepted; ``app.py`` prints exactly that
line and exits, so a typo never surfaces as a jsii stack trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from multiregion_chat.infra.concurrency import default_quota_problem, fanout_workers_limit
from multiregion_chat.infra.settings_table import (
    CLOUDWATCH_LOG_RETENTION,
    LAMBDA_MEMORY_MB,
    SETTINGS,
    Setting,
    setting,
)

__all__ = [
    "ACCEPTED_REGIONS",
    "CLOUDWATCH_LOG_RETENTION",
    "CLOUDWATCH_LOG_RETENTION_DAYS",
    "CONTEXT_KEYS",
    "EXCLUDED_REGIONS",
    "ChatConfig",
    "ConfigError",
    "RegionOverrides",
]

# The regions a deployment may use: every region of the commercial `aws`
# partition where every service the stacks use exists (API Gateway WebSocket
# and HTTP APIs, Lambda on arm64 with python3.14, DynamoDB, EventBridge, SQS,
# SNS, KMS, Secrets Manager with replicas, X-Ray, CloudWatch and its Logs).
# tests/infra/test_config.py checks this list against data: botocore's
# endpoint data (a regional endpoint for each of those services) and the
# per-region CloudFormation resource registry that cfn-lint ships (every
# resource type the templates declare), and that CDK knows each region.
# China, GovCloud, ISO and the European Sovereign Cloud are separate
# partitions: a cross-region EventBridge mesh cannot span partitions.
ACCEPTED_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
)

# Regions of the partition that are deliberately not accepted, and why.
EXCLUDED_REGIONS: dict[str, str] = {
    "me-south-1": (
        "out of service since April 2026 (AWS's own Lambda layer projects stopped "
        "publishing there) and absent from the CloudFormation resource data cfn-lint "
        "ships, so nothing confirms the services it needs"
    ),
}

CLOUDWATCH_LOG_RETENTION_DAYS: tuple[int, ...] = tuple(CLOUDWATCH_LOG_RETENTION)

# Every context key the config reads, in the order of the dataclass fields.
CONTEXT_KEYS: tuple[str, ...] = (
    "appName",
    "stage",
    "regions",
    "maxBodyBytes",
    "historyRetentionHours",
    "connectionTtlHours",
    "throttleRateLimit",
    "throttleBurstLimit",
    "logRetentionDays",
    "removalPolicy",
    "fanoutConcurrency",
    "fanoutMemoryMb",
    "fanoutShardThreshold",
    "fanoutShardSize",
    "fanoutRequestBudget",
    "fanoutMaxWorkers",
    "presenceLiveMaxMembers",
    "busClockSkewSeconds",
    "connectionRateLimit",
    "connectionBurstLimit",
    "userRateLimit",
    "userBurstLimit",
    "maxRoomsPerConnection",
    "maxConnectionsPerUser",
    "localFastPathMaxMembers",
    "maxLongPollsPerUser",
    "httpReservedConcurrency",
    "alarmEmail",
    "apiGatewayAccountRole",
    "httpCorsOrigins",
    "signingSecretName",
    "signingSecretManaged",
    "domainName",
    "hostedZoneId",
    "maxTokenLifetimeHours",
    "jwtIssuer",
    "jwtAudience",
    "jwksUrl",
    "jwtUserIdClaim",
    "jwtNameClaim",
    "jwtRoomsClaim",
    "jwtDefaultRooms",
    "attachmentRetentionDays",
    "maxAttachmentBytes",
    "uploadSlotsPerUserPerMinute",
)

_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,20}$")
_STAGE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
# Deliberately loose: SNS confirms the address anyway; this only catches typos
# such as a missing "@" or stray spaces/commas from a shell.
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
# A browser origin as the Origin header spells it: scheme, host, optional port;
# no path, no trailing slash (API Gateway compares origins literally).
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
# Secrets Manager names: letters, digits and /_+=.@- (no spaces); kept well
# under the 512-character limit.
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,256}$")
# A DNS name of lowercase labels (the global endpoint adds "chat." and "api."
# in front, so it stays well under the 253-character limit).
_DOMAIN = re.compile(
    r"^(?=.{3,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
# Route 53 hosted zone ids: "Z" and upper-case letters/digits (e.g. Z0123456789ABCDEFGHIJ).
_HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
# An OIDC issuer or JWKS URL: https, a host, an optional path (Auth0's issuers
# end with "/"; the token's iss must equal it character for character).
_HTTPS_URL = re.compile(
    r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$"
)
# A JWT claim name (Cognito's are like "cognito:username", "custom:rooms").
_CLAIM = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,256}$")  # printable ASCII, no space
_ROOM_PATTERN = re.compile(r"^[A-Za-z0-9_.:*-]{1,64}$")
_ORIGINS_ACCEPTED = (
    '"*" (any origin) or a comma-separated list of origins like https://chat.example.com'
)

_MAX_BUCKET_NAME = 63  # S3's limit on bucket names


# EVENT_SOURCE + this is the server API's source (the runtime's
# runtime.platform.runtime_settings.SERVER_SOURCE_SUFFIX; a test ties them).
SERVER_SOURCE_SUFFIX = ".server"


def server_event_source(event_source: str) -> str:
    return event_source + SERVER_SOURCE_SUFFIX


class ConfigError(ValueError):
    """A context value is invalid. ``str(error)`` is one printable line."""

    def __init__(self, key: str, value: object, problem: str, accepted: str) -> None:
        self.key = key
        self.value = value
        super().__init__(
            f"Invalid context value for {key!r}: {_show(value)} {problem}; accepted: {accepted}"
        )


class _Node(Protocol):
    """The part of ``constructs.Node`` the config needs (keeps this module jsii-free)."""

    def try_get_context(self, key: str) -> Any: ...


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


T = TypeVar("T")


def _string(key: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise ConfigError(key, raw, "is not a string", "a string")
    return raw.strip()


def _integer(key: str, raw: object, lo: int, hi: int) -> int:
    accepted = f"an integer from {lo} to {hi}"
    if isinstance(raw, bool):  # bool is an int subclass; "true" is no number
        raise ConfigError(key, raw, "is not an integer", accepted)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        value = int(raw)
    else:
        raise ConfigError(key, raw, "is not an integer", accepted)
    if not lo <= value <= hi:
        raise ConfigError(key, raw, "is out of range", accepted)
    return value


def _boolean(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise ConfigError(key, raw, "is not a boolean", "true, false")


def _regions(key: str, raw: object) -> tuple[str, ...]:
    accepted = ", ".join(ACCEPTED_REGIONS)
    if isinstance(raw, str):
        items: list[object] = [part.strip() for part in raw.split(",")] if raw.strip() else []
    elif isinstance(raw, list | tuple):
        items = [item.strip() if isinstance(item, str) else item for item in raw]
    else:
        raise ConfigError(key, raw, "is not a list of regions", accepted)
    if not items:
        raise ConfigError(key, raw, "is empty", f"one or more of {accepted}")
    seen: set[str] = set()
    for item in items:
        if isinstance(item, str) and item in EXCLUDED_REGIONS:
            raise ConfigError(key, item, f"is not accepted: {EXCLUDED_REGIONS[item]}", accepted)
        if not isinstance(item, str) or item not in ACCEPTED_REGIONS:
            raise ConfigError(key, item, "is not an AWS region", accepted)
        if item in seen:
            raise ConfigError(key, item, "is listed twice", "each region at most once")
        seen.add(item)
    return tuple(items)  # type: ignore[arg-type]  # every item was checked to be a str


def _origins(key: str, raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        items: list[object] = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, list | tuple):
        items = [item.strip() if isinstance(item, str) else item for item in raw]
    else:
        raise ConfigError(key, raw, "is not a list of origins", _ORIGINS_ACCEPTED)
    if not items or items == [""]:
        raise ConfigError(key, raw, "is empty", _ORIGINS_ACCEPTED)
    if "*" in items and len(items) > 1:
        raise ConfigError(key, raw, 'mixes "*" with origins', _ORIGINS_ACCEPTED)
    seen: set[str] = set()
    for item in items:
        if item == "*":
            continue
        if not isinstance(item, str) or not _ORIGIN.fullmatch(item):
            raise ConfigError(key, item, "is not an origin", _ORIGINS_ACCEPTED)
        if item in seen:
            raise ConfigError(key, item, "is listed twice", "each origin at most once")
        seen.add(item)
    return tuple(items)  # type: ignore[arg-type]  # every item was checked to be a str


def _matching(key: str, raw: object, pattern: re.Pattern[str], accepted: str) -> str:
    value = _string(key, raw)
    if not pattern.fullmatch(value):
        raise ConfigError(key, raw, f"does not match {pattern.pattern}", accepted)
    return value


def _https_url(key: str, raw: object) -> str:
    return _matching(key, raw, _HTTPS_URL, "an https:// URL")


def _claim(key: str, raw: object) -> str:
    return _matching(key, raw, _CLAIM, "a claim name (letters, digits, _:.-)")


def _room_patterns(key: str, raw: object) -> tuple[str, ...] | None:
    accepted = '"*" (every room) or comma-separated room patterns like lobby,team-*'
    items = raw if isinstance(raw, list) else _string(key, raw).split(",")
    patterns = [str(item).strip() for item in items if str(item).strip()]
    if patterns == ["*"]:
        return None
    if not patterns or not all(_ROOM_PATTERN.fullmatch(p) for p in patterns):
        raise ConfigError(key, raw, "is not a list of room patterns", accepted)
    return tuple(patterns)


# The table's rows ChatConfig reads from context (runtime-only variables have no key).
_CONTEXT_SETTINGS: tuple[tuple[str, str, Setting], ...] = tuple(
    (row.context_key, row.field, row) for row in SETTINGS if row.context_key and row.field
)


def _table_parser(row: Setting) -> Callable[[str, object], Any]:
    """``row``'s parser: a boolean, an integer in its range, or one of its allowed values."""
    if row.kind == "bool":
        return _boolean
    if row.allowed:
        allowed = row.allowed

        def one_of(key: str, raw: object) -> int:
            value = _integer(key, raw, min(allowed), max(allowed))
            if value not in allowed:
                raise ConfigError(
                    key, raw, f"is not {row.allowed_meaning}", ", ".join(map(str, allowed))
                )
            return value

        return one_of
    assert row.minimum is not None and row.maximum is not None, row
    lo, hi = row.minimum, row.maximum
    return lambda key, raw: _integer(key, raw, lo, hi)


def _default(field_name: str) -> Any:
    """``field_name``'s default from the settings table (infra.settings_table)."""
    return setting(field_name).default


@dataclass(frozen=True, kw_only=True)
class ChatConfig:
    """Everything the stacks need to know about one deployment of the app.

    Build it with :meth:`from_context` (inside a CDK app) or
    :meth:`from_mapping` (tests, tools); both validate every field.

    The numeric and boolean settings (context key, range, default, the
    runtime's variable, doc) are rows of :data:`infra.settings_table.SETTINGS`:
    their defaults below and their parsing come from there.
    """

    app_name: str = "chat"
    stage: str = "prod"
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-northeast-1")
    max_body_bytes: int = _default("max_body_bytes")
    history_retention_hours: int = _default("history_retention_hours")
    connection_ttl_hours: int = _default("connection_ttl_hours")
    throttle_rate_limit: int = _default("throttle_rate_limit")
    throttle_burst_limit: int = _default("throttle_burst_limit")
    log_retention_days: int = _default("log_retention_days")
    removal_policy: Literal["retain", "destroy"] = "retain"
    # Requests in flight in one fan-out invocation (runtime.delivery.engine).
    fanout_concurrency: int = _default("fanout_concurrency")
    # Memory of the functions that post to @connections: 1,769 MB is where
    # Lambda gives a function one full vCPU, and the fan-out is CPU-bound.
    fanout_memory_mb: int = _default("fanout_memory_mb")
    # A room with more local members than this is fanned out by FanoutWorkers.
    fanout_shard_threshold: int = _default("fanout_shard_threshold")
    # Connection ids per shard job (one FanoutWorker invocation's work unit).
    fanout_shard_size: int = _default("fanout_shard_size")
    # @connections requests/s all FanoutWorkers of a region may make together
    # (API Gateway's account quota is 10,000/s per region, shared with clients).
    fanout_request_budget: int = _default("fanout_request_budget")
    # FanoutWorker invocations at once per region (the queue's MaximumConcurrency).
    fanout_max_workers: int = _default("fanout_max_workers")
    # Rooms with more members than this get no live `member` frames (docs/protocol.md).
    presence_live_max_members: int = _default("presence_live_max_members")
    # How far in the future a bus event's timestamps may be (clock skew
    # between regions); later events are dropped as forged.
    bus_clock_skew_seconds: int = _default("bus_clock_skew_seconds")
    # Client budgets (docs/protocol.md, "Limits"): requests/s and burst of one
    # connection and of one user (all its connections and HTTP requests).
    connection_rate_limit: int = _default("connection_rate_limit")
    connection_burst_limit: int = _default("connection_burst_limit")
    user_rate_limit: int = _default("user_rate_limit")
    user_burst_limit: int = _default("user_burst_limit")
    max_rooms_per_connection: int = _default("max_rooms_per_connection")
    # Open WebSocket connections of one user in one region: every message to a room
    # costs one post per member connection, from the region's shared fan-out budget.
    max_connections_per_user: int = _default("max_connections_per_user")
    # ClientMessageHandler serves the local members of rooms up to this size itself,
    # without the EventBridge hop (0: off). 100 fits one concurrent round of posts
    # (fanoutConcurrency, 128), so the sender's ack waits about one POST.
    local_fast_path_max_members: int = _default("local_fast_path_max_members")
    max_long_polls_per_user: int = _default("max_long_polls_per_user")
    # HttpHandler's ReservedConcurrentExecutions: long polls can never take
    # the concurrency the WebSocket functions and the authorizer need.
    http_reserved_concurrency: int = _default("http_reserved_concurrency")
    alarm_email: str | None = None
    # AWS::ApiGateway::Account is one setting per account and region: exactly
    # one stack per account-region may own it (see ChatWebSocketApi). Default:
    # the prod stage owns it, every other stage leaves it alone.
    api_gateway_account_role: bool = True
    # Origins allowed to call the HTTP fallback API from a browser (CORS).
    http_cors_origins: tuple[str, ...] = ("*",)
    # The token signing secret (Secrets Manager), the same value in every
    # region; None: "<appName>/<stage>/token-signing-secret" (signing_secret_id).
    signing_secret_name: str | None = None
    # True: the first region's stack creates it, replicated to the others;
    # False: an existing, replicated secret of that name is used.
    signing_secret_managed: bool = _default("signing_secret_managed")
    # The optional global endpoint (infra/global_endpoint.py): both or neither.
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    # Longest lifetime the authorizer accepts (exp - now, and exp - iat).
    max_token_lifetime_hours: int = _default("max_token_lifetime_hours")
    # OIDC: with an issuer, tokens are that issuer's RS256/ES256 JWTs (keys from
    # its JWKS) instead of HS256 with the signing secret (README, "Use your
    # identity provider"). None: HS256 (no secret is created or read otherwise).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_url: str | None = None  # None: discovered from the issuer
    jwt_user_id_claim: str = "sub"
    jwt_name_claim: str = "name"
    jwt_rooms_claim: str = "rooms"
    # Room patterns of a token without the rooms claim; None: every room.
    jwt_default_rooms: tuple[str, ...] | None = None
    # Attachments (infra/attachments.py, docs/protocol.md "Attachments"): days an
    # object is kept (None: the history retention rounded up to whole days), the
    # largest upload, and upload slots per user per minute.
    attachment_retention_days: int | None = _default("attachment_retention_days")
    max_attachment_bytes: int = _default("max_attachment_bytes")
    upload_slots_per_user_per_minute: int = _default("upload_slots_per_user_per_minute")

    def __post_init__(self) -> None:
        global_endpoint = bool(self.domain_name and self.hosted_zone_id)
        quota_problem = default_quota_problem(
            self.http_reserved_concurrency,
            global_endpoint=global_endpoint,
            fanout_max_workers=self.fanout_max_workers,
        )
        if quota_problem:
            limit = fanout_workers_limit(
                self.http_reserved_concurrency, global_endpoint=global_endpoint
            )
            raise ConfigError(
                "fanoutMaxWorkers",
                self.fanout_max_workers,
                f"with httpReservedConcurrency={self.http_reserved_concurrency} {quota_problem}",
                f"at most {limit} with that httpReservedConcurrency, or a lower "
                "httpReservedConcurrency",
            )
        longest = len(self.attachment_bucket_name(max(self.regions, key=len), "0" * 12))
        if longest > _MAX_BUCKET_NAME:
            raise ConfigError(
                "appName",
                self.app_name,
                f"with stage {self.stage!r} makes attachment bucket names of {longest} "
                f"characters (S3 allows {_MAX_BUCKET_NAME})",
                "a shorter appName or stage",
            )
        if self.jwt_issuer and not self.jwt_audience:
            raise ConfigError(
                "jwtAudience", None, "is missing", "the audience (aud) the issuer's tokens carry"
            )
        if not self.jwt_issuer:
            for key, value in (("jwtAudience", self.jwt_audience), ("jwksUrl", self.jwks_url)):
                if value:
                    raise ConfigError(key, value, "is set without jwtIssuer", "also set jwtIssuer")

    # ---- construction -------------------------------------------------
    @classmethod
    def from_context(cls, node: _Node) -> ChatConfig:
        """Read every key from CDK context (cdk.json, then ``-c`` overrides)."""
        values = {key: node.try_get_context(key) for key in CONTEXT_KEYS}
        return cls.from_mapping({k: v for k, v in values.items() if v is not None})

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> ChatConfig:
        """Validate context-style values (camelCase keys); missing keys take defaults."""

        def get(key: str, parse: Callable[[str, object], T], default: T) -> T:
            raw = values.get(key)
            # An empty string from `-c key=` means "use the default", except
            # for regions where an empty list is an error worth reporting.
            if raw is None or (raw == "" and key != "regions"):
                return default
            return parse(key, raw)

        defaults = cls()
        stage = get(
            "stage",
            lambda k, v: _matching(k, v, _STAGE, "1-16 lowercase letters/digits, letter first"),
            defaults.stage,
        )

        def removal(key: str, raw: object) -> Literal["retain", "destroy"]:
            value = _string(key, raw).lower()
            if value == "retain":
                return "retain"
            if value == "destroy":
                return "destroy"
            raise ConfigError(key, raw, "is not a removal policy", "retain, destroy")

        def email(key: str, raw: object) -> str:
            return _matching(key, raw, _EMAIL, "an e-mail address")

        domain_name = get(
            "domainName",
            lambda k, v: _matching(
                k,
                v.strip().lower().rstrip(".") if isinstance(v, str) else v,
                _DOMAIN,
                "a DNS name like example.com",
            ),
            defaults.domain_name,
        )
        hosted_zone_id = get(
            "hostedZoneId",
            lambda k, v: _matching(
                k, v, _HOSTED_ZONE_ID, "a Route 53 hosted zone id like Z0123456789ABCDEFGHIJ"
            ),
            defaults.hosted_zone_id,
        )
        if (domain_name is None) != (hosted_zone_id is None):
            missing = "hostedZoneId" if hosted_zone_id is None else "domainName"
            given = "domainName" if hosted_zone_id is None else "hostedZoneId"
            raise ConfigError(
                missing,
                None,
                f"is missing while {given} is set",
                "both domainName and hostedZoneId (the global endpoint), or neither",
            )

        return cls(
            app_name=get(
                "appName",
                lambda k, v: _matching(
                    k, v, _APP_NAME, "2-21 lowercase letters/digits/hyphens, letter first"
                ),
                defaults.app_name,
            ),
            stage=stage,
            regions=get("regions", _regions, defaults.regions),
            # The simple settings: one parser each, from the settings table.
            **{
                name: get(key, _table_parser(row), getattr(defaults, name))
                for key, name, row in _CONTEXT_SETTINGS
            },
            # Production data survives a stack deletion by default; any other
            # stage is disposable unless the context says otherwise.
            removal_policy=get(
                "removalPolicy", removal, "retain" if stage == "prod" else "destroy"
            ),
            alarm_email=get("alarmEmail", email, defaults.alarm_email),
            # One stage owns the account-level singleton: prod unless told otherwise.
            api_gateway_account_role=get("apiGatewayAccountRole", _boolean, stage == "prod"),
            http_cors_origins=get("httpCorsOrigins", _origins, defaults.http_cors_origins),
            signing_secret_name=get(
                "signingSecretName",
                lambda k, v: _matching(
                    k, v, _SECRET_NAME, "1-256 characters of letters, digits and /_+=.@-"
                ),
                defaults.signing_secret_name,
            ),
            domain_name=domain_name,
            hosted_zone_id=hosted_zone_id,
            jwt_issuer=get("jwtIssuer", _https_url, defaults.jwt_issuer),
            jwt_audience=get(
                "jwtAudience",
                lambda k, v: _matching(k, v, _AUDIENCE, "1-256 printable characters, no space"),
                defaults.jwt_audience,
            ),
            jwks_url=get("jwksUrl", _https_url, defaults.jwks_url),
            jwt_user_id_claim=get("jwtUserIdClaim", _claim, defaults.jwt_user_id_claim),
            jwt_name_claim=get("jwtNameClaim", _claim, defaults.jwt_name_claim),
            jwt_rooms_claim=get("jwtRoomsClaim", _claim, defaults.jwt_rooms_claim),
            jwt_default_rooms=get("jwtDefaultRooms", _room_patterns, defaults.jwt_default_rooms),
        )

    # ---- derived names ------------------------------------------------
    def stack_name(self, region: str) -> str:
        """CloudFormation stack name (and construct id) of ``region``'s stack."""
        return f"{self.app_name}-{self.stage}-{region}"

    @property
    def global_websocket_domain(self) -> str | None:
        """``chat.<domainName>``: the WebSocket API's global name (None without domainName)."""
        return f"chat.{self.domain_name}" if self.domain_name else None

    @property
    def global_http_domain(self) -> str | None:
        """``api.<domainName>``: the HTTP API's global name (None without domainName)."""
        return f"api.{self.domain_name}" if self.domain_name else None

    def dashboard_name(self, region: str) -> str:
        """CloudWatch dashboard of ``region`` (dashboard names are per account: region in it)."""
        return self.stack_name(region)

    @property
    def global_dashboard_name(self) -> str:
        """The dashboard with every region side by side (in the primary region)."""
        return f"{self.app_name}-{self.stage}-global"

    @property
    def bus_name(self) -> str:
        """Name of the chat bus; identical in every region so ARNs are predictable."""
        return f"{self.app_name}-{self.stage}-chat-bus"

    @property
    def signing_secret_id(self) -> str:
        """Name of the token signing secret; identical in every region (see ChatAuth)."""
        return self.signing_secret_name or f"{self.app_name}/{self.stage}/token-signing-secret"

    @property
    def oidc(self) -> bool:
        """True when tokens come from an OIDC issuer (no signing secret then)."""
        return self.jwt_issuer is not None

    @property
    def max_token_lifetime_seconds(self) -> int:
        return self.max_token_lifetime_hours * 3600

    @property
    def primary_region(self) -> str:
        """The first configured region: its stack creates the (replicated) signing secret."""
        return self.regions[0]

    @property
    def event_source(self) -> str:
        """``source`` of every chat event the app's functions put (what the rules match)."""
        return f"{self.app_name}.chat"

    @property
    def server_event_source(self) -> str:
        """``source`` of the server API's messages: the only events a ``system:``
        sender is accepted in, and only ServerApi's role may put them."""
        return server_event_source(self.event_source)

    @property
    def chat_event_sources(self) -> list[str]:
        """Both sources: what the delivery, forwarding and consumer rules match."""
        return [self.event_source, self.server_event_source]

    @property
    def metrics_namespace(self) -> str:
        """CloudWatch namespace of the runtime's Powertools metrics."""
        return f"{self.app_name}/{self.stage}"

    @property
    def history_retention_seconds(self) -> int:
        return self.history_retention_hours * 3600

    @property
    def connection_ttl_seconds(self) -> int:
        return self.connection_ttl_hours * 3600

    @property
    def attachment_expiry_days(self) -> int:
        """Days S3 keeps an attachment: ``attachmentRetentionDays``, else the history
        retention rounded up to whole days (a lifecycle rule counts whole days)."""
        if self.attachment_retention_days is not None:
            return self.attachment_retention_days
        return -(-self.history_retention_hours // 24)

    def attachment_bucket_name(self, region: str, account: str) -> str:
        """The attachment bucket of ``region``: deterministic, so every region (and the
        runtime) can name every other region's bucket without a lookup."""
        return f"{self.app_name}-{self.stage}-files-{account}-{region}"

    def attachment_replication_role_name(self, region: str) -> str:
        """The role S3 replicates ``region``'s bucket with (IAM names are per account)."""
        return f"{self.app_name}-{self.stage}-files-repl-{region}"

    def other_regions(self, region: str) -> tuple[str, ...]:
        """Every configured region except ``region`` (the forwarding targets)."""
        return tuple(r for r in self.regions if r != region)


@dataclass(frozen=True, kw_only=True)
class RegionOverrides:
    """What one region does differently from the ``ChatConfig`` every region shares.

    Give them to ``ChatDeployment(overrides={"eu-west-1": RegionOverrides(...)})``.
    Every field is optional; a name that matches nothing fails synth (a typo
    never silently does nothing).

    Attributes:
        throttle_rate_limit, throttle_burst_limit: the WebSocket and HTTP
            stages' default route throttling in this region.
        memory_size: function name (``ClientMessageHandler``, ``FanoutWorker``,
            or a route/consumer function you added) -> memory in MB.
        alarm_thresholds: alarm id (``ChatMonitoring.alarms`` keys, e.g.
            ``WebSocketIntegrationErrors``) -> threshold.
    """

    throttle_rate_limit: int | None = None
    throttle_burst_limit: int | None = None
    memory_size: Mapping[str, int] = field(default_factory=dict)
    alarm_thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The same ranges as the context keys (the settings table) and Lambda's.
        if self.throttle_rate_limit is not None:
            _in_range_of("throttleRateLimit", "throttle_rate_limit", self.throttle_rate_limit)
        if self.throttle_burst_limit is not None:
            _in_range_of("throttleBurstLimit", "throttle_burst_limit", self.throttle_burst_limit)
        for name, memory in self.memory_size.items():
            _integer(f"memory_size[{name!r}]", memory, *LAMBDA_MEMORY_MB)
        for name, threshold in self.alarm_thresholds.items():
            if isinstance(threshold, bool) or not isinstance(threshold, int | float):
                raise ConfigError(
                    f"alarm_thresholds[{name!r}]", threshold, "is not a number", "a number"
                )


def _in_range_of(context_key: str, name: str, value: int) -> int:
    """``value`` checked against ``context_key``'s range in the settings table."""
    row = setting(context_key)
    assert row.minimum is not None and row.maximum is not None, row
    return _integer(name, value, row.minimum, row.maximum)
