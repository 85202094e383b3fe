"""Where an OIDC issuer's keys may be read from (issue 18, item 8), and how often.

``fetch_json`` reads https only, never through a redirect and never from the
loopback interface or an internal address literal, unless the sandbox-only
``CHAT_SANDBOX_LOOPBACK_ISSUER`` is set (then loopback http is allowed, so the
local identity provider works). A real HTTP server on 127.0.0.1 shows both the
allowed read and the refused redirect.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from multiregion_chat.runtime.auth.jwks import LOOPBACK_SETTING, JwksUnavailableError, fetch_json
from tests.unit.test_oidc_tokens import ISSUER, FakeIssuer, check, rs256


class LocalServer:
    """``/keys`` answers a JWKS-like document; ``/moved`` redirects to ``/keys``."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/keys")
                    self.end_headers()
                    return
                body = json.dumps({"keys": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    local = LocalServer()
    thread = threading.Thread(target=local.server.serve_forever, daemon=True)
    thread.start()
    yield local
    local.server.shutdown()
    local.server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://issuer.example/keys", "https"),
        ("file:///etc/passwd", "https"),
        ("ftp://issuer.example/keys", "https"),
        ("http://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "loopback"),
        ("https://localhost/keys", "loopback"),
        ("http://[::1]:9001/keys", "loopback"),
        ("https://127.1.2.3/keys", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "internal"),
        ("https://10.0.0.8/keys", "internal"),
        ("https://0.0.0.0/keys", "internal"),
    ],
)
def test_fetch_json_refuses_urls_keys_cannot_come_from(
    url: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOOPBACK_SETTING, raising=False)

    def no_request(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a request was made to {url}")  # never leave this machine

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_request)
    with pytest.raises(JwksUnavailableError, match=reason):
        fetch_json(url)


def test_loopback_is_refused_in_production_and_read_in_the_sandbox(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOOPBACK_SETTING, raising=False)
    with pytest.raises(JwksUnavailableError, match="loopback"):
        fetch_json(f"{local_server.url}/keys")
    assert local_server.paths == []  # refused before any request

    monkeypatch.setenv(LOOPBACK_SETTING, "1")
    assert fetch_json(f"{local_server.url}/keys") == {"keys": []}
    assert local_server.paths == ["/keys"]
    # The sandbox setting opens loopback only, not plain http elsewhere.
    with pytest.raises(JwksUnavailableError, match="https"):
        fetch_json("http://issuer.example/keys")


def test_a_redirect_is_refused_and_not_followed(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOOPBACK_SETTING, "1")
    with pytest.raises(JwksUnavailableError, match="redirects are refused"):
        fetch_json(f"{local_server.url}/moved")
    assert local_server.paths == ["/moved"]


def test_an_unknown_kid_on_a_cold_container_fetches_once() -> None:
    issuer = FakeIssuer()
    source = issuer.source()  # discovered: the first refresh is two requests
    with pytest.raises(Exception, match="unknown kid"):
        check(rs256("not-published"), source)
    assert issuer.requests == [f"{ISSUER}/.well-known/openid-configuration", f"{ISSUER}/keys"]
