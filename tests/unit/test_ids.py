"""runtime.protocol.ids: time-ordered, unique, monotonic message ids."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import pytest

from multiregion_chat.runtime.protocol import ids


@pytest.fixture(autouse=True)
def fresh_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts (and the suite continues) with the generator's real state."""
    monkeypatch.setattr(ids, "_last_ms", -1)
    monkeypatch.setattr(ids, "_last_random", 0)


def test_ulid_spec_vector_and_round_trip() -> None:
    # The ULID spec's example timestamp encodes to "01ARYZ6S41".
    value = ids.new_id(1469918176385)
    assert value.startswith("01ARYZ6S41")
    assert ids.id_timestamp_ms(value) == 1469918176385
    assert len(value) == ids.ID_LENGTH == 26
    assert ids.is_valid_id(value)


def test_ten_thousand_ids_are_unique_and_strictly_increasing() -> None:
    values = [ids.new_id() for _ in range(10_000)]
    assert len(set(values)) == len(values)
    assert values == sorted(values)
    assert all(a < b for a, b in itertools.pairwise(values))


def test_same_millisecond_increments_the_random_part() -> None:
    ms = ids.now_ms() + 5_000
    first, second = ids.new_id(ms), ids.new_id(ms)
    assert first[:10] == second[:10]
    decode = {c: i for i, c in enumerate(ids.ALPHABET)}

    def rand(v: str) -> int:
        n = 0
        for c in v[10:]:
            n = n * 32 + decode[c]
        return n

    assert rand(second) == rand(first) + 1


def test_clock_going_backwards_keeps_order() -> None:
    ms = ids.now_ms() + 10_000
    later = ids.new_id(ms)
    earlier_clock = ids.new_id(ms - 3_000)
    assert earlier_clock > later
    assert ids.id_timestamp_ms(earlier_clock) == ms


def test_random_overflow_moves_to_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = ids.now_ms() + 20_000
    ids.new_id(ms)
    monkeypatch.setattr(ids, "_last_random", ids._MAX_RANDOM)
    bumped = ids.new_id(ms)
    assert ids.id_timestamp_ms(bumped) == ms + 1


def test_lexicographic_order_is_time_order_across_generators() -> None:
    # Ids minted for increasing timestamps (as different regions would) sort by time.
    stamps = [0, 1, 31, 32, 1023, 10**6, 1469918176385, 2**48 - 1]
    encoded = [ids._encode(ms, 10) + "0" * 16 for ms in stamps]
    assert encoded == sorted(encoded)
    assert [ids.id_timestamp_ms(v) for v in encoded] == stamps


def test_threads_never_share_an_id() -> None:
    out: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [ids.new_id() for _ in range(1000)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 8000


@pytest.mark.parametrize(
    "value",
    [
        "",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25 chars
        "01ARZ3NDEKTSV4RRFFQ69G5FAVV",  # 27 chars
        "01arz3ndektsv4rrffq69g5fav",  # lower case
        "01ARZ3NDEKTSV4RRFFQ69G5FAI",  # I is not Crockford
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",  # U is not Crockford
        "81ARZ3NDEKTSV4RRFFQ69G5FAV",  # timestamp beyond 48 bits
        None,
        42,
    ],
)
def test_invalid_ids(value: object) -> None:
    assert not ids.is_valid_id(value)


def test_valid_id_and_datetime() -> None:
    assert ids.is_valid_id("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert ids.is_valid_id("7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert ids.id_datetime("01ARYZ6S410000000000000000") == dt.datetime(
        2016, 7, 30, 22, 36, 16, 385000, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError):
        ids.id_timestamp_ms("nope")
    with pytest.raises(ValueError):
        ids.new_id(2**48)


def test_iso_from_ms() -> None:
    assert ids.iso_from_ms(1469918176385) == "2016-07-30T22:36:16.385Z"
    assert ids.iso_from_ms(0) == "1970-01-01T00:00:00.000Z"
