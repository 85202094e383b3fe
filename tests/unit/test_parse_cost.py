"""The CPU a hostile frame, POST body or token costs before it is refused (issue 18, item 1).

Every pre-parse scan must be linear: a pattern that restarted at every quote of an unclosed
string made of ``\\"`` pairs took 3 s for a 32 KB frame (quadratic), before the rate limit.
Each worst input we could build is timed against an ordinary input of the same length, in the
same run, as a ratio: the machine's speed and load cancel out. The best of several runs of
each is taken, so a pause of the machine does not count. The quadratic scan gave ratios in
the tens of thousands; a linear one stays within a small factor (about 10 here).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

import pytest

from multiregion_chat.runtime.auth import tokens
from multiregion_chat.runtime.auth.tokens import HmacKeys, InvalidTokenError
from multiregion_chat.runtime.protocol import frames
from multiregion_chat.runtime.protocol.frames import ProtocolError
from multiregion_chat.runtime.protocol.http_requests import parse_http_post
from multiregion_chat.runtime.protocol.json_codec import too_deep
from tests.unit.tokens_helpers import SECRET, b64, signed

MAX_BODY = 32_000  # the largest maxBodyBytes accepted
SIZE = 32 * 1024  # one WebSocket frame
# Linear scans measured at about 10x an ordinary frame; quadratic ones at 10,000x and more.
MAX_RATIO = 100
RUNS = 7


def _best_seconds(call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(RUNS):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _hostile_json(size: int) -> dict[str, str]:
    pairs = (size - 40) // 2
    return {
        "unclosed string of escaped quotes": "[" * 33 + '"' + '\\"' * pairs,
        "unclosed string ending in a backslash": "[" * 33 + '"' + '\\"' * pairs + "\\",
        "unclosed string of backslashes": "[" * 33 + '"' + "\\\\" * pairs,
        "brackets inside strings": "[" * 33 + '"[{' * (size // 3),
        "many short strings": "[" * 33 + '"a",' * (size // 4),
        "open objects": '{"a":' * (size // 5),
        "open arrays": "[" * size,
        "escapes in a body": '{"action":"send","room":"r","body":"'
        + "\\u00e9" * (size // 6)
        + '"}',
    }


def _ordinary_frame(size: int) -> str:
    return json.dumps({"action": "send", "room": "lobby", "body": "a" * (size - 50)})


def _refused(parse: Callable[[str], object], raw: str) -> Callable[[], None]:
    def call() -> None:
        with contextlib.suppress(ProtocolError):
            parse(raw)

    return call


def _frame(raw: str) -> object:
    return frames.parse_client_frame(raw, max_body_bytes=MAX_BODY)


def _post(raw: str) -> object:
    return parse_http_post(raw, room="lobby", max_body_bytes=MAX_BODY)


@pytest.mark.parametrize("parse", [_frame, _post], ids=["frame", "http-post"])
def test_hostile_json_costs_a_small_multiple_of_an_ordinary_frame(
    parse: Callable[[str], object],
) -> None:
    ordinary = _best_seconds(_refused(parse, _ordinary_frame(SIZE)))
    for name, raw in _hostile_json(SIZE).items():
        hostile = _best_seconds(_refused(parse, raw))
        assert hostile / ordinary <= MAX_RATIO, (
            f"{name}: {hostile * 1000:.2f} ms, an ordinary frame {ordinary * 1000:.3f} ms"
        )


def test_the_depth_scan_is_linear_in_the_length() -> None:
    """Eight times the input costs about eight times the time (a quadratic scan: 64 times)."""
    small, large = ("[" * 33 + '"' + '\\"' * pairs for pairs in (4_000, 32_000))
    ratio = _best_seconds(lambda: too_deep(large)) / _best_seconds(lambda: too_deep(small))
    assert ratio <= 24, f"8x the input cost {ratio:.1f}x the time"


def test_a_frame_longer_than_any_valid_one_is_refused_before_it_is_read() -> None:
    limit = frames.max_frame_chars(MAX_BODY)
    with pytest.raises(ProtocolError) as refused:
        frames.parse_client_frame("[" * (limit + 1), max_body_bytes=MAX_BODY)
    assert refused.value.code == "too_large"
    assert refused.value.ref is None
    # The most escaped valid frame still fits: every body byte spelled \u00XX.
    body = "\\u0061" * (MAX_BODY - 2)
    raw = '{"action":"send","room":"lobby","ref":"' + "r" * 64 + '","body":"' + body + '"}'
    assert len(raw) <= limit
    request, _ = frames.parse_client_frame(raw, max_body_bytes=MAX_BODY)
    assert isinstance(request, frames.Send)


def test_a_hostile_token_costs_a_small_multiple_of_an_ordinary_bad_token() -> None:
    """The authorizer verifies before anything else, so no token is needed for this."""
    keys, now = HmacKeys(current=SECRET), time.time()
    header_text = "[" * 33 + '"' + '\\"' * 2_700  # the header segment near the length cap
    hostile = signed(header_text.encode(), b"{}")
    assert len(hostile) <= tokens.MAX_TOKEN_CHARS
    ordinary = signed(b'{"alg":"HS256","typ":"JWT"}', b64(b"x" * 5_000).encode())

    def check(token: str) -> Callable[[], None]:
        def call() -> None:
            with pytest.raises(InvalidTokenError):
                tokens.verify(token, keys, now)

        return call

    ratio = _best_seconds(check(hostile)) / _best_seconds(check(ordinary))
    assert ratio <= MAX_RATIO, f"a hostile token cost {ratio:.0f}x an ordinary bad one"
