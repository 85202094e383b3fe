"""Rotating the HS256 signing key with no failed token (docs/operations.md, "Rotating the
signing key"), run step by step against moto's Secrets Manager.

Authorizers and signers cache the secret for up to 5 minutes, so at any moment each may hold
any value the secret had in the last 5 minutes. The test plays the documented procedure (stage,
wait, promote, wait, retire, each value computed by ``python -m multiregion_chat.clients.rotation``
from the
stored one) and checks every combination: a token minted at any time by a signer with any value
it may hold verifies, at any time until its ``exp``, with every value an authorizer may hold.
The same check on a procedure that skips the first wait finds the failing tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from multiregion_chat.clients import rotation
from multiregion_chat.clients import tokens as client_tokens
from multiregion_chat.runtime.auth import token_front_door, tokens
from multiregion_chat.runtime.auth.tokens import HmacKeys, InvalidTokenError, TokenPolicy
from multiregion_chat.runtime.handlers import authorizer
from tests.unit.conftest import REGION, FakeLambdaContext

NAME = "chat/test/token-signing-secret"
CACHE = authorizer.SECRET_MAX_AGE_SECONDS  # the authorizer's cache; signers assumed the same
LIFETIME = 3600  # MAX_TOKEN_LIFETIME_SECONDS of this deployment; tokens live this long
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/test/$connect"


@pytest.fixture
def manager() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(Name=NAME, SecretString=rotation.new_key())  # as the stack does
        yield client


def stored(manager: Any) -> str:
    return str(manager.get_secret_value(SecretId=NAME)["SecretString"])


def run_step(manager: Any, step: str) -> str:
    """``get-secret-value | python -m multiregion_chat.clients.rotation <step>`` then
    ``put-secret-value``."""
    value = rotation.next_value(step, stored(manager))
    manager.put_secret_value(SecretId=NAME, SecretString=value)
    return stored(manager)


def play(manager: Any, waits: dict[str, int], start: float) -> list[tuple[float, str]]:
    """The secret's values with the time each was stored: the initial one, then each step
    after its wait."""
    history = [(start - 10 * CACHE, stored(manager))]
    at = start
    for step in ("stage", "promote", "retire"):
        at += waits[step]
        history.append((at, run_step(manager, step)))
    return history


def cached_views(history: list[tuple[float, str]], at: float) -> list[str]:
    """Every value a cache (at most CACHE seconds old) may hold at time ``at``."""
    views = []
    for index, (stored_at, value) in enumerate(history):
        until = history[index + 1][0] if index + 1 < len(history) else float("inf")
        if stored_at <= at and until > at - CACHE:
            views.append(value)
    return views


def failures(history: list[tuple[float, str]], start: float, end: float) -> list[str]:
    policy = TokenPolicy(max_lifetime_seconds=LIFETIME)
    found = []
    minted_at = start
    while minted_at <= end:  # bounded: (end - start) / 150 steps
        for signer in cached_views(history, minted_at):
            token = client_tokens.mint_token(signer, "alice", ttl_seconds=LIFETIME, now=minted_at)
            for used_at in (minted_at, minted_at + LIFETIME / 2, minted_at + LIFETIME - 1):
                for view in cached_views(history, used_at):
                    try:
                        tokens.verify(token, HmacKeys.from_secret(view), used_at, policy)
                    except InvalidTokenError as error:
                        found.append(f"minted at +{minted_at - start:.0f}s, used at "
                                     f"+{used_at - start:.0f}s: {error}")  # fmt: skip
        minted_at += 150
    return found


def test_the_documented_procedure_fails_no_token(manager: Any) -> None:
    start = time.time()
    waits = {"stage": 0, "promote": CACHE, "retire": LIFETIME + CACHE}
    history = play(manager, waits, start)
    assert failures(history, start - CACHE, history[-1][0] + 2 * CACHE) == []
    # Where it ends: one key, the new one; the old one is gone.
    first, last = history[0][1], history[-1][1]
    assert HmacKeys.from_secret(last).by_kid.keys() == {
        tokens.hmac_key_id(HmacKeys.from_secret(history[1][1]).others[0])
    }
    assert first not in last


def test_skipping_a_wait_fails_tokens(manager: Any) -> None:
    """The check finds gaps: promoting before every cache knows the new key fails tokens."""
    start = time.time()
    history = play(manager, {"stage": 0, "promote": 10, "retire": LIFETIME + CACHE}, start)
    assert any(
        "bad signature" in f or "unknown kid" in f
        for f in failures(history, start, start + 3 * CACHE)
    )


def test_retiring_too_early_fails_tokens(manager: Any) -> None:
    start = time.time()
    history = play(manager, {"stage": 0, "promote": CACHE, "retire": LIFETIME // 2}, start)
    assert failures(history, start, start + LIFETIME)


def test_steps_refuse_the_wrong_order() -> None:
    with pytest.raises(ValueError, match="stage one first"):
        rotation.next_value("promote", "plain-key")
    staged = rotation.next_value("stage", "plain-key", key="new-key")
    with pytest.raises(ValueError, match="staged already"):
        rotation.next_value("stage", staged)
    with pytest.raises(ValueError, match="promote it"):
        rotation.next_value("retire", staged)
    assert rotation.next_value("promote", staged) == '{"current":"new-key","previous":"plain-key"}'


def test_tokens_carry_the_current_key_s_kid_and_the_authorizer_accepts_every_key(
    manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = stored(manager)
    run_step(manager, "stage")
    promoted = run_step(manager, "promote")
    new = HmacKeys.from_secret(promoted).current
    fresh = client_tokens.mint_token(promoted, "bob")
    assert token_front_door.parse(fresh, {"HS256"}).header["kid"] == tokens.hmac_key_id(new)
    assert client_tokens.hmac_key_id(new) == tokens.hmac_key_id(new)  # one derivation
    monkeypatch.setenv("SIGNING_SECRET_NAME", NAME)
    monkeypatch.delenv("JWT_ISSUER", raising=False)
    authorizer.reset()
    parameters.clear_caches()
    try:
        for token, user in (
            (fresh, "bob"),
            (client_tokens.mint_token(old, "ann"), "ann"),  # the previous key's token
        ):
            answer = authorizer.handler(
                {"methodArn": METHOD_ARN, "queryStringParameters": {"token": token}},
                FakeLambdaContext(),
            )
            assert answer["principalId"] == user
    finally:
        parameters.clear_caches()
        authorizer.reset()


def test_a_token_without_kid_is_tried_against_each_key() -> None:
    """Tokens minted before keys had ids (no kid) keep working through a rotation."""
    import jwt

    legacy = jwt.encode({"sub": "old", "exp": int(time.time()) + 60}, "k" * 40, algorithm="HS256")
    both = HmacKeys.from_secret('{"current":"' + "n" * 40 + '","previous":"' + "k" * 40 + '"}')
    assert tokens.verify(legacy, both, time.time()).user_id == "old"


def test_the_signing_keys_stay_out_of_repr() -> None:
    keys = HmacKeys.from_secret('{"current": "k-current-1", "previous": "k-previous-2"}')
    shown = repr(keys)
    assert "k-current-1" not in shown
    assert "k-previous-2" not in shown
    assert "HS256" in shown  # the rest of the dataclass repr is still there
