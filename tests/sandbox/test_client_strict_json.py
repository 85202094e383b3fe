"""The bundled clients parse server frames as strictly as the server parses theirs."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest

from clients.session import ChatSession
from clients.strict_json import MAX_FRAME_DEPTH, loads_frame


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
