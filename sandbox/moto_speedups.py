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
only, in the same order (sorted once until a put changes the partition): on a later page only
the items past the page's start key, and only as many of those as the page can use (moto then
filters, sorts and pages that list exactly as before).
"""

from __future__ import annotations

import bisect
import inspect
import threading
from typing import Any, NamedTuple

_INSTALLED: list[Any] = []
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's (and moto's) item size limit
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


class _Query(NamedTuple):
    """What a table Query asked for, as far as listing its candidates goes."""

    table: Any
    hash_key: Any
    start: dict[str, Any] | None
    forward: bool
    limit: int | None
    range_comparison: str | None
    range_objs: list[Any]
    legacy_filter: bool  # QueryFilter (filter_kwargs): moto counts its matches differently


def _partition(query: _Query) -> list[Any]:
    """The partition's items in key order, past ``start``, and no more than the page can use.

    moto would otherwise compare every earlier item with the start key, and filter, sort and
    size-check the whole partition, on every page."""
    table = query.table
    found = table.items.get(query.hash_key)
    if found is None:
        return []
    if not table.range_key_attr:
        return [] if query.start else [found]
    items, keys = _sorted_partition(table, query.hash_key, found)
    if query.start and table.range_key_attr in query.start:
        from moto.dynamodb.models.dynamo_type import DynamoType

        after = DynamoType(query.start[table.range_key_attr]).cast_value
        if query.forward:
            items = items[bisect.bisect_right(keys, after) :]
        else:
            items = items[: bisect.bisect_left(keys, after)]
    return _page(items, query)


def _sorted_partition(table: Any, hash_key: Any, found: dict[Any, Any]) -> tuple[list, list]:
    """The partition's items and range keys (converted) in key order, sorted once per change.

    A big room is read in pages, each one a Query of the same partition: sorting it again for
    every page was most of a page's cost. The sort is kept per partition until a put in that
    partition (:func:`_note_write`: a new item, or one replaced by a put or an update), and only
    for the same partition object holding the same number of items (a delete changes that; a
    delete and a put together are caught by the put)."""
    versions = table.__dict__.setdefault("_sandbox_partition_writes", {})
    cache = table.__dict__.setdefault("_sandbox_sorted_partitions", {})
    version = versions.get(hash_key, 0)
    cached = cache.get(hash_key)
    if cached is not None:
        cached_version, cached_found, items, keys = cached
        if cached_version == version and cached_found is found and len(items) == len(found):
            return items, keys
    # moto sorts the list again by DynamoType comparisons (slow per comparison); given it in
    # order, that sort makes one pass
    items = sorted(found.values(), key=lambda item: item.range_key.cast_value)
    keys = [item.range_key.cast_value for item in items]
    cache[hash_key] = (version, found, items, keys)
    return items, keys


def _note_write(table: Any, hash_key: Any) -> None:
    versions = table.__dict__.setdefault("_sandbox_partition_writes", {})
    versions[hash_key] = versions.get(hash_key, 0) + 1


def _page(items: list[Any], query: _Query) -> list[Any]:
    """Of ``items`` (in key order, past the start), the ones moto's page can reach.

    moto walks the list in the query's direction, keeps the key condition's matches, and
    stops at the item after the ``limit``-th match (whatever it is: LastEvaluatedKey is then
    set), or at an item that would take the page past 1 MB. The matches of a key condition
    (=, <, <=, >, >=, BETWEEN, begins_with) on S or N keys are contiguous in key order, so
    after a miss that follows a match only the size check could still stop moto, and it
    cannot while the page is more than one item (400 KB) below 1 MB."""
    if not query.limit or query.legacy_filter or not items:
        return items
    if items[0].range_key.type not in ("S", "N"):
        return items
    from moto.dynamodb.models.table import RESULT_SIZE_LIMIT

    walk = items if query.forward else items[::-1]
    chosen: list[Any] = []
    for position, item in enumerate(walk):
        if len(chosen) == query.limit:
            chosen.append(item)  # the page ends here, with a LastEvaluatedKey
            break
        if query.range_comparison is None or item.range_key.compare(
            query.range_comparison, query.range_objs
        ):
            chosen.append(item)
        elif chosen:
            page_bytes = sum(match.size() for match in chosen)
            if page_bytes + MAX_ITEM_BYTES > RESULT_SIZE_LIMIT:
                chosen.extend(walk[position:])  # let moto's own size check see them all
            break
    return chosen if query.forward else chosen[::-1]


def install() -> None:
    """Replace ``Table.all_items``; wrap ``Table.query``, and ``put_item`` so a partition's sort
    is redone after a put (idempotent)."""
    from moto.dynamodb.models.table import Table

    if _INSTALLED:
        return
    original = Table.all_items
    original_query = Table.query
    signature = inspect.signature(original_query)

    def all_items(self: Any) -> list[Any]:
        querying = getattr(_QUERYING, "partition", None)
        try:
            if querying is not None and querying.table is self:
                return _partition(querying)
            return _sorted_by_converted_keys(self)
        except TypeError:  # keys of different types: moto's comparison decides
            return original(self)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # moto passes its arguments by position; binding finds them wherever they are
        arguments = signature.bind(self, hash_key, *args, **kwargs).arguments
        if arguments.get("index_name") or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _QUERYING.partition = _Query(
            table=self,
            hash_key=hash_key,
            start=arguments.get("exclusive_start_key"),
            forward=arguments.get("scan_index_forward", True) is not False,
            limit=arguments.get("limit"),
            range_comparison=arguments.get("range_comparison"),
            range_objs=list(arguments.get("range_objs") or []),
            legacy_filter=bool(arguments.get("filter_kwargs")),
        )
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _QUERYING.partition = None

    original_put = Table.put_item

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        _note_write(self, item.hash_key)
        return item

    _INSTALLED.append(original)
    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table.put_item = put_item  # type: ignore[method-assign]
