"""End to end with OIDC tokens (issue 10): the app synthesized with ``-c jwtIssuer=... -c
jwtAudience=...``, the sandbox started with ``--oidc`` as that issuer, RS256 tokens across the
three regions over WebSocket and HTTP, the CLI minting from the endpoints file.

Set ``SANDBOX_TEST_OIDC_CDK_OUT`` to such a synthesized cdk.out to skip the synth.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .harness import REPO, Client, SandboxProcess, room_name, synthesized_sandbox

ISSUER = "https://issuer.example"  # whatever the deployment names: the sandbox becomes it
AUDIENCE = "chat"


@pytest.fixture(scope="module")
def oidc_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with synthesized_sandbox(
        tmp_path_factory.mktemp("oidc"),
        preset_env="SANDBOX_TEST_OIDC_CDK_OUT",
        context=["-c", f"jwtIssuer={ISSUER}", "-c", f"jwtAudience={AUDIENCE}"],
        extra=("--oidc",),
    ) as process:
        yield process


def forged(sandbox: SandboxProcess, **changes: Any) -> str:
    """An RS256 token like the sandbox's own, with ``changes`` to its claims or key."""
    entry = sandbox.endpoints["oidc"]
    now = int(time.time())
    claims = {"iss": entry["issuer"], "aud": entry["audience"], "sub": "mallory", "iat": now}
    claims["exp"] = now + 600
    key = changes.pop("key", None) or Path(entry["privateKeyFile"]).read_text()
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": entry["kid"]})


def test_the_sandbox_is_the_issuer(oidc_sandbox: SandboxProcess) -> None:
    entry = oidc_sandbox.endpoints["oidc"]
    assert "signingSecret" not in oidc_sandbox.endpoints  # no secret: the issuer's keys
    assert entry["issuer"] == oidc_sandbox.web + "oidc" and entry["audience"] == AUDIENCE
    assert oct(Path(entry["privateKeyFile"]).stat().st_mode & 0o777) == "0o600"

    async def documents() -> tuple[Any, Any, Any, Any]:
        async with aiohttp.ClientSession() as http:
            url = entry["issuer"] + "/.well-known/openid-configuration"
            async with http.get(url) as answer:
                discovery = await answer.json()
            async with http.get(discovery["jwks_uri"]) as answer:
                keys = await answer.json()
            # The web page: its token endpoint mints with the identity provider's key, and
            # its copy of the endpoints says only that there is auth.
            async with http.get(f"{oidc_sandbox.web}_sandbox/token?sub=web") as answer:
                token = (await answer.json())["token"]
            async with http.get(f"{oidc_sandbox.web}endpoints.json") as answer:
                page = await answer.json()
            return discovery, keys, token, page

    discovery, keys, token, page = asyncio.run(documents())
    assert discovery["issuer"] == entry["issuer"]
    assert [key["kid"] for key in keys["keys"]] == [entry["kid"]]
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert page["auth"] is True and "oidc" not in page


def test_rs256_tokens_across_regions_over_websocket_and_http(
    oidc_sandbox: SandboxProcess,
) -> None:
    room = room_name()

    async def scenario() -> None:
        alice = await Client.open(oidc_sandbox.url("us-east-1"), "alice", "Alice")
        bob = await Client.open(oidc_sandbox.url("eu-west-1"), "bob", rooms=[room])
        try:
            await alice.join(room)
            await bob.join(room)
            await alice.request({"action": "send", "room": room, "body": "hello"})
            got = await bob.wait_for(lambda f: f.get("type") == "message")
            assert got["sender"] == {"userId": "alice", "name": "Alice", "region": "us-east-1"}
            # The token's rooms claim still limits bob.
            reply = await bob.request({"action": "join", "room": room + "-other"})
            assert reply["code"] == "forbidden"
            # The HTTP API of a third region takes the same kind of token.
            url = f"{oidc_sandbox.url('ap-northeast-1', 'http')}/rooms/{room}/messages"
            carol = {"Authorization": f"Bearer {oidc_sandbox.token('carol')}"}
            async with (
                aiohttp.ClientSession() as http,
                http.post(url, headers=carol, json={"body": "from http"}) as answer,
            ):
                assert answer.status == 202, await answer.text()
            await alice.wait_for(lambda f: f.get("body") == "from http", timeout=20)
        finally:
            await alice.close()
            await bob.close()

    asyncio.run(scenario())


def test_foreign_tokens_are_refused_by_both_apis(oidc_sandbox: SandboxProcess) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hs256 = jwt.encode(
        {"sub": "mallory", "exp": int(time.time()) + 600}, "s" * 64, algorithm="HS256"
    )
    bad_tokens = [
        forged(oidc_sandbox, key=other_key),  # the sandbox's kid, another key
        forged(oidc_sandbox, aud="another-app"),
        forged(oidc_sandbox, iss="https://issuer.example"),  # the synthesized, not the local
        forged(oidc_sandbox, exp=int(time.time()) + 3 * 86400),  # longer than 24 h
        hs256,  # HS256 is not accepted once an issuer is configured
    ]

    async def scenario() -> None:
        websocket = oidc_sandbox.url("eu-west-1")
        http_url = f"{oidc_sandbox.url('us-east-1', 'http')}/rooms/lobby/messages"
        async with aiohttp.ClientSession() as http:
            for token in bad_tokens:
                with pytest.raises(InvalidStatus) as raised:
                    async with connect(f"{websocket}?{urlencode({'token': token})}"):
                        pass
                assert raised.value.response.status_code == 403
                headers = {"Authorization": f"Bearer {token}"}
                async with http.get(http_url, headers=headers) as answer:
                    assert answer.status == 403
        # And the good one, for contrast.
        async with connect(f"{websocket}?{urlencode({'token': forged(oidc_sandbox)})}"):
            pass

    asyncio.run(scenario())


def test_the_token_cli_mints_from_the_endpoints_file(oidc_sandbox: SandboxProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "multiregion_chat.clients.tokens", "--sub", "dave",
         "--rooms", "lobby",
         "--endpoints-file", str(oidc_sandbox.endpoints_file)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    token = done.stdout.strip()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == oidc_sandbox.endpoints["oidc"]["kid"]

    async def scenario() -> None:
        dave = await Client.open(oidc_sandbox.url("ap-northeast-1"), "dave", token=token)
        try:
            assert (await dave.join("lobby"))["type"] == "joined"
        finally:
            await dave.close()

    asyncio.run(scenario())
    assert json.loads(Path(oidc_sandbox.endpoints_file).read_text())["oidc"]


def test_refresh_takes_the_issuer_s_tokens_and_refuses_others(
    oidc_sandbox: SandboxProcess,
) -> None:
    """``refresh`` (ClientMessageHandler) verifies with the authorizer's key source: the
    issuer's JWKS, with the same rules, through the template's own environment."""
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def scenario() -> None:
        erin = await Client.open(oidc_sandbox.url("eu-west-1"), "erin")
        try:
            fresh = forged(oidc_sandbox, sub="erin", exp=int(time.time()) + 3600)
            reply = await erin.request({"action": "refresh", "token": fresh})
            assert reply["type"] == "refreshed", reply
            assert (
                reply["expiresAt"] == jwt.decode(fresh, options={"verify_signature": False})["exp"]
            )
            for bad in (
                forged(oidc_sandbox, sub="erin", key=other_key),  # the sandbox's kid, another key
                forged(oidc_sandbox, sub="erin", aud="another-app"),
                forged(oidc_sandbox, sub="mallory"),  # another user
            ):
                refused = await erin.request({"action": "refresh", "token": bad})
                assert refused["code"] == "token_invalid", refused
            assert (await erin.request({"action": "ping"}))["type"] == "pong"
        finally:
            await erin.close()

    asyncio.run(scenario())
