"""The runtime's environment (docs/contracts.md, "Environment"): one list of its variables.

Every variable the stacks set on a built-in function, and every one the
runtime reads (``runtime/``), is here; tests/infra/test_runtime_variables.py
checks both directions, so a new variable cannot be left out. What it is for:
``ChatDeployment.add_environment`` refuses all of them, since a team's value
would silently replace what ``ChatConfig`` set (or, for a variable the stacks
leave unset, change the runtime's behaviour behind ``ChatConfig``'s back).
"""

from __future__ import annotations

from typing import Final

__all__ = ["RUNTIME_VARIABLES"]

RUNTIME_VARIABLES: Final = frozenset(
    {
        # runtime.platform.runtime_settings.Settings
        "CONNECTIONS_TABLE",
        "MESSAGES_TABLE",
        "EVENT_BUS_NAME",
        "EVENT_SOURCE",
        "CALLBACK_URL",
        "CHAT_REGIONS",
        "BUS_CLOCK_SKEW_SECONDS",
        "MAX_BODY_BYTES",
        "HISTORY_RETENTION_SECONDS",
        "CONNECTION_TTL_SECONDS",
        "FANOUT_CONCURRENCY",
        "FANOUT_SHARD_THRESHOLD",
        "FANOUT_SHARD_SIZE",
        "FANOUT_REQUEST_BUDGET",
        "FANOUT_BUDGET_WINDOW_MS",
        "FANOUT_QUEUE_URL",
        "PRESENCE_LIVE_MAX_MEMBERS",
        "HTTP_POLL_INTERVAL_MS",
        "HTTP_POLL_MAX_INTERVAL_MS",
        "CONNECTION_RATE_LIMIT",
        "CONNECTION_BURST_LIMIT",
        "USER_RATE_LIMIT",
        "USER_BURST_LIMIT",
        "MAX_ROOMS_PER_CONNECTION",
        "MAX_LONG_POLLS_PER_USER",
        "MAX_CONNECTIONS_PER_USER",
        "LOCAL_FAST_PATH_MAX_MEMBERS",
        "SEQUENCE_WAIT_MS",
        "ATTACHMENT_BUCKET",
        "ATTACHMENT_BUCKET_PATTERN",
        "MAX_ATTACHMENT_BYTES",
        "UPLOAD_SLOTS_PER_USER_PER_MINUTE",
        # tokens (runtime.auth.token_keys, runtime.auth.tokens, runtime.auth.jwks)
        "SIGNING_SECRET_NAME",
        "MAX_TOKEN_LIFETIME_SECONDS",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWKS_URL",
        "JWT_USER_ID_CLAIM",
        "JWT_NAME_CLAIM",
        "JWT_ROOMS_CLAIM",
        "JWT_DEFAULT_ROOMS",
        "CHAT_SANDBOX_LOOPBACK_ISSUER",  # sandbox only (runtime.auth.jwks.LOOPBACK_SETTING)
        # Powertools: the metrics namespace and service name the alarms and dashboards read
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
)
