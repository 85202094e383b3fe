"""One change to how moto's DynamoDB runs, not to what it answers (moto's process only).

moto answers a ``Query`` on an index by listing the whole table sorted by its keys
(``Table.all_items``), comparing ``DynamoType`` objects that convert their value on every
comparison. Under the e2e bench that sort was most of moto's time (docs/sandbox.md,
"Capacity": 43 of 72 s in one profile, 6.7 million conversions). The same sort with each key
converted once gives the same order (Python's sort is stable, and ``DynamoType``'s ``<`` is
the comparison of those converted values); should two items' keys ever not compare (a table
whose key values have mixed types), moto's own sort runs instead.
"""

from __future__ import annotations

from typing import Any

_INSTALLED: list[Any] = []


def _sorted_by_converted_keys(table: Any) -> list[Any]:
    items: list[Any] = []
    for hash_set in table.items.values():
        if table.range_key_attr:
            items.extend(hash_set.values())
        else:
            items.append(hash_set)

    def key(item: Any) -> Any:
        if item.range_key:
            return (item.hash_key.cast_value, item.range_key.cast_value)
        return item.hash_key.cast_value

    return sorted(items, key=key)


def install() -> None:
    """Replace ``Table.all_items`` with the converted-key sort (idempotent)."""
    from moto.dynamodb.models.table import Table

    if _INSTALLED:
        return
    original = Table.all_items

    def all_items(self: Any) -> list[Any]:
        try:
            return _sorted_by_converted_keys(self)
        except TypeError:  # keys of different types: moto's comparison decides
            return original(self)

    _INSTALLED.append(original)
    Table.all_items = all_items  # type: ignore[method-assign]
