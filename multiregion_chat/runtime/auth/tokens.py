"""Token verification (docs/protocol.md, "Tokens"): one verifier, two key sources.

* **HS256** (the default): the deployment's signing secret. The secret holds
  one key (a plain string) or, during a rotation, a JSON document
  ``{"current": "<key>", "previous": "<key>", "next": "<key>"}`` (``previous``
  and ``next`` optional; docs/operations.md, "Rotating the signing key"). Every
  key of the document is accepted; signers use ``current``. A token names its
  key with the ``kid`` header, :func:`hmac_key_id` of the key (a fingerprint,
  so the plain-string secret needs no key list); a token without ``kid`` (minted
  before keys had ids) is tried against each key.
* **OIDC** (``JWT_ISSUER`` set): RS256 or ES256 tokens of that issuer, the key
  picked by ``kid`` from the issuer's JWKS (runtime.auth.jwks), ``iss`` and ``aud``
  checked, identity claims mapped by :class:`TokenPolicy`.

First the front door (runtime.auth.token_front_door: the strict parser; it refuses,
it never raises). Then the signature:

* HS256 with no ``iss``/``aud`` rule (the deployment's own tokens): HMAC-SHA256
  of ``header.payload`` compared in constant time (``hmac.compare_digest``).
  That is all PyJWT would check for these tokens once the front door passed
  them (``alg`` from the key source's set, no ``crit``/``b64``, a string
  ``kid``, JSON objects), and it keeps PyJWT and ``cryptography`` (about 20 ms
  of imports, bench/cold_start.py) out of the authorizer's cold start. The
  keys come from the signing secret only, never from a token or a JWKS, so no
  key can be an RSA key used as an HMAC secret (the confusion PyJWT's key
  checks guard against). tests/unit/test_authorizer.py checks this path
  against PyJWT's verdicts.
* RS256/ES256, and HS256 under a policy with ``iss``/``aud``: PyJWT (with the
  ``cryptography`` backend; imported on first use), which also checks ``iss``
  and ``aud``.

Then the claims with ``now`` (not a library's clock, so tests control time):
``exp`` an integer not more than :data:`LEEWAY_SECONDS` in the past; ``exp`` at
most ``max_lifetime_seconds`` after ``now`` and, when ``iat`` is present, after
``iat``; ``nbf``/``iat`` (optional) integers not in the future beyond the
leeway; the user id, name and rooms claims as runtime.protocol.claims says, the user id not
starting with ``system:`` or a look-alike (the server API's senders;
``runtime.protocol.claims.is_system_user_id``). Every failure is
:class:`InvalidTokenError` whose message names the reason and never contains
the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from multiregion_chat.runtime.auth.token_front_door import (
    MAX_JSON_DEPTH,
    InvalidTokenError,
    WellFormedToken,
    parse,
)
from multiregion_chat.runtime.protocol.claims import (
    LEEWAY_SECONDS,
    MAX_NAME_CHARS,
    MAX_ROOM_PATTERNS,
    MAX_TOKEN_CHARS,
    MAX_USER_ID_CHARS,
    SYSTEM_USER_PREFIX,
    is_system_user_id,
    valid_name,
    valid_pattern,
    valid_user_id,
)

__all__ = [
    "DEFAULT_MAX_LIFETIME_SECONDS",
    "LEEWAY_SECONDS",
    "MAX_JSON_DEPTH",
    "MAX_TOKEN_CHARS",
    "SYSTEM_USER_PREFIX",
    "Claims",
    "HmacKeys",
    "InvalidTokenError",
    "KeySource",
    "TokenPolicy",
    "hmac_key_id",
    "verify",
]

DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600
HMAC_ALGORITHM = "HS256"


class Claims(NamedTuple):
    """What a valid token says: ``rooms`` None means every room."""

    user_id: str
    name: str | None
    rooms: tuple[str, ...] | None
    expires_at: int


class TokenPolicy(NamedTuple):
    """How claims become a chat identity, and the time rules (from the environment).

    ``default_rooms``: the room patterns of a token without the rooms claim
    (None: every room).
    """

    user_id_claim: str = "sub"
    name_claim: str = "name"
    rooms_claim: str = "rooms"
    default_rooms: tuple[str, ...] | None = None
    max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS
    issuer: str | None = None
    audience: str | None = None

    @staticmethod
    def from_env(environ: Mapping[str, str] = os.environ) -> TokenPolicy:
        """``JWT_*`` and ``MAX_TOKEN_LIFETIME_SECONDS`` (docs/contracts.md); bad values raise."""
        default = TokenPolicy()
        lifetime = environ.get("MAX_TOKEN_LIFETIME_SECONDS", "").strip()
        rooms = environ.get("JWT_DEFAULT_ROOMS", "").strip()
        default_rooms = None if rooms in ("", "*") else _pattern_list(rooms)
        if default_rooms is None and rooms not in ("", "*"):
            raise ValueError(f"JWT_DEFAULT_ROOMS is not a list of room patterns: {rooms!r}")
        policy = TokenPolicy(
            user_id_claim=environ.get("JWT_USER_ID_CLAIM", "").strip() or default.user_id_claim,
            name_claim=environ.get("JWT_NAME_CLAIM", "").strip() or default.name_claim,
            rooms_claim=environ.get("JWT_ROOMS_CLAIM", "").strip() or default.rooms_claim,
            default_rooms=default_rooms,
            max_lifetime_seconds=int(lifetime) if lifetime else default.max_lifetime_seconds,
            issuer=environ.get("JWT_ISSUER", "").strip() or None,
            audience=environ.get("JWT_AUDIENCE", "").strip() or None,
        )
        if policy.max_lifetime_seconds < 1:
            raise ValueError("MAX_TOKEN_LIFETIME_SECONDS must be >= 1")
        if policy.issuer and not policy.audience:
            raise ValueError("JWT_ISSUER is set without JWT_AUDIENCE")
        return policy


class KeySource(Protocol):
    """Where the verification keys come from (HmacKeys, runtime.auth.jwks.JwksKeys)."""

    @property
    def algorithms(self) -> frozenset[str]:
        """The ``alg`` values this source has keys for."""
        ...

    def keys_for(self, alg: str, kid: str | None) -> Sequence[Any]:
        """Candidate keys for a token's header (raise InvalidTokenError when none)."""
        ...


def hmac_key_id(key: str) -> str:
    """The ``kid`` of an HS256 key: a fingerprint (no secret can be recovered from it;
    a weak key is as exposed to guessing by any signed token as by this)."""
    digest = hashlib.sha256(b"chat-hs256-kid\0" + key.encode("utf-8")).digest()
    return "hs-" + base64.urlsafe_b64encode(digest[:9]).decode("ascii")


@dataclass(frozen=True)
class HmacKeys:
    """The HS256 keys of a signing secret's value (see the module docstring)."""

    # Secrets: never in a repr, so never in a log line or a traceback's locals.
    current: str = field(repr=False)
    others: tuple[str, ...] = field(default=(), repr=False)
    algorithms: frozenset[str] = field(default=frozenset({"HS256"}))

    @staticmethod
    def from_secret(value: str | bytes) -> HmacKeys:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        text = text.strip()
        if not text.startswith("{"):
            if not text:
                raise ValueError("the signing secret is empty")
            return HmacKeys(current=text)
        document = json.loads(text)
        current = document.get("current") if isinstance(document, dict) else None
        if not isinstance(current, str) or not current:
            raise ValueError('the signing secret\'s JSON has no "current" key')
        others = tuple(
            document[name]
            for name in ("previous", "next")
            if isinstance(document.get(name), str) and document[name]
        )
        return HmacKeys(current=current, others=others)

    @property
    def by_kid(self) -> dict[str, str]:
        return {hmac_key_id(key): key for key in (self.current, *self.others)}

    def keys_for(self, alg: str, kid: str | None) -> Sequence[Any]:
        keys = self.by_kid
        if kid is None:
            return [key.encode("utf-8") for key in keys.values()]
        if kid not in keys:
            raise InvalidTokenError("unknown kid")
        return [keys[kid].encode("utf-8")]


# ---- claims ----------------------------------------------------------------------------


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pattern_list(value: object) -> tuple[str, ...] | None:
    """Room patterns from a list, or from a string of comma/space-separated patterns (an
    IdP's custom attribute is often a string). None when it is neither."""
    if isinstance(value, str):
        value = [part for part in re.split(r"[\s,]+", value) if part]
    if not isinstance(value, list) or len(value) > MAX_ROOM_PATTERNS:
        return None
    if not all(valid_pattern(pattern) for pattern in value):
        return None
    return tuple(value)


def _check_times(payload: Mapping[str, Any], now: float, policy: TokenPolicy) -> int:
    exp = payload.get("exp")
    if not _integer(exp):
        raise InvalidTokenError("exp must be an integer")
    assert isinstance(exp, int)
    if exp + LEEWAY_SECONDS <= now:
        raise InvalidTokenError("token expired")
    for name in ("nbf", "iat"):
        value = payload.get(name)
        if value is None:
            continue
        if not _integer(value):
            raise InvalidTokenError(f"{name} must be an integer")
        if value - LEEWAY_SECONDS > now:
            raise InvalidTokenError(f"token not valid yet ({name} in the future)")
    lifetime = policy.max_lifetime_seconds
    iat = payload.get("iat")
    if exp - now > lifetime + LEEWAY_SECONDS or (iat is not None and exp - iat > lifetime):
        raise InvalidTokenError(f"token lifetime longer than {lifetime} seconds")
    return exp


def _identity(payload: Mapping[str, Any], policy: TokenPolicy, exp: int) -> Claims:
    user_id = payload.get(policy.user_id_claim)
    if not valid_user_id(user_id):
        raise InvalidTokenError(
            f"{policy.user_id_claim} must be a string of 1-{MAX_USER_ID_CHARS} characters "
            "without control characters"
        )
    if is_system_user_id(user_id):
        raise InvalidTokenError(
            f"{policy.user_id_claim} must not start with {SYSTEM_USER_PREFIX!r} or a look-alike "
            "(system senders)"
        )
    name = payload.get(policy.name_claim)
    if not valid_name(name):
        raise InvalidTokenError(
            f"{policy.name_claim} must be a string of at most {MAX_NAME_CHARS} characters "
            "without control characters"
        )
    if policy.rooms_claim in payload:
        rooms = _pattern_list(payload[policy.rooms_claim])
        if rooms is None:
            raise InvalidTokenError(
                f"{policy.rooms_claim} must hold at most {MAX_ROOM_PATTERNS} room names, "
                "optionally with *"
            )
    else:
        rooms = policy.default_rooms
    return Claims(user_id=user_id, name=name or None, rooms=rooms, expires_at=exp)


def _hs256_payload(token: WellFormedToken, candidates: Sequence[Any]) -> dict[str, Any] | None:
    """The payload if one of the HS256 ``candidates`` (key bytes) signed the token."""
    for key in candidates:
        expected = hmac.new(key, token.signing_input, hashlib.sha256).digest()
        if hmac.compare_digest(expected, token.signature):
            return token.payload
    return None


def _library_payload(
    token: str, alg: str, candidates: Sequence[Any], policy: TokenPolicy
) -> dict[str, Any] | None:
    """The payload PyJWT verified with one of ``candidates`` (and iss/aud by ``policy``)."""
    import jwt  # here, not at module import: HS256 deployments never load it (docstring)

    for key in candidates:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=policy.issuer,
                audience=policy.audience,
                options={
                    # Signature, iss and aud by the library; times (against `now`)
                    # and the identity claims below.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                    "verify_jti": False,
                    "verify_iss": policy.issuer is not None,
                    "verify_aud": policy.audience is not None,
                    "require": ["iss", "aud"] if policy.issuer else [],
                },
            )
            return payload
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError("wrong audience") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidTokenError(f"no {error.claim} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as error:
            raise InvalidTokenError(f"refused by the JWT library: {type(error).__name__}") from None
    return None


def verify(token: object, keys: KeySource, now: float, policy: TokenPolicy | None = None) -> Claims:
    """The claims of ``token`` if it is valid at ``now`` (epoch seconds); else InvalidTokenError.

    Errors of the key source itself (an unreachable JWKS with nothing cached)
    propagate: an outage must not look like a bad token.
    """
    policy = policy or TokenPolicy()
    parsed = parse(token, keys.algorithms)
    alg = parsed.header["alg"]
    candidates = keys.keys_for(alg, parsed.header.get("kid"))
    if alg == HMAC_ALGORITHM and policy.issuer is None and policy.audience is None:
        payload = _hs256_payload(parsed, candidates)
    else:
        payload = _library_payload(str(token), alg, candidates, policy)
    if payload is None:
        raise InvalidTokenError("bad signature")
    exp = _check_times(payload, now, policy)
    return _identity(payload, policy, exp)
