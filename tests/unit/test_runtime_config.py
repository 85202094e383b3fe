"""chat.config and chat.clients: settings from the environment, cached clients."""

from __future__ import annotations

from typing import Any

import pytest

from chat import clients, config


def test_settings_from_env() -> None:
    settings = config.get_settings()
    assert settings.region == "us-east-1"
    assert settings.connections_table == "chat-test-connections"
    assert settings.messages_table == "chat-test-messages"
    assert settings.bus_name == "chat-test-chat-bus"
    assert settings.source == "chat.chat"
    assert settings.max_body_bytes == 16384
    assert settings.fanout_concurrency == 4
    assert config.get_settings() is settings


def test_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAX_BODY_BYTES", "HISTORY_RETENTION_SECONDS", "CONNECTION_TTL_SECONDS"):
        monkeypatch.delenv(name)
    config.reset()
    settings = config.get_settings()
    assert (settings.max_body_bytes, settings.history_retention_seconds) == (16384, 86400)
    assert settings.connection_ttl_seconds > 7200
    monkeypatch.setenv("FANOUT_CONCURRENCY", "zero")
    config.reset()
    with pytest.raises(config.ConfigError, match="FANOUT_CONCURRENCY"):
        config.get_settings()
    monkeypatch.setenv("FANOUT_CONCURRENCY", "0")
    config.reset()
    with pytest.raises(config.ConfigError, match="FANOUT_CONCURRENCY"):
        config.get_settings()


def test_missing_required_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME")
    config.reset()
    with pytest.raises(config.ConfigError, match="EVENT_BUS_NAME"):
        _ = config.get_settings().bus_name


def test_misconfiguration_is_an_internal_error_frame(
    chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat.connect("c1", "alice")
    chat.send("c1", {"action": "join", "room": "lobby"})
    monkeypatch.delenv("EVENT_BUS_NAME")
    config.reset()
    reply = chat.send("c1", {"action": "send", "room": "lobby", "body": 1, "ref": "x"})
    # The whole frame: an error frame like any other, no detail of the cause.
    assert reply == {"type": "error", "code": "internal", "message": "internal error", "ref": "x"}


def test_clients_are_created_once(aws: None) -> None:
    assert clients.dynamodb() is clients.dynamodb()
    assert clients.events() is clients.events()
    assert clients.dynamodb().meta.region_name == "us-east-1"
