"""Two changes to how moto's DynamoDB runs, not to what it answers (moto's process only).

**Listings sorted with keys converted once.** moto answers a ``Query`` on an index by listing
the whole table sorted by its keys (``Table.all_items``), comparing ``DynamoType`` objects that
convert their value on every comparison. Under the e2e bench that sort was most of moto's time
(docs/sandbox.md, "Capacity": 43 of 72 s in one profile, 6.7 million conversions). The same
sort with each key converted once gives the same order (Python's sort is stable, and
``DynamoType``'s ``<`` is the comparison of those converted values); should two items' keys
ever not compare (a table whose key values have mixed types), moto's own sort runs instead.

**A table's Query reads its partition only.** moto answers a ``Query`` on the table itself
(no index) by listing the *whole* table (the sort above) and keeping the items whose hash key
matches: every page of every query cost the whole table, so it grew with the run (history,
connections, the large_room bench's 5,000 members: 10 pages of about 250 ms each before the
first shard was queued). While such a query runs, ``all_items`` lists the queried partition
only, in the same order, and on a later page only the items past the page's start key (moto
then filters, sorts and pages that list exactly as before).
"""

from __future__ import annotations

import bisect
import inspect
import threading
from typing import Any

_INSTALLED: list[Any] = []
# The partition a table's Query is reading, per thread (moto serves DynamoDB on one thread;
# per-thread all the same, so no other request can ever see it).
_QUERYING = threading.local()


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


def _partition(table: Any, hash_key: Any, start: dict[str, Any] | None, forward: bool) -> list[Any]:
    """The partition's items in key order; on a later page, only those past ``start`` (moto
    would otherwise compare every item before it with the start key, on every page)."""
    found = table.items.get(hash_key)
    if found is None:
        return []
    if not table.range_key_attr:
        return [] if start else [found]
    # moto sorts the list again by DynamoType comparisons (slow per comparison); given it in
    # order, that sort makes one pass
    items = sorted(found.values(), key=lambda item: item.range_key.cast_value)
    if not start or table.range_key_attr not in start:
        return items
    from moto.dynamodb.models.dynamo_type import DynamoType

    keys = [item.range_key.cast_value for item in items]
    after = DynamoType(start[table.range_key_attr]).cast_value
    if forward:
        return items[bisect.bisect_right(keys, after) :]
    return items[: bisect.bisect_left(keys, after)]


def install() -> None:
    """Replace ``Table.all_items`` and wrap ``Table.query`` (idempotent)."""
    from moto.dynamodb.models.table import Table

    if _INSTALLED:
        return
    original = Table.all_items
    original_query = Table.query
    signature = inspect.signature(original_query)

    def all_items(self: Any) -> list[Any]:
        querying = getattr(_QUERYING, "partition", None)
        try:
            if querying is not None and querying[0] is self:
                return _partition(self, *querying[1:])
            return _sorted_by_converted_keys(self)
        except TypeError:  # keys of different types: moto's comparison decides
            return original(self)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # moto passes its arguments by position; binding finds them wherever they are
        arguments = signature.bind(self, hash_key, *args, **kwargs).arguments
        if arguments.get("index_name") or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _QUERYING.partition = (
            self,
            hash_key,
            arguments.get("exclusive_start_key"),
            arguments.get("scan_index_forward", True) is not False,
        )
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _QUERYING.partition = None

    _INSTALLED.append(original)
    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
