"""The bundled clients against a hostile or strict server: strict parsing, fresh tokens."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from multiregion_chat.clients.chat import run_client
from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.clients.session import ChatSession
from multiregion_chat.clients.strict_json import MAX_FRAME_DEPTH, loads_frame


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def message(body: Any) -> str:
    return json.dumps(
        {
            "type": "message",
            "room": "lobby",
            "id": "01ABC",
            "sender": {"userId": "mallory", "region": "us-east-1"},
            "body": body,
            "sentAt": "2026-11-29T05:00:00.000Z",
        }
    )


def test_cli_survives_a_frame_deeper_than_the_recursion_limit() -> None:
    out = io.StringIO()
    session = ChatSession("lobby", out)
    depth = sys.getrecursionlimit() + 10  # json.dumps of the body would raise RecursionError
    raw = '{"type":"message","room":"lobby","body":' + "[" * depth + "]" * depth + "}"
    session.receive(raw)
    assert out.getvalue().startswith("? unreadable frame")
    assert session.last_id == {}
    session.receive(message("still here"))  # the session goes on
    assert "still here" in out.getvalue()


def test_frames_up_to_the_limit_are_shown() -> None:
    out = io.StringIO()
    session = ChatSession("lobby", out)
    session.receive(message(nested(MAX_FRAME_DEPTH - 1)))  # the frame is one level
    assert "mallory" in out.getvalue()


@pytest.mark.parametrize(
    "raw",
    [
        '{"body": NaN}',
        '{"body": -Infinity}',
        '{"body": 1e400}',
        "[" * (MAX_FRAME_DEPTH + 1) + "]" * (MAX_FRAME_DEPTH + 1),
        "[" * 200_000,
    ],
)
def test_not_strict_json_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        loads_frame(raw)


def test_brackets_in_strings_are_not_nesting() -> None:
    text = json.dumps({"body": "[{" * 5000 + '\\"]'})
    assert loads_frame(text) == json.loads(text)
    assert loads_frame(text.encode()) == json.loads(text)


def test_a_minting_client_builds_a_fresh_url_for_every_connect() -> None:
    """After ``token_expired`` the server closes; the CLI's reconnect must not
    reuse the expired token, so with a minter each attempt builds its URL anew."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])  # closed once the probe is
    built: list[str] = []

    def fresh_url() -> str:
        built.append(f"ws://127.0.0.1:{port}/prod?token=t{len(built)}")
        return built[-1]

    async def no_wait(seconds: float) -> None:
        return None

    async def no_lines() -> AsyncIterator[str]:
        for line in ():
            yield line

    out = io.StringIO()
    options = ClientOptions(backoff=Backoff(attempts=3, base=0.1, cap=0.2), sleep=no_wait)
    assert asyncio.run(run_client(fresh_url, "r", no_lines(), out, options)) == 1
    attempts = [line for line in out.getvalue().splitlines() if "cannot connect" in line]
    assert len(built) == len(attempts) == len(set(built)) == 4  # the first try + 3 retries
