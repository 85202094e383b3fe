"""sandbox.moto_speedups: moto's table listing in the same order, with keys converted once."""

from __future__ import annotations

import random
from typing import Any

import pytest
from moto.dynamodb.models.table import Table

from sandbox import moto_speedups


def _table(range_type: str | None, hash_type: str = "S") -> Table:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": hash_type}]
    if range_type:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": range_type})
    return Table(  # type: ignore[abstract]
        "t", account_id="123456789012", region="eu-west-1", schema=schema, attr=attributes
    )


def _fill(table: Table, range_type: str | None, hash_type: str = "S") -> None:
    rng = random.Random(16)
    for number in range(300):
        pk = str(rng.randint(-50, 50)) if hash_type == "N" else f"room-{rng.randint(0, 20)}"
        item = {"pk": {hash_type: pk}, "n": {"N": str(number)}}
        if range_type == "N":
            item["sk"] = {"N": str(rng.choice([rng.randint(-999, 999), rng.random() * 100]))}
        elif range_type == "S":
            item["sk"] = {"S": f"{rng.random():.6f}"}
        table.put_item(item)


@pytest.mark.parametrize(
    ("range_type", "hash_type"), [(None, "S"), ("S", "S"), ("N", "S"), ("N", "N")]
)
def test_the_listing_is_moto_s_own_order(range_type: str | None, hash_type: str) -> None:
    moto_speedups.install()
    table = _table(range_type, hash_type)
    _fill(table, range_type, hash_type)
    (original,) = moto_speedups._INSTALLED
    expected = [item.to_json() for item in original(table)]
    assert [item.to_json() for item in table.all_items()] == expected
    assert len(expected) == len({str(e) for e in expected}) > 20


def _query_pages(table: Table, hash_key: dict[str, str], forward: bool, limit: int) -> list[Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    pages: list[Any] = []
    start = None
    while True:
        items, _scanned, last = table.query(
            DynamoType(hash_key), None, [], limit, start, forward, None, None
        )
        pages.append([item.to_json() for item in items])
        if last is None:
            return pages
        start = last


@pytest.mark.parametrize(("range_type", "hash_type"), [(None, "S"), ("S", "S"), ("N", "N")])
@pytest.mark.parametrize("forward", [True, False])
def test_a_table_query_reads_its_partition_with_moto_s_answer(
    range_type: str | None, hash_type: str, forward: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_speedups.install()
    table = _table(range_type, hash_type)
    _fill(table, range_type, hash_type)
    listed: list[int] = []
    sorted_whole = moto_speedups._sorted_by_converted_keys

    def counting(t: Table) -> list[Any]:
        listed.append(1)
        return sorted_whole(t)

    monkeypatch.setattr(moto_speedups, "_sorted_by_converted_keys", counting)
    for hash_key in {
        item.hash_key.to_json()["S" if hash_type == "S" else "N"]
        for item in moto_speedups._INSTALLED[0](table)
    }:
        key = {hash_type: hash_key}
        got = _query_pages(table, key, forward, limit=4)
        # moto's own answer: the same query with the whole-table listing
        monkeypatch.setattr(moto_speedups, "_partition", lambda t, *_: sorted_whole(t))
        expected = _query_pages(table, key, forward, limit=4)
        monkeypatch.undo()
        monkeypatch.setattr(moto_speedups, "_sorted_by_converted_keys", counting)
        assert got == expected and got[0]
    assert not listed  # no query listed the whole table
