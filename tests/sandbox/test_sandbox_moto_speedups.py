"""sandbox.moto_speedups: moto's table listing in the same order, with keys converted once."""

from __future__ import annotations

import random
from collections.abc import Iterator
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
        monkeypatch.setattr(moto_speedups, "_partition", lambda q: sorted_whole(q.table))
        expected = _query_pages(table, key, forward, limit=4)
        monkeypatch.undo()
        monkeypatch.setattr(moto_speedups, "_sorted_by_converted_keys", counting)
        assert got == expected and got[0]
    assert not listed  # no query listed the whole table


@pytest.fixture
def client() -> Iterator[Any]:
    """boto3 against moto (in this process, speedups installed), with a table ``t`` (pk, sk)."""
    import boto3
    from moto import mock_aws

    moto_speedups.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
        dynamodb.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield dynamodb


def _list_as_moto_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, a table Query lists the whole table, as moto itself does."""
    whole = moto_speedups._sorted_by_converted_keys
    monkeypatch.setattr(moto_speedups, "_partition", lambda query: whole(query.table))


KEY_CONDITIONS = [
    ("pk = :pk", {}),
    ("pk = :pk AND sk BETWEEN :lo AND :hi", {":lo": "0.2", ":hi": "0.7"}),
    ("pk = :pk AND begins_with(sk, :prefix)", {":prefix": "0.3"}),
    ("pk = :pk AND sk > :lo", {":lo": "0.5"}),
    ("pk = :pk AND sk <= :hi", {":hi": "0.4"}),
    ("pk = :pk AND sk = :hi", {":hi": "0.400000"}),
]


@pytest.mark.parametrize(("condition", "values"), KEY_CONDITIONS)
@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize("limit", [1, 7, None])
def test_key_conditions_page_as_moto_pages_them(
    condition: str,
    values: dict[str, str],
    forward: bool,
    limit: int | None,
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through moto's own request path (KeyConditionExpression, Limit, ScanIndexForward,
    ExclusiveStartKey, a FilterExpression): every page equals moto's."""
    rng = random.Random(20)
    for number in range(150):
        client.put_item(
            TableName="t",
            Item={
                "pk": {"S": f"room-{number % 3}"},
                "sk": {"S": f"{rng.random():.6f}"},
                "n": {"N": str(number)},
            },
        )
    client.put_item(
        TableName="t", Item={"pk": {"S": "room-0"}, "sk": {"S": "0.400000"}, "n": {"N": "1"}}
    )

    def pages() -> list[Any]:
        found: list[Any] = []
        request: dict[str, Any] = {
            "TableName": "t",
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": {
                ":pk": {"S": "room-0"},
                ":odd": {"N": "2"},
                **{name: {"S": value} for name, value in values.items()},
            },
            "FilterExpression": "n <> :odd",
            "ScanIndexForward": forward,
        }
        if limit:
            request["Limit"] = limit
        while True:
            page = client.query(**request)
            found.append((page["Items"], page.get("LastEvaluatedKey"), page["ScannedCount"]))
            if "LastEvaluatedKey" not in page or len(found) > 500:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    got = pages()
    _list_as_moto_does(monkeypatch)
    expected = pages()
    assert got == expected
    assert sum(len(items) for items, _, _ in got) > 0


def test_a_page_that_ends_at_moto_s_size_limit_after_the_matches_ends_there_too(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three 300 KB matches, then a miss: moto stops at the miss's size check (1 MB) and sets
    LastEvaluatedKey; the narrowed listing must let it."""
    for sk in ("a1", "a2", "a3", "b1"):
        item = {"pk": {"S": "p"}, "sk": {"S": sk}, "blob": {"S": "x" * 300_000}}
        client.put_item(TableName="t", Item=item)

    def first_page() -> Any:
        page = client.query(
            TableName="t",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
            ExpressionAttributeValues={":pk": {"S": "p"}, ":a": {"S": "a"}},
            Limit=10,
        )
        return [i["sk"]["S"] for i in page["Items"]], page.get("LastEvaluatedKey")

    got = first_page()
    _list_as_moto_does(monkeypatch)
    expected = first_page()
    assert got == expected
    assert expected[1] is not None  # the case this test is for: moto's size check ended it


def _pages_with_writes(table: Table, hash_key: dict[str, str]) -> list[Any]:
    """Pages of 4, with a put into the partition, a replaced item and a delete between them."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    pages: list[Any] = []
    start = None
    step = 0
    while True:
        items, _scanned, last = table.query(DynamoType(hash_key), None, [], 4, start, True, None)
        pages.append([item.to_json() for item in items])
        if last is None:
            return pages
        start = last
        step += 1
        table.put_item({"pk": hash_key, "sk": {"S": f"0.9{step:05d}"}, "n": {"N": "0"}})
        table.put_item({"pk": hash_key, "sk": last["sk"], "n": {"N": str(step)}})
        if items:
            table.delete_item(DynamoType(hash_key), items[-1].range_key)
        if step > 50:
            return pages


def test_a_partition_s_sort_is_redone_after_puts_and_deletes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moto_speedups.install()
    key = {"S": "room-1"}
    table = _table("S")
    _fill(table, "S")
    got = _pages_with_writes(table, key)
    _list_as_moto_does(monkeypatch)
    reference = _table("S")
    _fill(reference, "S")
    assert got == _pages_with_writes(reference, key)
    assert len(got) > 2


def test_a_partition_is_sorted_once_while_it_does_not_change() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    moto_speedups.install()
    table = _table("S")
    _fill(table, "S")
    hash_key = DynamoType({"S": "room-1"})

    def sorted_list() -> Any:
        table.query(hash_key, None, [], 4, None, True, None)
        return table._sandbox_sorted_partitions[hash_key][2]

    first = sorted_list()
    assert sorted_list() is first
    table.put_item({"pk": {"S": "room-2"}, "sk": {"S": "x"}})  # another partition
    assert sorted_list() is first
    table.put_item({"pk": {"S": "room-1"}, "sk": {"S": "x"}})
    assert sorted_list() is not first


def test_a_replaced_item_is_answered_as_it_is_now() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    moto_speedups.install()
    table = _table("S")
    table.put_item({"pk": {"S": "p"}, "sk": {"S": "a"}, "n": {"N": "1"}})
    hash_key = DynamoType({"S": "p"})

    def answer() -> Any:
        items, _scanned, _last = table.query(hash_key, None, [], 4, None, True, None)
        return [item.to_json()["Attributes"]["n"] for item in items]

    assert answer() == [{"N": "1"}]
    table.put_item({"pk": {"S": "p"}, "sk": {"S": "a"}, "n": {"N": "2"}})  # same key
    assert answer() == [{"N": "2"}]
