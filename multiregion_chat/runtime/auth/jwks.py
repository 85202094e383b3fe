"""An OIDC issuer's signing keys (JWKS), fetched, cached and refetched on an unknown ``kid``.

The JWKS URL is ``JWKS_URL`` or, when unset, the ``jwks_uri`` of the issuer's
discovery document ``<issuer>/.well-known/openid-configuration`` (whose
``issuer`` must be the configured issuer, as OIDC Discovery requires).

Not PyJWT's ``PyJWKClient``: it refetches the whole JWKS on *every* unknown
``kid``, so a client sending random ``kid`` values would make each authorizer
call an HTTP request to the issuer. Here an unknown ``kid`` refetches at most
once per :data:`REFETCH_INTERVAL_SECONDS` per container (an issuer rotating
its keys publishes the new key before signing with it, so one refetch finds
it), and a known set is refreshed after :data:`MAX_AGE_SECONDS`. Parsing each
key is PyJWT's (``PyJWK``); only keys usable for RS256 or ES256 signatures are
kept, and a key is used only for the algorithm it is for.

Where keys may come from: https only, never through a redirect (the URL
checked is the URL read), and never from a loopback, link-local, private or
unspecified address (in Lambda the Runtime API listens on 127.0.0.1:9001).
The local sandbox's issuer is plain http on 127.0.0.1: it sets
:data:`LOOPBACK_SETTING` in its functions' environment (sandbox/runtime.py),
which allows http and https to loopback hosts; the templates never set it.

Failures: no key set at all (the first fetch failed) raises
:class:`JwksUnavailableError` (the authorizer fails: API Gateway 500 and the
AuthorizerErrors alarm, not "bad token"); a failed refresh keeps the cached set
and logs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from multiregion_chat.runtime.auth.tokens import InvalidTokenError

__all__ = [
    "ALGORITHMS",
    "LOOPBACK_SETTING",
    "MAX_AGE_SECONDS",
    "REFETCH_INTERVAL_SECONDS",
    "JwksKeys",
    "JwksUnavailableError",
    "check_url",
    "fetch_json",
]

ALGORITHMS = frozenset({"RS256", "ES256"})
REFETCH_INTERVAL_SECONDS = 60.0
MAX_AGE_SECONDS = 3600.0
FETCH_TIMEOUT_SECONDS = 3.0
MAX_DOCUMENT_BYTES = 256 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"
# Sandbox only (sandbox/runtime.py sets it to "1"; no template does): the local
# identity provider is plain HTTP on the loopback interface.
LOOPBACK_SETTING = "CHAT_SANDBOX_LOOPBACK_ISSUER"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})

log = logging.getLogger(__name__)


class JwksUnavailableError(RuntimeError):
    """The issuer's keys cannot be read and none are cached."""


def _loopback(host: str) -> bool:
    if host.rstrip(".").lower() in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _internal_address(host: str) -> bool:
    """An address literal no issuer has: private, link-local, unspecified, reserved."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (
        address.is_private
        or address.is_link_local
        or address.is_unspecified
        or (address.is_reserved or address.is_multicast)
    )


def check_url(url: str) -> None:
    """JwksUnavailableError unless ``url`` is one keys may be read from (module docstring)."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if _loopback(host):
        if os.environ.get(LOOPBACK_SETTING) != "1" or parsed.scheme not in ("http", "https"):
            raise JwksUnavailableError(
                f"{url} is on the loopback interface (allowed only in the local sandbox)"
            )
        return
    if parsed.scheme != "https" or not host:
        raise JwksUnavailableError(f"{url} is not an https URL")
    if _internal_address(host):
        raise JwksUnavailableError(f"{url} names an internal address")


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Keys are read from the URL that was checked, never from where it points to."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        raise JwksUnavailableError(f"{req.full_url} redirects ({code}); redirects are refused")


_OPENER = urllib.request.build_opener(_RefuseRedirects())


def fetch_json(url: str) -> Any:
    """GET a JSON document (:func:`check_url`, no redirects; bounded size and time)."""
    check_url(url)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with _OPENER.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        body = response.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise JwksUnavailableError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    return json.loads(body)


def _usable_keys(document: Any) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksUnavailableError("the JWKS has no keys list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue  # another key type or algorithm: not ours to use
        if key.algorithm_name in ALGORITHMS:
            keys[kid] = key
    return keys


class JwksKeys:
    """A :class:`runtime.auth.tokens.KeySource` over an issuer's JWKS (one per container)."""

    algorithms = ALGORITHMS

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None = None,
        *,
        fetch: Callable[[str], Any] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = -float("inf")
        self.fetches = 0

    def _discover(self) -> str:
        document = self._fetch(self.issuer.rstrip("/") + DISCOVERY_PATH)
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            raise JwksUnavailableError("the discovery document names another issuer")
        url = document.get("jwks_uri")
        if not isinstance(url, str) or not url:
            raise JwksUnavailableError("the discovery document has no jwks_uri")
        return url

    def _refresh(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        try:
            if self.jwks_url is None:
                self.jwks_url = self._discover()
            self._keys = _usable_keys(self._fetch(self.jwks_url))
        except Exception as error:  # network, HTTP, JSON: keep what we have
            if self._keys is None:
                raise JwksUnavailableError(f"cannot read the issuer's keys: {error}") from error
            log.warning("JWKS refresh failed; keeping the cached keys: %s", error)

    def keys_for(self, alg: str, kid: str | None) -> Sequence[Any]:
        if kid is None:
            raise InvalidTokenError("no kid")
        age = self._clock() - self._fetched_at
        if self._keys is None or age >= MAX_AGE_SECONDS:
            self._refresh()
            # Just fetched: an unknown kid must not fetch again at once.
            age = self._clock() - self._fetched_at
        assert self._keys is not None
        if kid not in self._keys and age >= REFETCH_INTERVAL_SECONDS:
            self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise InvalidTokenError("unknown kid")
        if key.algorithm_name != alg:
            raise InvalidTokenError(f"kid is a key for {key.algorithm_name}, not {alg}")
        return [key]
