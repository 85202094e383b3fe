"""Token configuration in the templates (issue 10): HS256 by default, OIDC with ``jwtIssuer``.

``cdk synth -c jwtIssuer=https://issuer.example -c jwtAudience=chat`` synthesizes (cdk-nag
included) and lints clean; the default app keeps its secret and gains only the bundling and the
lifetime bound. The sandbox finds the signing secret through the authorizer role's references.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from multiregion_chat.infra.config import ChatConfig, ConfigError
from sandbox.assembly import load_stacks
from sandbox.template_model import ModelBuilder

from .helpers import SynthResult, resources, synth
from .test_cfn_lint import ERROR, WARNING, _cfn_lint

OIDC = {"jwtIssuer": "https://issuer.example", "jwtAudience": "chat"}


@pytest.fixture(scope="module")
def app3_oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    yield synth(OIDC, tmp_path_factory.mktemp("app3-oidc"))


def authorizer(template: dict[str, Any], name: str = "Authorizer") -> dict[str, Any]:
    functions = resources(template, "AWS::Lambda::Function")
    (found,) = [f for logical_id, f in functions.items() if name in logical_id]
    return found


def token_variables(function: dict[str, Any]) -> dict[str, str]:
    variables = function["Properties"]["Environment"]["Variables"]
    names = ("SIGNING_SECRET_NAME", "MAX_TOKEN_LIFETIME_SECONDS", "JWT_", "JWKS_")
    return {k: v for k, v in variables.items() if k.startswith(names)}


@pytest.mark.parametrize("oidc", [False, True])
def test_client_message_handler_verifies_refresh_tokens_like_the_authorizer(
    oidc: bool, app3: SynthResult, app3_oidc: SynthResult
) -> None:
    """``refresh`` (runtime.auth.token_refresh) uses the authorizer's key source and rules: the same
    token variables, the dependencies layer (PyJWT), and the secret grant only for HS256."""
    template = (app3_oidc if oidc else app3).template_json("eu-west-1")
    handler = authorizer(template, "ClientMessageHandler")
    assert token_variables(handler) == token_variables(authorizer(template))
    assert any("Dependencies" in layer.get("Ref", "") for layer in handler["Properties"]["Layers"])
    readers = {
        role["Ref"]
        for policy in resources(template, "AWS::IAM::Policy").values()
        if "secretsmanager:GetSecretValue" in str(policy["Properties"]["PolicyDocument"])
        for role in policy["Properties"]["Roles"]
    }
    if oidc:
        assert readers == set()
    else:
        assert {handler["Properties"]["Role"]["Fn::GetAtt"][0]} < readers


def get_secret_statements(template: dict[str, Any]) -> list[Any]:
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in str(statement["Action"])
    ]


def test_oidc_templates_lint_clean(app3_oidc: SynthResult) -> None:
    code, output = _cfn_lint(app3_oidc)
    assert code & (ERROR | WARNING) == 0, output
    assert code == 0, output


def test_oidc_has_no_secret_and_the_authorizer_knows_the_issuer(app3_oidc: SynthResult) -> None:
    for region in app3_oidc.config.regions:
        template = app3_oidc.template_json(region)
        assert resources(template, "AWS::SecretsManager::Secret") == {}
        assert get_secret_statements(template) == []  # nothing to read: least privilege
        variables = authorizer(template)["Properties"]["Environment"]["Variables"]
        assert "SIGNING_SECRET_NAME" not in variables
        assert {k: v for k, v in variables.items() if not k.startswith("POWERTOOLS")} == {
            "JWT_ISSUER": "https://issuer.example",
            "JWT_AUDIENCE": "chat",
            "JWT_USER_ID_CLAIM": "sub",
            "JWT_NAME_CLAIM": "name",
            "JWT_ROOMS_CLAIM": "rooms",
            "JWT_DEFAULT_ROOMS": "*",
            "MAX_TOKEN_LIFETIME_SECONDS": "86400",
        }
        outputs = template["Outputs"]
        assert outputs["TokenIssuer"]["Value"] == "https://issuer.example"
        assert outputs["TokenAudience"]["Value"] == "chat"
        assert "SigningSecretName" not in outputs


def test_oidc_stacks_deploy_independently(app3_oidc: SynthResult) -> None:
    """No secret to replicate: no region waits for the first."""
    for stack in app3_oidc.stacks.values():
        assert [d for d in stack.dependencies if d.stack_name.startswith("chat-")] == []


def test_default_authorizer_keeps_the_secret_and_gains_layer_and_lifetime(
    app3: SynthResult,
) -> None:
    template = app3.template_json("eu-west-1")
    function = authorizer(template)["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["SIGNING_SECRET_NAME"] == "chat/prod/token-signing-secret"
    assert variables["MAX_TOKEN_LIFETIME_SECONDS"] == "86400"
    assert not any(key.startswith("JWT_") for key in variables)
    layers = [layer.get("Ref", "") for layer in function["Layers"]]
    assert any("Dependencies" in layer for layer in layers)  # PyJWT + cryptography
    assert "SigningSecretName" in template["Outputs"] and "TokenIssuer" not in template["Outputs"]


def test_the_sandbox_finds_the_signing_secret_through_the_role(app3: SynthResult) -> None:
    """What Sandbox._prepare_secrets reads: GetSecretValue resources of the authorizer's role."""
    for stack in load_stacks(app3.outdir):
        builder = ModelBuilder(stack)
        (function_id,) = [
            logical_id
            for logical_id in builder.r.of_type("AWS::Lambda::Function")
            if "Authorizer" in logical_id
        ]
        (resource,) = builder._readable_secrets(function_id)
        if stack.region == app3.config.primary_region:
            (secret_id,) = builder.r.of_type("AWS::SecretsManager::Secret")
            assert resource == builder.r.physical(secret_id).ref
        else:
            assert resource == (
                f"arn:aws:secretsmanager:{stack.region}:000000000000:secret:"
                "chat/prod/token-signing-secret-??????"
            )


def test_claim_mapping_keys_reach_the_authorizer(tmp_path: Any) -> None:
    config = ChatConfig.from_mapping(
        {
            **OIDC,
            "jwksUrl": "https://issuer.example/keys",
            "jwtNameClaim": "cognito:username",
            "jwtRoomsClaim": "cognito:groups",
            "jwtDefaultRooms": "lobby,help-*",
            "maxTokenLifetimeHours": "2",
        }
    )
    from multiregion_chat.infra.functions import authorizer_environment

    assert authorizer_environment(config) == {
        "MAX_TOKEN_LIFETIME_SECONDS": "7200",
        "JWT_ISSUER": "https://issuer.example",
        "JWT_AUDIENCE": "chat",
        "JWKS_URL": "https://issuer.example/keys",
        "JWT_USER_ID_CLAIM": "sub",
        "JWT_NAME_CLAIM": "cognito:username",
        "JWT_ROOMS_CLAIM": "cognito:groups",
        "JWT_DEFAULT_ROOMS": "lobby,help-*",
    }


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"jwtIssuer": "http://issuer.example", "jwtAudience": "chat"}, "jwtIssuer"),
        ({"jwtIssuer": "https://issuer.example"}, "jwtAudience"),
        ({"jwtAudience": "chat"}, "jwtAudience"),
        ({"jwksUrl": "https://issuer.example/keys"}, "jwksUrl"),
        ({**OIDC, "jwksUrl": "ftp://keys"}, "jwksUrl"),
        ({**OIDC, "jwtAudience": "two words"}, "jwtAudience"),
        ({**OIDC, "jwtNameClaim": "a b"}, "jwtNameClaim"),
        ({**OIDC, "jwtDefaultRooms": "bad/room"}, "jwtDefaultRooms"),
        ({"maxTokenLifetimeHours": "0"}, "maxTokenLifetimeHours"),
        ({"maxTokenLifetimeHours": "721"}, "maxTokenLifetimeHours"),
    ],
)
def test_bad_identity_values_name_the_key(values: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        ChatConfig.from_mapping(values)
