"""The token authorizer (``runtime.handlers.authorizer.handler``) and ``runtime.auth.tokens`` with
HS256: verification and rooms. The front door (malformed tokens) is test_token_front_door.py, OIDC
test_oidc_tokens.py, key rotation test_key_rotation.py."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from multiregion_chat.clients.tokens import mint_token
from multiregion_chat.runtime.auth import tokens
from multiregion_chat.runtime.auth.tokens import InvalidTokenError
from multiregion_chat.runtime.protocol.claims import room_allowed
from tests.unit.tokens_helpers import (
    METHOD_ARN,
    SECRET,
    SECRET_NAME,
    b64,
    forge,
    good,
    http_event,
    invoke,
    signed,
    signing_secret_stored,
    verify,
    ws_event,
)


@pytest.fixture
def secret_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with signing_secret_stored(monkeypatch) as manager:
        yield manager


# --- runtime.auth.tokens.verify ---------------------------------------------------------------


def test_minted_token_verifies() -> None:
    now = time.time()
    token = mint_token(SECRET, "alice", name="Alice", rooms=["team-*"], now=now)
    claims = verify(token, SECRET, now)
    assert (claims.user_id, claims.name, claims.rooms) == ("alice", "Alice", ("team-*",))
    assert verify(mint_token(SECRET, "bob"), SECRET.encode(), now).rooms is None


# Tokens are built when each test runs, not at collection: a token whose
# exp/nbf is relative to "now" must not age while the rest of the suite runs.
@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: forge(good(exp=int(time.time()) - 31)), "expired"),
        (lambda: forge(good(), secret="another-secret"), "bad signature"),
        (lambda: forge(good(), header={"alg": "none"}), "alg"),
        (lambda: forge(good(), header={"alg": "HS256", "kid": "hs-unknown"}), "unknown kid"),
        (lambda: forge(good(), header={"alg": "HS256", "kid": 7}), "kid"),
        (lambda: forge(good(iat=int(time.time()) + 120)), "not valid yet"),
        (lambda: forge(good(iat="now")), "iat"),
        (lambda: forge(good(), header={"alg": "HS512"}, digest=hashlib.sha512), "alg"),
        (lambda: forge(good(), header={"alg": "RS256"}), "alg"),
        (lambda: forge(good(), header={"alg": "hs256"}), "alg"),
        (lambda: forge(good(), header={"typ": "JWT"}), "alg"),
        (lambda: forge(good(), header={"alg": "HS256", "crit": ["x"]}), "crit"),
        (lambda: forge({"exp": int(time.time()) + 60}), "sub"),
        (lambda: forge(good(sub="")), "sub"),
        (lambda: forge(good(sub="u" * 129)), "sub"),
        (lambda: forge(good(sub=42)), "sub"),
        (lambda: forge({"sub": "alice"}), "exp"),
        (lambda: forge(good(exp="9999999999")), "exp"),
        (lambda: forge(good(exp=True)), "exp"),
        (lambda: forge(good(exp=1.5e12)), "exp"),
        (lambda: forge(good(nbf=int(time.time()) + 120)), "not valid yet"),
        (lambda: forge(good(name="n" * 65)), "name"),
        (lambda: forge(good(name=7)), "name"),
        (lambda: forge(good(rooms="bad room!")), "rooms"),
        (lambda: forge(good(rooms={"lobby": True})), "rooms"),
        (lambda: forge(good(rooms=[1])), "rooms"),
        (lambda: forge(good(rooms=["bad room"])), "rooms"),
        (lambda: forge(good(rooms=["a/b"])), "rooms"),
        (lambda: forge(good(rooms=["r" * 65])), "rooms"),
        (lambda: forge(good(rooms=["x"] * 51)), "rooms"),
        (lambda: "", "no token"),
        (lambda: "abc", "three"),
        (lambda: "a.b", "three"),
        (lambda: "a.b.c.d", "three"),
        (lambda: "..", "base64url"),
        (lambda: b64(b'{"alg":"HS256"}') + ".e30.", "base64url"),  # empty signature
        (lambda: b64(b'{"alg":"HS256"}') + ".e30.ab=c", "base64url"),
        (lambda: "e30=.e30.abc", "base64url"),
        (lambda: "e+0.e30.abc", "base64url"),
        (lambda: "a.e30.abc", "base64url"),
        (lambda: b64(b'{"alg":"HS256"}') + ".e30.abcd", "bad signature"),
        (lambda: b64(b"not json") + ".e30.abc", "JSON"),
        (lambda: b64(b"[1]") + ".e30.abc", "object"),
        (lambda: "x" * 8193, "longer"),
    ],
)
def test_invalid_tokens_are_refused(make_token: Callable[[], str], reason: str) -> None:
    token = make_token()
    with pytest.raises(InvalidTokenError, match=reason):
        verify(token, SECRET, time.time())


def test_payload_that_is_not_an_object_is_refused() -> None:
    token = signed(b'{"alg":"HS256"}', b'"alice"')
    with pytest.raises(InvalidTokenError, match="object"):
        verify(token, SECRET, time.time())
    head, _, sig = token.split(".")
    # a tampered payload fails on the signature before its claims are read
    with pytest.raises(InvalidTokenError, match="bad signature"):
        verify(f"{head}.{b64(b'{}')}.{sig}", SECRET, time.time())


def test_expiry_leeway_is_at_most_30_seconds() -> None:
    now = time.time()
    assert verify(forge(good(exp=int(now) - 29)), SECRET, now).user_id == "alice"
    with pytest.raises(InvalidTokenError, match="expired"):
        verify(forge(good(exp=int(now) - 30)), SECRET, now)


def test_limits_are_inclusive_and_empty_name_is_absent() -> None:
    now = time.time()
    claims = verify(forge(good(sub="u" * 128, name="n" * 64, rooms=["x"] * 50)), SECRET, now)
    assert len(claims.user_id) == 128 and claims.name == "n" * 64
    assert verify(forge(good(name="")), SECRET, now).name is None
    assert verify(forge(good(rooms=[])), SECRET, now).rooms == ()


def test_rooms_as_one_string_of_patterns() -> None:
    """An identity provider's custom attribute is a string: comma or space separated."""
    claims = verify(forge(good(rooms="lobby, team-*")), SECRET, time.time())
    assert claims.rooms == ("lobby", "team-*")


def test_a_huge_but_well_formed_token_is_refused_before_any_work() -> None:
    token = forge(good(pad="x" * 9000))
    with pytest.raises(InvalidTokenError, match="longer"):
        verify(token, SECRET, time.time())


# --- room patterns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "room", "allowed"),
    [
        (None, "anything", True),
        ([], "lobby", False),
        (["lobby"], "lobby", True),
        (["lobby"], "lobby2", False),
        (["lobby"], "Lobby", False),
        (["*"], "x", True),
        (["team-*"], "team-a", True),
        (["team-*"], "team-", True),  # * may match nothing
        (["team-*"], "team", False),
        (["team-*"], "xteam-a", False),
        (["*-ops"], "eu-ops", True),
        (["*-ops"], "eu-ops-x", False),
        (["a*b"], "ab", True),
        (["a*b"], "a.x.b", True),
        (["a*b"], "ba", False),
        (["a*b*c"], "abc", True),
        (["a*b*c"], "axbyc", True),
        (["a*b*c"], "acb", False),
        (["a**b"], "ab", True),
        (["ab*ab"], "ab", False),  # prefix and suffix may not overlap
        (["ab*ab"], "abab", True),
        (["x.y"], "x.y", True),
        (["x.y"], "xzy", False),  # "." is a dot, not "any character"
        (["x.*"], "x.1", True),
        (["x.*"], "xy1", False),
        (["a:b-c_d"], "a:b-c_d", True),
        (["lobby", "team-*"], "team-b", True),
        (["lobby", "team-*"], "other", False),
    ],
)
def test_room_patterns(patterns: list[str] | None, room: str, allowed: bool) -> None:
    assert room_allowed(patterns, room) is allowed


# --- the handler: WebSocket $connect ------------------------------------------------------


def test_websocket_allow_policy_and_context(secret_store: Any) -> None:
    now = int(time.time())
    token = mint_token(SECRET, "alice", name="Alice", rooms=["team-*", "lobby"], now=now)
    answer = invoke(ws_event(token))
    assert answer["principalId"] == "alice"
    assert answer["policyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [METHOD_ARN]}
        ],
    }
    assert answer["context"] == {
        "userId": "alice",
        "name": "Alice",
        "rooms": '["team-*", "lobby"]',
        "expiresAt": str(now + 3600),  # the token's exp: open connections honour it
    }
    # context values are scalars, as API Gateway requires
    assert all(isinstance(v, str) for v in answer["context"].values())
    no_rooms = invoke(ws_event(mint_token(SECRET, "bob", now=now)))["context"]
    assert no_rooms == {"userId": "bob", "rooms": "null", "expiresAt": str(now + 3600)}


@pytest.mark.parametrize(
    "make_token",
    [
        lambda: None,
        lambda: "",
        lambda: "garbage",
        lambda: forge(good(), secret="another-secret"),
        lambda: forge(good(), header={"alg": "none"}),
        lambda: forge(good(exp=int(time.time()) - 3600)),
    ],
)
def test_websocket_refusals_are_a_deny_policy(
    secret_store: Any, make_token: Callable[[], str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    token = make_token()  # built when the test runs: exp is relative to now
    # Deny (API Gateway: 403), not a raised exception: a refused token is no Lambda error.
    assert invoke(ws_event(token)) == {
        "principalId": "unauthorized",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": [METHOD_ARN]}
            ],
        },
    }
    output = capsys.readouterr().out
    if token:
        assert token not in output  # tokens are never logged
    assert '"RefusedTokens"' in output


def test_secret_is_read_once_and_cached(secret_store: Any) -> None:
    token = mint_token(SECRET, "alice")
    invoke(ws_event(token))
    secret_store.update_secret(SecretId=SECRET_NAME, SecretString="rotated-0123456789abcdef")
    assert invoke(ws_event(token))["principalId"] == "alice"  # cached for max_age
    parameters.clear_caches()
    assert invoke(ws_event(token))["principalId"] == "unauthorized"
    rotated = mint_token("rotated-0123456789abcdef", "alice")
    assert invoke(ws_event(rotated))["principalId"] == "alice"


def test_missing_secret_is_an_error_not_a_refusal(
    secret_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret that cannot be read is the Lambda's error (API Gateway 500, alarmed), raised
    from the secret read itself: never a policy, never "Unauthorized", never a bad token."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    monkeypatch.setenv("SIGNING_SECRET_NAME", "no/such/secret")
    with pytest.raises(GetParameterError, match="ResourceNotFoundException"):
        invoke(ws_event(mint_token(SECRET, "alice")))
    with pytest.raises(GetParameterError, match="ResourceNotFoundException"):
        invoke(http_event(f"Bearer {mint_token(SECRET, 'alice')}"))


# --- the handler: HTTP API simple responses -----------------------------------------------


def test_http_bearer_token(secret_store: Any) -> None:
    now = int(time.time())
    token = mint_token(SECRET, "alice", rooms=["lobby"], now=now)
    assert invoke(http_event(f"Bearer {token}")) == {
        "isAuthorized": True,
        "context": {"userId": "alice", "rooms": '["lobby"]', "expiresAt": str(now + 3600)},
    }
    # One spelling of the scheme: each other spelling would be its own cache entry.
    for other in (f"bearer {token}", f"BEARER {token}", f"Bearer  {token}", f"Bearer {token} "):
        assert invoke(http_event(other)) == {"isAuthorized": False}


@pytest.mark.parametrize(
    "make_authorization",
    [
        lambda: None,
        lambda: "",
        lambda: "Basic YWxpY2U6cHc=",
        lambda: "Bearer",
        lambda: "Bearer ",
        lambda: "Bearer garbage",
        lambda: f"Bearer {forge(good(), secret='another-secret')}",
        lambda: f"Bearer {forge(good(), header={'alg': 'none'})}",
        lambda: f"Token {forge(good())}",
        lambda: f"Bearer\t{forge(good())}",
    ],
)
def test_http_refusals(secret_store: Any, make_authorization: Callable[[], str | None]) -> None:
    assert invoke(http_event(make_authorization())) == {"isAuthorized": False}


def test_unknown_event_shape_is_unauthorized(secret_store: Any) -> None:
    with pytest.raises(Exception, match="Unauthorized"):
        invoke({"type": "TOKEN"})
    with pytest.raises(Exception, match="Unauthorized"):
        invoke(["not", "an", "event"])


ROTATION = json.dumps({"current": SECRET, "previous": "previous-key-0123456789abcdefghij"})


@pytest.mark.parametrize(
    "make_token",
    [
        lambda: mint_token(SECRET, "alice"),  # with kid
        lambda: forge(good()),  # without kid: every key is tried
        lambda: mint_token("previous-key-0123456789abcdefghij", "bob"),  # the rotation's other key
        lambda: forge(good(), secret="another-secret-0123456789abcdefgh"),
        lambda: forge(good(), digest=hashlib.sha384, header={"alg": "HS256"}),  # wrong digest
        lambda: _tampered(mint_token(SECRET, "alice"), payload=b64(b'{"sub":"mallory"}')),
        lambda: _tampered(forge(good()), signature=b64(b"\0" * 32)),
        lambda: _tampered(forge(good()), signature=b64(b"\0" * 31)),  # too short
        lambda: _tampered(forge(good()), signature=b64(bytes(33))),  # too long
        lambda: _resigned(forge(good()), lambda sig: sig[:-1]),  # a byte short of the right one
        lambda: _resigned(forge(good()), lambda sig: sig + b"\0"),  # the right one and a byte
        lambda: _resigned(forge(good()), lambda sig: sig[:-1] + bytes([sig[-1] ^ 1])),
    ],
)
def test_the_hs256_signature_check_agrees_with_pyjwt(make_token: Callable[[], str]) -> None:
    """HS256 is checked with hmac (no PyJWT import at cold start): same verdict as PyJWT's
    over the same keys, for good, foreign, tampered and mis-sized signatures."""
    import jwt

    token, keys = make_token(), tokens.HmacKeys.from_secret(ROTATION)
    library_accepts = False
    for key in keys.keys_for("HS256", None):
        try:
            jwt.decode(token, key, algorithms=["HS256"], options={"verify_exp": False})
            library_accepts = True
        except jwt.InvalidSignatureError:
            pass
    try:
        tokens.verify(token, keys, time.time())
        ours_accepts = True
    except InvalidTokenError as error:
        assert str(error) == "bad signature"
        ours_accepts = False
    assert ours_accepts is library_accepts


def test_an_hs256_policy_with_issuer_goes_through_the_library() -> None:
    """iss/aud rules are PyJWT's: an HS256 key source under such a policy still checks them."""
    policy = tokens.TokenPolicy(issuer="https://issuer.example", audience="chat")
    keys = tokens.HmacKeys.from_secret(SECRET)
    with pytest.raises(InvalidTokenError, match="no iss claim"):
        tokens.verify(forge(good()), keys, time.time(), policy)
    claims = good(iss="https://issuer.example", aud="chat")
    assert tokens.verify(forge(claims), keys, time.time(), policy).user_id == "alice"
    with pytest.raises(InvalidTokenError, match="wrong audience"):
        tokens.verify(forge({**claims, "aud": "other"}), keys, time.time(), policy)


def _resigned(token: str, change: Callable[[bytes], bytes]) -> str:
    head, body, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    return f"{head}.{body}.{b64(change(raw))}"


def _tampered(token: str, *, payload: str | None = None, signature: str | None = None) -> str:
    head, body, sig = token.split(".")
    return f"{head}.{payload or body}.{signature or sig}"


SECRET_32 = "system-sender-test-secret-of-32-bytes"


# Each of these verified as an ordinary user before issue 18 (item 9).
SYSTEM_LOOK_ALIKES = [
    "system:Announcements",
    "System:ops",  # case
    "SYSTEM:ops",
    "system\u200b:ops",  # a zero-width space (Cf) before the colon
    "\u200dsystem:ops",  # a zero-width joiner in front
    "system\uff1aops",  # FULLWIDTH COLON (NFKC: ':')
    "\u0455ystem:ops",  # CYRILLIC SMALL LETTER DZE for the s
    "\u0455\u0443\u0455t\u0435m:ops",  # Cyrillic s, u, s, e
    "syste\u0301m:ops",  # a combining acute accent (Mn)
    "system\u2236ops",  # RATIO as the colon
    " system:ops",  # leading white space
]


@pytest.mark.parametrize("user_id", SYSTEM_LOOK_ALIKES)
def test_system_sender_ids_and_look_alikes_are_refused(user_id: str) -> None:
    """``system:`` user ids belong to the server API's senders: no token may claim one."""
    import time

    from multiregion_chat.clients.tokens import mint_token
    from multiregion_chat.runtime.auth.tokens import HmacKeys, InvalidTokenError, verify

    keys = HmacKeys.from_secret(SECRET_32)
    with pytest.raises(InvalidTokenError, match="system:"):
        verify(mint_token(SECRET_32, user_id), keys, time.time())


@pytest.mark.parametrize(
    "user_id",
    ["systems-team", "system", "sys:ops", "ops:system:x", "\u5c71\u7530:ops", "\u00e9mile"],
)
def test_ids_that_only_resemble_system_are_accepted(user_id: str) -> None:
    import time

    from multiregion_chat.clients.tokens import mint_token
    from multiregion_chat.runtime.auth.tokens import HmacKeys, verify

    keys = HmacKeys.from_secret(SECRET_32)
    assert verify(mint_token(SECRET_32, user_id), keys, time.time()).user_id == user_id
