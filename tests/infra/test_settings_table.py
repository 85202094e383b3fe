"""The settings table (infra.settings_table.SETTINGS) against every other place a setting
is spelled: README's configuration table, docs/contracts.md's environment tables, cdk.json's
context, CONTEXT_KEYS, ChatConfig's parsing, the runtime's defaults and the functions'
environment. docs/contracts.md once said an unset FANOUT_CONCURRENCY meant 16 while the
runtime used 128; each test here fails when one such spelling leaves the table.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from multiregion_chat.infra.code_asset import HANDLERS_PACKAGE
from multiregion_chat.infra.config import CONTEXT_KEYS, ChatConfig, ConfigError
from multiregion_chat.infra.runtime_contract import RUNTIME_VARIABLES
from multiregion_chat.infra.settings_table import SETTINGS, Setting, environment_values

from .helpers import CDK_JSON_CONTEXT, REPO_ROOT, SynthResult, resources

README = REPO_ROOT / "README.md"
CONTRACTS = REPO_ROOT / "docs" / "contracts.md"
RUNTIME_SETTINGS = REPO_ROOT / "multiregion_chat" / "runtime" / "platform" / "runtime_settings.py"

CONTEXT_ROWS = [row for row in SETTINGS if row.context_key]
ENV_ROWS = [row for row in SETTINGS if row.env]
_BACKTICKED = re.compile(r"`([^`]+)`")


def _name(row: Setting) -> str:
    return row.context_key or row.env or "?"


def _shown(value: int | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _table_rows(path: Path, heading: str) -> list[list[str]]:
    """The cells of each row of the first table after ``heading``."""
    text = path.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_every_row_is_one_setting() -> None:
    for attribute in ("context_key", "field", "env"):
        names = [getattr(row, attribute) for row in SETTINGS if getattr(row, attribute)]
        assert len(names) == len(set(names)), attribute
    for row in SETTINGS:
        assert (row.context_key is None) == (row.field is None), row
        assert row.env or row.context_key, row
        assert row.doc and "\n" not in row.doc, row
        if row.env is None:
            assert row.placement == "shared" and row.env_scale == 1, row


# ---- ChatConfig -------------------------------------------------------------


def test_context_keys_and_fields_follow_the_table() -> None:
    fields = [field.name for field in dataclasses.fields(ChatConfig)]
    assert [_snake(key) for key in CONTEXT_KEYS] == fields
    for row in CONTEXT_ROWS:
        assert row.context_key in CONTEXT_KEYS, row
        assert row.field == _snake(row.context_key or ""), row
        assert getattr(ChatConfig(), row.field or "") == row.default, row


@pytest.mark.parametrize("row", CONTEXT_ROWS, ids=_name)
def test_from_mapping_accepts_exactly_the_table_s_range(row: Setting) -> None:
    key = row.context_key or ""

    def parsed(raw: object) -> object:
        return getattr(ChatConfig.from_mapping({key: raw}), row.field or "")

    if row.kind == "bool":
        assert (parsed("true"), parsed(False)) == (True, False)
        with pytest.raises(ConfigError, match=key):
            parsed("1")
        return
    low = min(row.allowed) if row.allowed else row.minimum
    high = max(row.allowed) if row.allowed else row.maximum
    assert low is not None and high is not None
    for value in (low, high):
        if key == "fanoutMaxWorkers" and value == high:
            # In range, but the default Lambda quota refuses it with any httpReservedConcurrency.
            with pytest.raises(ConfigError, match="default quota"):
                parsed(value)
            continue
        assert parsed(value) == value
    for value in (low - 1, high + 1):
        with pytest.raises(ConfigError, match=f"{key}.*is out of range"):
            parsed(value)
    if row.allowed:
        gaps = sorted(set(range(low, high + 1)) - set(row.allowed))
        with pytest.raises(ConfigError, match=row.allowed_meaning):
            parsed(gaps[0])


def test_cdk_json_spells_the_table_s_defaults() -> None:
    for row in CONTEXT_ROWS:
        if row.context_key in CDK_JSON_CONTEXT:
            assert CDK_JSON_CONTEXT[row.context_key] == row.default, row.context_key


# ---- the documents ----------------------------------------------------------


def test_readme_configuration_table_agrees_with_the_table() -> None:
    documented: dict[str, tuple[str, str]] = {}
    for keys_cell, defaults_cell, meaning in _table_rows(README, "## Configuration"):
        keys = _BACKTICKED.findall(keys_cell)
        defaults = defaults_cell.split(" / ")
        assert len(defaults) in (1, len(keys)), keys_cell
        for index, key in enumerate(keys):
            documented[key] = (defaults[index if len(defaults) > 1 else 0], meaning)
    assert set(CONTEXT_KEYS) <= set(documented), "README's table lacks these keys"
    for row in CONTEXT_ROWS:
        default, meaning = documented[row.context_key or ""]
        if row.default is not None:
            assert default == f"`{_shown(row.default)}`", row.context_key
        # A range the meaning states ("1-500") is the table's.
        if keys_per_row(row) == 1:
            for low, high in re.findall(r"\b(\d+)-(\d+)\b", meaning):
                assert (int(low), int(high)) == (row.minimum, row.maximum), row.context_key


def keys_per_row(row: Setting) -> int:
    for keys_cell, _, _ in _table_rows(README, "## Configuration"):
        keys = _BACKTICKED.findall(keys_cell)
        if row.context_key in keys:
            return len(keys)
    return 0


# "default 60" or, for a row of several variables, "defaults 10 and 30".
_DEFAULTS = re.compile(r"\bdefaults? (\d+(?: and \d+)*)")


def test_contracts_environment_tables_agree_with_the_table() -> None:
    rows = _table_rows(CONTRACTS, "## Environment of every chat handler")
    rows += _table_rows(CONTRACTS, "### Authorizer environment")
    described: dict[str, tuple[str, str | None]] = {}
    for variables_cell, meaning in rows:
        variables = _BACKTICKED.findall(variables_cell)
        found = _DEFAULTS.search(meaning)
        values = found.group(1).split(" and ") if found else []
        assert len(values) in (0, len(variables)), variables_cell
        for index, variable in enumerate(variables):
            described[variable] = (meaning, values[index] if values else None)
    for row in ENV_ROWS:
        meaning, default = described[row.env or ""]
        assert default == _shown(row.env_default or 0), f"{row.env}: docs/contracts.md"
        if row.context_key:
            assert f"`{row.context_key}`" in meaning, row.env
        if row.minimum is not None and row.maximum is not None and row.env_scale == 1:
            for low, high in re.findall(r"\b(\d+)-(\d+)\b", meaning):
                assert (int(low), int(high)) == (row.minimum, row.maximum), row.env


def test_contracts_unset_defaults_are_the_table_s() -> None:
    """docs/contracts.md's "Unset variables default to `NAME=value`" sentence."""
    text = CONTRACTS.read_text(encoding="utf-8")
    stated = dict(re.findall(r"`([A-Z][A-Z0-9_]+)=(\d+)`", text))
    assert {"FANOUT_CONCURRENCY", "MAX_BODY_BYTES"} <= set(stated)
    by_env = {row.env: row for row in ENV_ROWS}
    for variable, value in stated.items():
        assert value == _shown(by_env[variable].env_default or 0), variable


# ---- the runtime ------------------------------------------------------------


def test_every_variable_is_the_runtime_s() -> None:
    assert {row.env for row in ENV_ROWS} <= RUNTIME_VARIABLES
    # Every default runtime_settings spells (_int("NAME", default)) has its row.
    spelled = set(re.findall(r"""\b_int\(\s*["']([A-Z0-9_]+)["']""", RUNTIME_SETTINGS.read_text()))
    assert spelled == {row.env for row in ENV_ROWS if row.placement != "token"}


@pytest.fixture
def no_runtime_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in RUNTIME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("row", [row for row in ENV_ROWS if row.placement != "token"], ids=_name)
def test_runtime_settings_defaults_and_minimums_are_the_table_s(
    row: Setting, no_runtime_variables: pytest.MonkeyPatch
) -> None:
    from multiregion_chat.runtime.platform.runtime_settings import ConfigError, Settings

    env, default = row.env or "", row.env_default
    assert isinstance(default, int) and row.minimum is not None
    unset = Settings.from_env()
    no_runtime_variables.setenv(env, str(default + 1))
    changed = [
        name
        for name in Settings._fields
        if getattr(Settings.from_env(), name) != getattr(unset, name)
    ]
    assert len(changed) == 1, (env, changed)
    assert getattr(unset, changed[0]) == default, f"{env}: runtime_settings' default"
    # Whatever ChatConfig accepts, the runtime accepts; a runtime-only minimum is the table's.
    no_runtime_variables.setenv(env, str(row.minimum * row.env_scale))
    assert getattr(Settings.from_env(), changed[0]) == row.minimum * row.env_scale
    if row.context_key is None:
        no_runtime_variables.setenv(env, str(row.minimum - 1))
        with pytest.raises(ConfigError, match=env):
            Settings.from_env()


def test_token_policy_default_is_the_table_s() -> None:
    from multiregion_chat.runtime.auth.tokens import TokenPolicy

    for row in ENV_ROWS:
        if row.placement == "token":
            assert TokenPolicy.from_env({}).max_lifetime_seconds == row.env_default, row.env


# ---- the functions' environment --------------------------------------------


def test_environment_values_come_from_the_config() -> None:
    config = ChatConfig.from_mapping({"fanoutConcurrency": 7, "connectionTtlHours": 4})
    shared = environment_values(config, "shared")
    assert (shared["FANOUT_CONCURRENCY"], shared["CONNECTION_TTL_SECONDS"]) == ("7", "14400")
    assert environment_values(config, "HttpHandler") == {
        "HTTP_POLL_INTERVAL_MS": "250",
        "HTTP_POLL_MAX_INTERVAL_MS": "2000",
    }


def test_each_function_gets_its_rows_variables(app3: SynthResult) -> None:
    """In the default templates: every row's variable, with its default, on exactly the
    functions of its placement ("unset": none)."""
    handlers: dict[str, dict[str, object]] = {}
    for function in resources(app3.template_json("us-east-1"), "AWS::Lambda::Function").values():
        properties = function["Properties"]
        module = str(properties.get("Handler", "")).rpartition(".")[0]
        if module.startswith(HANDLERS_PACKAGE + "."):
            handler = module.removeprefix(HANDLERS_PACKAGE + ".")
            handlers[handler] = properties.get("Environment", {}).get("Variables", {})
    placements = {
        # Every function that carries ChatFunctions.environment (the table names, ...).
        "shared": {
            handler for handler, variables in handlers.items() if "MESSAGES_TABLE" in variables
        },
        "token": {"authorizer", "client_message_handler"},
        "HttpHandler": {"http_handler"},
        "unset": set(),
    }
    assert {
        "connection_handler",
        "client_message_handler",
        "event_bus_message_handler",
        "http_handler",
        "fanout_worker",
    } <= placements["shared"]
    for row in ENV_ROWS:
        given = {handler for handler, variables in handlers.items() if row.env in variables}
        assert given >= placements[row.placement], row.env
        if row.placement != "shared":
            assert given == placements[row.placement], row.env
        for handler in given:
            assert handlers[handler][row.env or ""] == str(row.env_default), (row.env, handler)
