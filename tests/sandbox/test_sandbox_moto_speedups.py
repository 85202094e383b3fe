"""sandbox.moto_speedups: moto's table listing in the same order, with keys converted once."""

from __future__ import annotations

import random

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
