"""One list of the runtime's variables (infra.runtime_contract), and add_environment refuses it.

Issue 18: ``add_environment`` let ``CALLBACK_URL``, ``FANOUT_QUEUE_URL``,
``SIGNING_SECRET_NAME``, ``JWT_*`` and ``HTTP_POLL_*`` through, since it only
refused the variables every function shares. The list must hold every variable
the runtime reads and every one the stacks set on a built-in function.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from multiregion_chat.infra.code_asset import HANDLERS_PACKAGE
from multiregion_chat.infra.config import ChatConfig
from multiregion_chat.infra.deployment import ChatDeployment
from multiregion_chat.infra.functions import authorizer_environment
from multiregion_chat.infra.runtime_contract import RUNTIME_VARIABLES

from .helpers import JsonDict, SynthResult, make_app, resources

RUNTIME = Path(__file__).resolve().parents[2] / "multiregion_chat" / "runtime"
# environ.get("X"), environ["X"], and runtime.platform.runtime_settings's _int("X", ...)
_READ = re.compile(r"""(?:environ(?:\.get)?[\[(]|\b_int\()\s*["']([A-Z][A-Z0-9_]+)["']""")
# Set by Lambda itself, not by the stacks.
_LAMBDA_OWN = re.compile(r"AWS_[A-Z_]+")


def runtime_reads() -> set[str]:
    from multiregion_chat.runtime.auth.jwks import LOOPBACK_SETTING  # read through a constant

    found = {LOOPBACK_SETTING}
    sources = sorted(RUNTIME.rglob("*.py"))
    assert sources, f"no runtime modules under {RUNTIME}"
    for path in sources:
        found.update(_READ.findall(path.read_text(encoding="utf-8")))
    return {name for name in found if not _LAMBDA_OWN.fullmatch(name)}


def test_every_variable_the_runtime_reads_is_listed() -> None:
    read = runtime_reads()
    assert {"CALLBACK_URL", "FANOUT_QUEUE_URL", "JWT_ISSUER", "HTTP_POLL_INTERVAL_MS"} <= read
    assert read - RUNTIME_VARIABLES == set(), (
        "add these to multiregion_chat/infra/runtime_contract.py"
    )


def builtin_environments(template: JsonDict) -> dict[str, set[str]]:
    handlers = {path.stem for path in (RUNTIME / "handlers").glob("*.py")} - {"__init__"}
    out = {}
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        properties = function["Properties"]
        module, _, _ = str(properties.get("Handler", "")).rpartition(".")
        if module.removeprefix(HANDLERS_PACKAGE + ".") in handlers:
            out[logical_id] = set(properties.get("Environment", {}).get("Variables", {}))
    return out


def test_every_variable_the_stacks_set_is_listed(app3: SynthResult) -> None:
    environments = builtin_environments(app3.template_json("us-east-1"))
    assert len(environments) >= 7
    for logical_id, variables in environments.items():
        assert variables - RUNTIME_VARIABLES == set(), logical_id
    oidc = ChatConfig.from_mapping(
        {
            "jwtIssuer": "https://issuer.example",
            "jwtAudience": "chat",
            "jwksUrl": "https://issuer.example/k",
        }
    )
    assert set(authorizer_environment(oidc)) - RUNTIME_VARIABLES == set()


@pytest.fixture(scope="module")
def deployment() -> ChatDeployment:
    app = make_app({"regions": "us-east-1"})
    return ChatDeployment(app, config=ChatConfig.from_context(app.node), nag=False)


@pytest.mark.parametrize("key", sorted(RUNTIME_VARIABLES))
def test_add_environment_refuses_every_runtime_variable(
    deployment: ChatDeployment, key: str
) -> None:
    with pytest.raises(ValueError, match=f"{key} belongs to the runtime contract"):
        deployment.add_environment("HttpHandler", key, "x")


def test_add_environment_sets_a_team_variable(deployment: ChatDeployment) -> None:
    deployment.add_environment("ClientMessageHandler", "TEAM_SUPPORT_ROOM", "help")
    from aws_cdk.assertions import Template

    template = Template.from_stack(deployment.stacks["us-east-1"]).to_json()
    (variables,) = [
        function["Properties"]["Environment"]["Variables"]
        for function in resources(template, "AWS::Lambda::Function").values()
        if function["Properties"].get("Handler")
        == "multiregion_chat.runtime.handlers.client_message_handler.handler"
    ]
    assert variables["TEAM_SUPPORT_ROOM"] == "help"


def test_the_runtime_defaults_are_chat_config_s(
    app3: SynthResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable means what the stacks set by default (issue 18: FANOUT_CONCURRENCY
    was documented as 16 when unset; the runtime says 128, like ChatConfig).

    For every variable with a runtime default (one a non-number makes ConfigError), the
    value cdk.json's defaults put in the templates gives the same Settings as no value.
    """
    from multiregion_chat.runtime.auth.tokens import TokenPolicy
    from multiregion_chat.runtime.platform import runtime_settings as runtime

    template = app3.template_json("us-east-1")
    set_by_stacks: dict[str, str] = {}
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        if logical_id in builtin_environments(template):
            set_by_stacks.update({k: v for k, v in variables.items() if isinstance(v, str)})
    for name in RUNTIME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    unset = runtime.Settings.from_env()

    compared = []
    for name, value in sorted(set_by_stacks.items()):
        monkeypatch.setenv(name, "not-a-number")
        try:
            runtime.Settings.from_env()
        except runtime.ConfigError:
            monkeypatch.setenv(name, value)
            assert runtime.Settings.from_env() == unset, (
                f"{name}: the stacks set {value} by default; the runtime's default differs"
            )
            compared.append(name)
        monkeypatch.delenv(name)
    assert {"FANOUT_CONCURRENCY", "MAX_BODY_BYTES", "HTTP_POLL_INTERVAL_MS"} <= set(compared)
    assert len(compared) >= 15
    lifetime = int(set_by_stacks["MAX_TOKEN_LIFETIME_SECONDS"])
    assert TokenPolicy.from_env({}).max_lifetime_seconds == lifetime
