"""The token signing secret the sandbox provisions (``Sandbox._prepare_secrets``): the
secrets an authorizer's role may read, by the template's references, never by names."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sandbox.runtime import Options, Sandbox
from sandbox.template_model import AuthorizerSpec, SecretSpec

NAME = "chat/prod/token-signing-secret"
ARN = f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{NAME}-abcdef"


PATTERN = f"arn:aws:secretsmanager:eu-west-1:000000000000:secret:{NAME}-??????"


def region(name: str, readable: list[str] | None, secrets: list[SecretSpec]) -> Any:
    """A stand-in RegionRuntime: an authorizer function whose role may read ``readable``
    (None: no authorizer)."""
    authorizers = (
        [AuthorizerSpec("Auth", "AuthFn", "REQUEST", ("x",))] if readable is not None else []
    )
    model = SimpleNamespace(
        secrets=secrets,
        authorizers=authorizers,
        functions={"AuthFn": SimpleNamespace(readable_secrets=tuple(readable or ()))},
    )
    return SimpleNamespace(region=name, model=model)


def secret(replicas: tuple[str, ...] = (), name: str = NAME, arn: str = ARN) -> SecretSpec:
    return SecretSpec(
        "SigningSecret",
        name,
        arn,
        None,
        {"ExcludePunctuation": True, "PasswordLength": 64},
        replicas,
    )


def prepare(regions: list[Any], signing_secret: str | None = None) -> Sandbox:
    sandbox = Sandbox(Options(signing_secret=signing_secret))
    sandbox.regions = regions
    sandbox._prepare_secrets()
    return sandbox


def test_created_in_the_first_region_referenced_by_name_elsewhere() -> None:
    """The app's shape: one Secret with ReplicaRegions; the others only name it."""
    sandbox = prepare(
        [
            region("us-east-1", [ARN], [secret(("eu-west-1", "ap-northeast-1"))]),
            region("eu-west-1", [PATTERN], []),
            region("ap-northeast-1", [PATTERN.replace("eu-west-1", "ap-northeast-1")], []),
        ]
    )
    value = sandbox.signing_secret
    assert value is not None and len(value) == 64 and value.isalnum()
    assert sandbox._secret_values == {
        "us-east-1": {NAME: value},
        "eu-west-1": {NAME: value},
        "ap-northeast-1": {NAME: value},
    }


def test_a_region_subset_without_the_first_region_still_gets_the_secret() -> None:
    sandbox = prepare([region("eu-west-1", [PATTERN], [])], signing_secret="given")
    assert sandbox.signing_secret == "given"
    assert sandbox._secret_values == {"eu-west-1": {NAME: "given"}}


def test_signing_secret_option_and_arn_references() -> None:
    sandbox = prepare(
        [
            region("us-east-1", [ARN], [secret(("eu-west-1",))]),
            region("eu-west-1", [PATTERN], []),
        ],
        signing_secret="s3cret",
    )
    assert sandbox.signing_secret == "s3cret"
    assert sandbox._secret_values == {"us-east-1": {NAME: "s3cret"}, "eu-west-1": {NAME: "s3cret"}}


def test_secret_made_outside_the_app() -> None:
    """signingSecretManaged=false: no template defines it; the role's policy names it."""
    team = "arn:aws:secretsmanager:{}:000000000000:secret:team/key-??????"
    sandbox = prepare(
        [
            region("us-east-1", [team.format("us-east-1")], []),
            region("eu-west-1", [team.format("eu-west-1"), ARN], []),
        ]
    )
    value = sandbox.signing_secret
    assert value is not None and len(value) == 64
    assert sandbox._secret_values == {
        "us-east-1": {"team/key": value, NAME: value},
        "eu-west-1": {"team/key": value, NAME: value},
    }


def test_other_secrets_keep_their_own_values_and_replicas() -> None:
    other = secret(("eu-west-1",), name="db-password", arn="arn:other")
    sandbox = prepare([region("us-east-1", None, [other]), region("eu-west-1", None, [])])
    assert sandbox.signing_secret is None  # no authorizer: no auth
    values = sandbox._secret_values
    assert values["us-east-1"]["db-password"] == values["eu-west-1"]["db-password"]


def test_replicas_are_made_by_replication_from_the_first_region() -> None:
    """The template's ReplicaRegions become moto replicas of the first region's secret (so its
    ReplicationStatus is there for tools.smoke); a region outside the run is no concern."""
    sandbox = prepare(
        [
            region("us-east-1", [ARN], [secret(("eu-west-1", "ap-northeast-1"))]),
            region("eu-west-1", [PATTERN], []),
        ]
    )
    assert sandbox._secret_replicas == {
        "us-east-1": {NAME: ("eu-west-1", "ap-northeast-1")},
        "eu-west-1": {},
    }
    assert sandbox._replicated_into("eu-west-1") == {NAME}
    assert sandbox._replicated_into("us-east-1") == frozenset()
    assert sandbox.signing_secret_names == (NAME,)


def test_without_the_first_region_each_region_creates_its_own_copy() -> None:
    other = PATTERN.replace("eu-west-1", "ap-northeast-1")
    sandbox = prepare([region("eu-west-1", [PATTERN], []), region("ap-northeast-1", [other], [])])
    assert sandbox._replicated_into("eu-west-1") == frozenset()
    assert sandbox._secret_values["eu-west-1"] == {NAME: sandbox.signing_secret}


def test_environment_names_are_not_references() -> None:
    """A variable named like a secret is no reference: only the role's policy is."""
    sandbox = prepare([region("us-east-1", [], [])])
    assert sandbox.signing_secret is None and sandbox._secret_values == {"us-east-1": {}}
