"""The authorizer's front door (issue 8): every malformed token is a refusal, never an exception.

Each case goes through ``runtime.auth.tokens.verify`` (the reason) and through the handler of both
APIs
(a Deny policy / ``isAuthorized: false``, never a raised exception: a raised exception is a
500 and pages through the AuthorizerErrors alarm). Tokens are built when each test runs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from multiregion_chat.runtime.auth.tokens import InvalidTokenError, TokenPolicy
from multiregion_chat.runtime.handlers import authorizer
from tests.unit.tokens_helpers import (
    SECRET,
    b64,
    both_apis_refuse,
    forge,
    good,
    invoke,
    signed,
    signing_secret_stored,
    verify,
    ws_event,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def token(**extra: Any) -> str:
    return forge(good(**extra))


def non_canonical(segment: str) -> str:
    """The same bytes spelled with set trailing bits in the last character (base64 decoders
    ignore them)."""
    last = ALPHABET.index(segment[-1])
    unused_bits = (6 * len(segment)) % 8  # bits of the last character that carry no data
    assert unused_bits, "this length has no unused bits"
    return segment[:-1] + ALPHABET[last | 1]


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with signing_secret_stored(monkeypatch):
        yield


# Each: (attack, how to build it, the reason verify gives).
ATTACKS: list[tuple[str, Callable[[], str], str]] = [
    # Observed crash (UnicodeEncodeError): a non-ASCII character in a segment.
    ("non-ASCII in the payload", lambda: token().replace(".", ".é", 1), "base64url"),
    ("non-ASCII in the header", lambda: "é" + token(), "base64url"),
    ("non-ASCII in the signature", lambda: token() + "ü", "base64url"),
    ("a lone surrogate", lambda: token() + "\ud800", "base64url"),
    ("a NUL byte", lambda: token().replace(".", "\0.", 1), "base64url"),
    # Observed crash (RecursionError): a header of a few thousand "[".
    ("5,000 [ in the header", lambda: signed(b"[" * 5000, b"{}"), "nests deeper"),
    ("3,000 { in the payload", lambda: signed(b'{"alg":"HS256"}', b'{"a":' * 1000), "nests"),
    (
        "nesting hidden after a string",
        lambda: signed(b'{"x":"]]","y":' + b"[" * 9, b"{}"),
        "nests",
    ),
    ("huge token", lambda: token(pad="x" * 9000), "longer"),
    ("one megabyte", lambda: "a" * 1_000_000, "longer"),
    ("padding", lambda: token() + "==", "base64url"),
    (
        "standard base64 alphabet",
        lambda: token().replace("-", "+").replace("_", "/") + "+/",
        "base64url",
    ),
    ("spaces", lambda: " " + token(), "base64url"),
    ("percent-encoded", lambda: token().replace(".", "%2E", 1), "three"),
    ("four segments", lambda: token() + ".e30", "three"),
    ("segment of length 4n+1", lambda: token() + "AA", "base64url"),
    (
        "non-canonical signature (set trailing bits)",
        lambda: token().rsplit(".", 1)[0] + "." + non_canonical(token().rsplit(".", 1)[1]),
        "canonical",
    ),
    (
        "non-canonical header",
        lambda: non_canonical(b64(b'{"alg":"HS256" }')) + "." + token().split(".", 1)[1],
        "canonical",
    ),
    ("header in UTF-16", lambda: signed('{"alg":"HS256"}'.encode("utf-16"), b"{}"), "UTF-8"),
    ("header with a BOM", lambda: signed(b'\xef\xbb\xbf{"alg":"HS256"}', b"{}"), "JSON"),
    ("NaN exp", lambda: signed(b'{"alg":"HS256"}', b'{"sub":"a","exp":NaN}'), "JSON"),
    ("1e400 exp", lambda: signed(b'{"alg":"HS256"}', b'{"sub":"a","exp":1e400}'), "JSON"),
    (
        "5,000-digit exp",
        lambda: signed(b'{"alg":"HS256"}', b'{"sub":"a","exp":' + b"9" * 5000 + b"}"),
        "JSON",
    ),
    ("exp in a thousand years", lambda: token(exp=int(time.time()) + 10**10), "lifetime"),
    ("exp 25 hours ahead", lambda: token(exp=int(time.time()) + 25 * 3600), "lifetime"),
    (
        "issued 30 hours before exp",
        lambda: token(iat=int(time.time()) - 29 * 3600, exp=int(time.time()) + 3600),
        "lifetime",
    ),
    ("sub with a NUL", lambda: token(sub="ali\0ce"), "control"),
    ("sub with a newline", lambda: token(sub="alice\nINFO forged log line"), "control"),
    ("sub with a lone surrogate", lambda: token(sub="ali\ud800ce"), "control"),
    ("name with an RTL override", lambda: token(name="evil\u202egnp.exe"), "control"),
    ("name with a line separator", lambda: token(name="a\u2028b"), "control"),
    ("rooms with a control character", lambda: token(rooms=["lobby\x07"]), "rooms"),
    ("rooms nested", lambda: token(rooms=[["lobby"]]), "rooms"),
    (
        "alg none, no signature",
        lambda: b64(b'{"alg":"none"}') + "." + b64(b"{}") + ".",
        "base64url",
    ),
    (
        "alg none, signed",
        lambda: signed(b'{"alg":"none"}', json.dumps(good()).encode()),
        "alg",
    ),
    (
        "alg as a list",
        lambda: signed(b'{"alg":["HS256"]}', json.dumps(good()).encode()),
        "alg",
    ),
    (
        "crit header",
        lambda: signed(b'{"alg":"HS256","crit":["exp"]}', json.dumps(good()).encode()),
        "crit",
    ),
    (
        "detached payload (b64 false)",
        lambda: signed(b'{"alg":"HS256","b64":false}', json.dumps(good()).encode()),
        "b64",
    ),
    (
        "kid of 300 characters",
        lambda: signed(json.dumps({"alg": "HS256", "kid": "k" * 300}).encode(), b"{}"),
        "kid",
    ),
]


@pytest.mark.parametrize(("attack", "make", "reason"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_each_attack_is_refused_with_its_reason(
    attack: str, make: Callable[[], str], reason: str
) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        verify(make())


@pytest.mark.parametrize(("attack", "make", "reason"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_each_attack_is_a_refusal_of_both_apis_never_an_exception(
    handler_env: None, attack: str, make: Callable[[], str], reason: str
) -> None:
    both_apis_refuse(make())


def test_a_non_canonical_signature_decodes_to_the_same_bytes_and_is_refused() -> None:
    """Base64 decoders ignore the unused bits: without the check one signature has several
    spellings (each its own authorizer-cache entry). The pinned PyJWT (2.15) refuses them
    too; the front door does not depend on the library version for it."""
    good = token()
    head_body, signature = good.rsplit(".", 1)
    spelled = f"{head_body}.{non_canonical(signature)}"
    assert spelled != good
    assert base64.urlsafe_b64decode(non_canonical(signature) + "=") == base64.urlsafe_b64decode(
        signature + "="
    )
    with pytest.raises(InvalidTokenError, match="canonical"):
        verify(spelled)
    with pytest.raises(jwt.DecodeError):
        jwt.decode(spelled, SECRET, algorithms=["HS256"])
    assert verify(good).user_id == "alice"


def test_the_lifetime_bound_is_configurable_and_inclusive() -> None:
    now = int(time.time())
    hour = TokenPolicy(max_lifetime_seconds=3600)
    assert verify(token(iat=now, exp=now + 3600), policy=hour).user_id == "alice"
    with pytest.raises(InvalidTokenError, match="lifetime"):
        verify(token(iat=now, exp=now + 3601), policy=hour)
    with pytest.raises(InvalidTokenError, match="lifetime"):
        verify(token(exp=now + 7200), policy=hour)  # no iat: exp - now counts
    assert verify(token(exp=now + 24 * 3600)).user_id == "alice"  # the default: 24 h


def test_the_handler_reads_the_lifetime_bound(
    handler_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_TOKEN_LIFETIME_SECONDS", "600")
    authorizer.reset()
    now = int(time.time())
    both_apis_refuse(token(iat=now, exp=now + 3600))
    allowed = invoke(ws_event(token(iat=now, exp=now + 600)))
    assert allowed["principalId"] == "alice"


def test_allowed_unicode_in_names_and_user_ids() -> None:
    """Control characters are refused; letters of any script and emoji sequences are not."""
    found = verify(token(sub="José-北京", name="👩‍💻 Zoë"))
    assert (found.user_id, found.name) == ("José-北京", "👩‍💻 Zoë")


def test_many_random_malformed_tokens_are_all_refusals(handler_env: None) -> None:
    """A bounded, seeded sweep of mutations of a valid token through the handler."""
    import random

    generator = random.Random(8)
    good = token()
    alphabet = ALPHABET + ".=+/ é\0[{\"'\\"
    for _ in range(300):
        chars = list(good)
        for _ in range(generator.randint(1, 4)):
            chars[generator.randrange(len(chars))] = generator.choice(alphabet)
        mutated = "".join(chars)
        if mutated == good:
            continue
        both_apis_refuse(mutated)
