"""Typed settings of the runtime, read once from the environment.

The names are the ones in ``docs/contracts.md``. Table, bus and source names
have no sensible default and are required only when first used, so that a
handler that never touches (say) the bus does not need its variable.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

__all__ = ["SERVER_SOURCE_SUFFIX", "Settings", "get_settings", "reset"]

# EVENT_SOURCE + this: the server API's messages (infra.config.SERVER_SOURCE_SUFFIX).
SERVER_SOURCE_SUFFIX = ".server"


class ConfigError(RuntimeError):
    """A required environment variable is missing or malformed."""


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


class Settings(NamedTuple):
    """Runtime configuration (one instance per container)."""

    region: str
    connections_table_name: str
    messages_table_name: str
    event_bus_name: str
    event_source: str
    callback_url: str
    max_body_bytes: int
    history_retention_seconds: int
    connection_ttl_seconds: int
    fanout_concurrency: int
    http_poll_interval_ms: int = 250
    # Sharded fan-out (runtime.delivery.broadcast, fanout_worker): see docs/architecture.md.
    fanout_queue_url: str = ""
    fanout_shard_threshold: int = 2000
    fanout_shard_size: int = 1000
    fanout_request_budget: int = 5000
    fanout_budget_window_ms: int = 50
    # ClientMessageHandler posts to the local members of rooms up to this size itself
    # (runtime.delivery.local_delivery); 0: every message takes the bus path.
    local_fast_path_max_members: int = 100
    # Rooms above this many members get no live ``member`` frames (runtime.presence.roster).
    presence_live_max_members: int = 200
    # A numbered send waits at most this long for the sends before it
    # (runtime.store.sequence_store).
    sequence_wait_ms: int = 3000
    # Bus events (event_bus_message_handler): the regions an event may come
    # from (empty: only this one) and how far in the future its timestamps
    # may be (clock skew between regions).
    chat_regions: tuple[str, ...] = ()
    bus_clock_skew_seconds: int = 60
    # Client budgets (runtime.quota.client_budget, runtime.delivery.long_poll, docs/protocol.md
    # "Limits").
    connection_rate_per_second: int = 10
    connection_burst: int = 30
    user_rate_per_second: int = 20
    user_burst: int = 60
    max_rooms_per_connection: int = 50
    max_connections_per_user: int = 20
    max_long_polls_per_user: int = 4
    http_poll_max_interval_ms: int = 2000
    # Attachments (runtime.attachments.transfers): this region's bucket, every region's bucket name
    # with "{region}" in place of the region, the largest upload, upload slots per user per minute.
    attachment_bucket_name: str = ""
    attachment_bucket_pattern: str = ""
    max_attachment_bytes: int = 10 * 1024 * 1024
    upload_slots_per_user_per_minute: int = 10

    @staticmethod
    def from_env() -> Settings:
        return Settings(
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "",
            connections_table_name=os.environ.get("CONNECTIONS_TABLE", ""),
            messages_table_name=os.environ.get("MESSAGES_TABLE", ""),
            event_bus_name=os.environ.get("EVENT_BUS_NAME", ""),
            event_source=os.environ.get("EVENT_SOURCE", ""),
            callback_url=os.environ.get("CALLBACK_URL", ""),
            max_body_bytes=_int("MAX_BODY_BYTES", 16384),
            history_retention_seconds=_int("HISTORY_RETENTION_SECONDS", 86400),
            connection_ttl_seconds=_int("CONNECTION_TTL_SECONDS", 10800),
            fanout_concurrency=_int("FANOUT_CONCURRENCY", 128),
            http_poll_interval_ms=_int("HTTP_POLL_INTERVAL_MS", 250),
            fanout_queue_url=os.environ.get("FANOUT_QUEUE_URL", ""),
            fanout_shard_threshold=_int("FANOUT_SHARD_THRESHOLD", 2000),
            fanout_shard_size=_int("FANOUT_SHARD_SIZE", 1000),
            fanout_request_budget=_int("FANOUT_REQUEST_BUDGET", 5000),
            fanout_budget_window_ms=_int("FANOUT_BUDGET_WINDOW_MS", 50, minimum=10),
            presence_live_max_members=_int("PRESENCE_LIVE_MAX_MEMBERS", 200, minimum=0),
            local_fast_path_max_members=_int("LOCAL_FAST_PATH_MAX_MEMBERS", 100, minimum=0),
            sequence_wait_ms=_int("SEQUENCE_WAIT_MS", 3000, minimum=0),
            chat_regions=tuple(
                region.strip()
                for region in os.environ.get("CHAT_REGIONS", "").split(",")
                if region.strip()
            ),
            bus_clock_skew_seconds=_int("BUS_CLOCK_SKEW_SECONDS", 60, minimum=0),
            connection_rate_per_second=_int("CONNECTION_RATE_LIMIT", 10),
            connection_burst=_int("CONNECTION_BURST_LIMIT", 30),
            user_rate_per_second=_int("USER_RATE_LIMIT", 20),
            user_burst=_int("USER_BURST_LIMIT", 60),
            max_rooms_per_connection=_int("MAX_ROOMS_PER_CONNECTION", 50),
            max_long_polls_per_user=_int("MAX_LONG_POLLS_PER_USER", 4),
            max_connections_per_user=_int("MAX_CONNECTIONS_PER_USER", 20),
            http_poll_max_interval_ms=_int("HTTP_POLL_MAX_INTERVAL_MS", 2000),
            attachment_bucket_name=os.environ.get("ATTACHMENT_BUCKET", ""),
            attachment_bucket_pattern=os.environ.get("ATTACHMENT_BUCKET_PATTERN", ""),
            max_attachment_bytes=_int("MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024),
            upload_slots_per_user_per_minute=_int("UPLOAD_SLOTS_PER_USER_PER_MINUTE", 10),
        )

    @property
    def origin_regions(self) -> frozenset[str]:
        """Where a bus event may come from: the configured regions (this one always)."""
        return frozenset((*self.chat_regions, self.region))

    @property
    def presence_refresh_seconds(self) -> int:
        """How old a connection's last presence announcement may get before a
        ``ping`` renews it (a third of the lease ``CONNECTION_TTL_SECONDS``)."""
        return max(1, self.connection_ttl_seconds // 3)

    # Accessors for the values without defaults: fail loudly, naming the variable.
    @property
    def connections_table(self) -> str:
        return _required("CONNECTIONS_TABLE", self.connections_table_name)

    @property
    def messages_table(self) -> str:
        return _required("MESSAGES_TABLE", self.messages_table_name)

    @property
    def bus_name(self) -> str:
        return _required("EVENT_BUS_NAME", self.event_bus_name)

    @property
    def source(self) -> str:
        return _required("EVENT_SOURCE", self.event_source)

    @property
    def server_source(self) -> str:
        """``source`` of the server API's messages, the one source a ``system:``
        sender is accepted from (EventBusMessageHandler); only ServerApi's role
        may put events with it (stacks: the ``events:source`` condition)."""
        return self.source + SERVER_SOURCE_SUFFIX

    @property
    def callback_endpoint(self) -> str:
        return _required("CALLBACK_URL", self.callback_url)

    @property
    def attachment_bucket(self) -> str:
        return _required("ATTACHMENT_BUCKET", self.attachment_bucket_name)

    def attachment_bucket_of(self, region: str) -> str:
        """Another region's attachment bucket (the names differ only in the region)."""
        pattern = _required("ATTACHMENT_BUCKET_PATTERN", self.attachment_bucket_pattern)
        if "{region}" not in pattern:
            raise ConfigError(f"ATTACHMENT_BUCKET_PATTERN has no {{region}}: {pattern!r}")
        return pattern.replace("{region}", region)


def _required(name: str, value: str) -> str:
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value


@functools.cache
def get_settings() -> Settings:
    """The settings of this container (read from the environment on first use)."""
    return Settings.from_env()


def reset() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
