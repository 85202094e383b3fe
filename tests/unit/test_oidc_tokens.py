"""OIDC tokens (issue 10): RS256/ES256 by ``kid`` from the issuer's JWKS, iss/aud, claim mapping.

The issuer is a fake: ``fetch`` answers the discovery document and the JWKS from dictionaries
and counts the requests; the clock is a variable. Tokens are built when each test runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from multiregion_chat.clients.tokens import minter_from_endpoints
from multiregion_chat.runtime.auth import jwks as jwks_module
from multiregion_chat.runtime.auth.jwks import JwksKeys, JwksUnavailableError
from multiregion_chat.runtime.auth.tokens import InvalidTokenError, TokenPolicy, verify
from multiregion_chat.runtime.handlers import authorizer
from tests.unit.conftest import FakeLambdaContext

ISSUER = "https://issuer.example"
AUDIENCE = "chat"
JWKS_URL = "https://issuer.example/keys"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/test/$connect"
ROUTE_ARN = "arn:aws:execute-api:us-east-1:123456789012:http123/$default/GET/rooms/lobby/messages"
POLICY = TokenPolicy(issuer=ISSUER, audience=AUDIENCE)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.pop("key_ops", None)
    return {**jwk, "kid": kid, "use": "sig", **extra}


class FakeIssuer:
    """Discovery + JWKS documents served from memory, with a request log and a clock."""

    def __init__(self) -> None:
        self.keys = [public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]
        self.requests: list[str] = []
        self.now = 1000.0
        self.down = False

    def fetch(self, url: str) -> Any:
        self.requests.append(url)
        if self.down:
            raise OSError("connection refused")
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {"issuer": ISSUER, "jwks_uri": JWKS_URL}
        if url == JWKS_URL:
            return {"keys": list(self.keys)}
        raise OSError(f"404 {url}")

    def source(self, jwks_url: str | None = None) -> JwksKeys:
        return JwksKeys(ISSUER, jwks_url, fetch=self.fetch, clock=lambda: self.now)


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "iat": now, "exp": now + 600, **extra}


def rs256(kid: str = "rsa-1", key: Any = RSA_KEY, **extra: Any) -> str:
    return jwt.encode(claims(**extra), key, algorithm="RS256", headers={"kid": kid})


def es256(kid: str = "ec-1", **extra: Any) -> str:
    return jwt.encode(claims(**extra), EC_KEY, algorithm="ES256", headers={"kid": kid})


def check(token: str, source: JwksKeys, policy: TokenPolicy = POLICY) -> Any:
    return verify(token, source, time.time(), policy)


# --- keys -------------------------------------------------------------------------------


def test_rs256_and_es256_from_the_discovered_jwks(issuer: FakeIssuer) -> None:
    source = issuer.source()
    assert check(rs256(name="Ann"), source).user_id == "u-1"
    assert check(es256(), source).name is None
    assert issuer.requests == [f"{ISSUER}/.well-known/openid-configuration", JWKS_URL]


def test_a_configured_jwks_url_skips_discovery(issuer: FakeIssuer) -> None:
    assert check(rs256(), issuer.source(JWKS_URL)).user_id == "u-1"
    assert issuer.requests == [JWKS_URL]


def test_discovery_must_name_the_configured_issuer(issuer: FakeIssuer) -> None:
    source = JwksKeys(
        ISSUER, fetch=lambda url: {"issuer": "https://evil.example", "jwks_uri": JWKS_URL}
    )
    with pytest.raises(JwksUnavailableError, match="another issuer"):
        check(rs256(), source)


def test_unknown_kid_refetches_at_most_once_a_minute(issuer: FakeIssuer) -> None:
    source = issuer.source(JWKS_URL)
    check(rs256(), source)
    assert len(issuer.requests) == 1
    # The issuer rotates: a new key is published, tokens signed with it arrive.
    issuer.keys.append(public_jwk(RSA_KEY_2, "rsa-2"))
    issuer.now += 61
    assert check(rs256("rsa-2", RSA_KEY_2), source).user_id == "u-1"
    assert len(issuer.requests) == 2
    # Random kids do not turn every authorizer call into a JWKS request.
    for index in range(20):
        with pytest.raises(InvalidTokenError, match="unknown kid"):
            check(rs256(f"random-{index}"), source)
    assert len(issuer.requests) == 2  # the refetch for rsa-2 was less than a minute ago
    issuer.now += 60
    for index in range(20):
        with pytest.raises(InvalidTokenError, match="unknown kid"):
            check(rs256(f"again-{index}"), source)
    assert len(issuer.requests) == 3  # one refetch a minute, however many unknown kids


def test_a_retired_key_stops_working_after_the_refresh(issuer: FakeIssuer) -> None:
    source = issuer.source(JWKS_URL)
    assert check(rs256(), source).user_id == "u-1"
    issuer.keys = [public_jwk(RSA_KEY_2, "rsa-2")]  # rsa-1 retired
    issuer.now += jwks_module.MAX_AGE_SECONDS
    with pytest.raises(InvalidTokenError, match="unknown kid"):
        check(rs256(), source)
    assert check(rs256("rsa-2", RSA_KEY_2), source).user_id == "u-1"


def test_an_unreachable_issuer_is_an_error_until_keys_are_cached(issuer: FakeIssuer) -> None:
    source = issuer.source(JWKS_URL)
    issuer.down = True
    with pytest.raises(JwksUnavailableError):
        check(rs256(), source)  # no keys at all: the authorizer is broken (500, alarmed)
    issuer.down = False
    issuer.now += 61
    assert check(rs256(), source).user_id == "u-1"
    issuer.down = True
    issuer.now += jwks_module.MAX_AGE_SECONDS
    assert check(rs256(), source).user_id == "u-1"  # a failed refresh keeps the cached keys


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: rs256(kid="nope"), "unknown kid"),
        (lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS256"), "no kid"),
        (lambda: rs256(key=RSA_KEY_2), "bad signature"),  # right kid, wrong key
        (lambda: rs256(iss="https://other.example"), "wrong issuer"),
        (lambda: rs256(iss=ISSUER + "/"), "wrong issuer"),
        (lambda: rs256(aud="other"), "wrong audience"),
        (lambda: rs256(aud=["other", "more"]), "wrong audience"),
        (
            lambda: jwt.encode(
                {"sub": "u", "exp": int(time.time()) + 60, "aud": AUDIENCE},
                RSA_KEY,
                algorithm="RS256",
                headers={"kid": "rsa-1"},
            ),
            "no iss",
        ),
        (
            lambda: jwt.encode(
                {"sub": "u", "exp": int(time.time()) + 60, "iss": ISSUER},
                RSA_KEY,
                algorithm="RS256",
                headers={"kid": "rsa-1"},
            ),
            "no aud",
        ),
        (lambda: rs256(exp=int(time.time()) - 60), "expired"),
        (lambda: rs256(nbf=int(time.time()) + 120), "not valid yet"),
        (lambda: rs256(exp=int(time.time()) + 2 * 86400), "lifetime"),
        (
            lambda: jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"}),
            "not ES256",
        ),
        (
            lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "ec-1"}),
            "not RS256",
        ),
        (lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS512", headers={"kid": "rsa-1"}), "alg"),
        (lambda: jwt.encode(claims(), RSA_KEY, algorithm="PS256", headers={"kid": "rsa-1"}), "alg"),
        (lambda: rs256(sub=""), "sub"),
        (lambda: rs256(sub="a\x1bb"), "control"),
    ],
)
def test_claim_and_key_cases_are_refused(issuer: FakeIssuer, make: Any, reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        check(make(), issuer.source(JWKS_URL))


def test_alg_confusion_hs256_signed_with_the_public_key(issuer: FakeIssuer) -> None:
    """The classic attack: HMAC with the issuer's public key as the secret."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_text = json.dumps(public_jwk(RSA_KEY, "rsa-1"))
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    for secret in (pem, jwk_text.encode()):
        head = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
        body = b64(json.dumps(claims()).encode())
        sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        with pytest.raises(InvalidTokenError, match="alg is not ES256 or RS256"):
            check(f"{head}.{body}.{sig}", issuer.source(JWKS_URL))


def test_alg_none_is_refused(issuer: FakeIssuer) -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa-1"})
    with pytest.raises(InvalidTokenError):
        check(unsigned, issuer.source(JWKS_URL))
    with pytest.raises(InvalidTokenError, match="alg"):
        check(unsigned + "AAAA", issuer.source(JWKS_URL))


def test_jwks_keeps_only_signature_keys_for_rs256_and_es256(issuer: FakeIssuer) -> None:
    issuer.keys = [
        public_jwk(RSA_KEY, "enc", use="enc"),
        public_jwk(RSA_KEY, "rs512", alg="RS512"),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},  # a symmetric key in a JWKS: never
        {"kty": "RSA", "kid": "broken"},
        "not a key",
        public_jwk(RSA_KEY, "rsa-1"),
    ]
    source = issuer.source(JWKS_URL)
    assert check(rs256(), source).user_id == "u-1"
    for kid in ("enc", "rs512", "oct", "broken"):
        with pytest.raises(InvalidTokenError, match="unknown kid"):
            check(rs256(kid), source)


def test_the_clients_mint_rs256_tokens_the_authorizer_accepts(
    issuer: FakeIssuer, tmp_path: Path
) -> None:
    """An endpoints file's ``oidc`` entry (the sandbox's issuer) mints through the same
    path as HS256 (clients.tokens.Signer): iss, aud and kid from the entry."""
    key_file = tmp_path / "issuer.pem"
    key_file.write_bytes(
        RSA_KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    entry = {"issuer": ISSUER, "audience": AUDIENCE, "kid": "rsa-1", "privateKeyFile": key_file}
    mint = minter_from_endpoints({"oidc": entry, "signingSecret": "ignored-with-an-issuer"})
    assert mint is not None
    token = mint("ann", name="Ann", rooms=["lobby"], ttl_seconds=600)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}
    found = check(token, issuer.source(JWKS_URL))
    assert (found.user_id, found.name, found.rooms) == ("ann", "Ann", ("lobby",))


# --- claim mapping -------------------------------------------------------------------------


def test_claim_mapping_and_default_rooms(issuer: FakeIssuer) -> None:
    cognito = TokenPolicy(
        issuer=ISSUER,
        audience=AUDIENCE,
        name_claim="cognito:username",
        rooms_claim="cognito:groups",
        default_rooms=("lobby",),
    )
    source = issuer.source(JWKS_URL)
    found = check(
        rs256(**{"cognito:username": "ann", "cognito:groups": ["team-a", "ops"]}), source, cognito
    )
    assert (found.user_id, found.name, found.rooms) == ("u-1", "ann", ("team-a", "ops"))
    assert check(rs256(), source, cognito).rooms == ("lobby",)  # no groups: the default
    by_email = TokenPolicy(issuer=ISSUER, audience=AUDIENCE, user_id_claim="email")
    assert check(rs256(email="ann@example.com"), source, by_email).user_id == "ann@example.com"
    with pytest.raises(InvalidTokenError, match="email"):
        check(rs256(), source, by_email)
    custom = TokenPolicy(issuer=ISSUER, audience=AUDIENCE, rooms_claim="custom:rooms")
    assert check(rs256(**{"custom:rooms": "lobby,team-*"}), source, custom).rooms == (
        "lobby",
        "team-*",
    )
    with pytest.raises(InvalidTokenError, match="custom:rooms"):
        check(rs256(**{"custom:rooms": "no spaces allowed?"}), source, custom)


def test_policy_from_the_environment() -> None:
    policy = TokenPolicy.from_env(
        {
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "JWT_NAME_CLAIM": "cognito:username",
            "JWT_DEFAULT_ROOMS": "lobby,team-*",
            "MAX_TOKEN_LIFETIME_SECONDS": "7200",
        }
    )
    assert policy == TokenPolicy(
        issuer=ISSUER,
        audience=AUDIENCE,
        name_claim="cognito:username",
        default_rooms=("lobby", "team-*"),
        max_lifetime_seconds=7200,
    )
    assert TokenPolicy.from_env({"JWT_DEFAULT_ROOMS": "*"}).default_rooms is None
    for bad in (
        {"JWT_ISSUER": ISSUER},
        {"JWT_DEFAULT_ROOMS": "bad/room"},
        {"MAX_TOKEN_LIFETIME_SECONDS": "0"},
    ):
        with pytest.raises(ValueError):
            TokenPolicy.from_env(bad)


# --- the handler in OIDC mode ----------------------------------------------------------------


@pytest.fixture
def oidc_handler(issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIssuer]:
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("JWT_ROOMS_CLAIM", "groups")
    monkeypatch.delenv("JWKS_URL", raising=False)
    monkeypatch.delenv("SIGNING_SECRET_NAME", raising=False)
    monkeypatch.setattr(jwks_module, "fetch_json", issuer.fetch)
    # runtime.auth.token_keys builds its key source through runtime.auth.jwks (imported when first
    # needed).
    monkeypatch.setattr(
        jwks_module, "JwksKeys", lambda iss, url: JwksKeys(iss, url, fetch=issuer.fetch)
    )
    authorizer.reset()
    yield issuer
    authorizer.reset()


def http_exp(answer: dict[str, Any]) -> str:
    expires_at = answer["context"]["expiresAt"]
    assert expires_at.isdigit() and int(expires_at) > time.time()
    return str(expires_at)


def test_both_apis_accept_the_issuer_s_tokens(oidc_handler: FakeIssuer) -> None:
    token = rs256(name="Ann", groups=["lobby"])
    exp = str(jwt.decode(token, options={"verify_signature": False})["exp"])
    ws = authorizer.handler(
        {"methodArn": METHOD_ARN, "queryStringParameters": {"token": token}}, FakeLambdaContext()
    )
    assert ws["principalId"] == "u-1"
    assert ws["context"] == {
        "userId": "u-1",
        "name": "Ann",
        "rooms": '["lobby"]',
        "expiresAt": exp,
    }
    http = authorizer.handler(
        {
            "version": "2.0",
            "routeArn": ROUTE_ARN,
            "headers": {"Authorization": f"Bearer {es256()}"},
        },
        FakeLambdaContext(),
    )
    assert http["isAuthorized"] is True
    assert http["context"] == {"userId": "u-1", "rooms": "null", "expiresAt": http_exp(http)}
    # The JWKS is fetched once per container, not per call.
    assert len(oidc_handler.requests) == 2


def test_hs256_tokens_are_refused_when_an_issuer_is_configured(oidc_handler: FakeIssuer) -> None:
    hs = jwt.encode(claims(), "any-secret-of-32-bytes-or-more-000", algorithm="HS256")
    ws = authorizer.handler(
        {"methodArn": METHOD_ARN, "queryStringParameters": {"token": hs}}, FakeLambdaContext()
    )
    assert ws["principalId"] == "unauthorized"


def test_an_unreachable_issuer_is_a_lambda_error(oidc_handler: FakeIssuer) -> None:
    oidc_handler.down = True
    with pytest.raises(JwksUnavailableError):
        authorizer.handler(
            {"methodArn": METHOD_ARN, "queryStringParameters": {"token": rs256()}},
            FakeLambdaContext(),
        )
