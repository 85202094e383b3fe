"""runtime.platform.runtime_settings and runtime.platform.aws_clients: settings from the
environment, cached clients."""

from __future__ import annotations

from typing import Any

import pytest

from multiregion_chat.runtime.platform import aws_clients, runtime_settings


def test_settings_from_env() -> None:
    settings = runtime_settings.get_settings()
    assert settings.region == "us-east-1"
    assert settings.connections_table == "chat-test-connections"
    assert settings.messages_table == "chat-test-messages"
    assert settings.bus_name == "chat-test-chat-bus"
    assert settings.source == "chat.chat"
    assert settings.max_body_bytes == 16384
    assert settings.fanout_concurrency == 4
    assert runtime_settings.get_settings() is settings


def test_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAX_BODY_BYTES", "HISTORY_RETENTION_SECONDS", "CONNECTION_TTL_SECONDS"):
        monkeypatch.delenv(name)
    runtime_settings.reset()
    settings = runtime_settings.get_settings()
    assert (settings.max_body_bytes, settings.history_retention_seconds) == (16384, 86400)
    assert settings.connection_ttl_seconds > 7200
    monkeypatch.setenv("FANOUT_CONCURRENCY", "zero")
    runtime_settings.reset()
    with pytest.raises(runtime_settings.ConfigError, match="FANOUT_CONCURRENCY"):
        runtime_settings.get_settings()
    monkeypatch.setenv("FANOUT_CONCURRENCY", "0")
    runtime_settings.reset()
    with pytest.raises(runtime_settings.ConfigError, match="FANOUT_CONCURRENCY"):
        runtime_settings.get_settings()


def test_missing_required_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME")
    runtime_settings.reset()
    with pytest.raises(runtime_settings.ConfigError, match="EVENT_BUS_NAME"):
        _ = runtime_settings.get_settings().bus_name


def test_misconfiguration_is_an_internal_error_frame(
    chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat.connect("c1", "alice")
    chat.send("c1", {"action": "join", "room": "lobby"})
    monkeypatch.delenv("EVENT_BUS_NAME")
    runtime_settings.reset()
    reply = chat.send("c1", {"action": "send", "room": "lobby", "body": 1, "ref": "x"})
    # The whole frame: an error frame like any other, no detail of the cause.
    assert reply == {"type": "error", "code": "internal", "message": "internal error", "ref": "x"}


def test_clients_are_created_once(aws: None) -> None:
    assert aws_clients.dynamodb() is aws_clients.dynamodb()
    assert aws_clients.events() is aws_clients.events()
    assert aws_clients.dynamodb().meta.region_name == "us-east-1"
