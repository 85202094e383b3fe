"""Every AWS request the app's functions make, counted where the emulated services receive it.

Attribution is template-driven: each function's worker signs its requests with an access key
of its own, ``sandbox.<region>.<LogicalId>`` (:func:`function_access_key`), so the service
that receives a request knows which function of which region sent it, from the SigV4
``Authorization`` header alone (the credential scope also names the service and the region the
request went to). Requests signed with any other key (the sandbox's own: provisioning, the
queue pollers, the dead-letter writes) are not the app's and are not counted.

Counted by the receiving service's region, then the function (``LogicalId``, with
``@<its region>`` when it called another region), then ``<service>:<Operation>``: ``calls``,
and for DynamoDB ``readUnits`` / ``writeUnits``.

DynamoDB units are computed by the sandbox, not asked of moto: moto's ``ConsumedCapacity`` is a
constant (0.5 or 1 whatever the item), and injecting ``ReturnConsumedCapacity`` would change
the responses the handlers see. The rules are DynamoDB's published ones (item size = attribute
names + values, as moto's ``Item.size`` measures them):

* reads: 4 KB units, rounded up, at least one; eventually consistent reads count half;
  ``Query``/``Scan`` round the sum of the returned items (DynamoDB charges what it evaluated
  before a filter; the sandbox sees what is returned: a lower bound for filtered reads);
  ``BatchGetItem`` rounds each item; ``TransactGetItems`` counts twice (always consistent);
* writes: 1 KB units of the larger of the item before and after the write, rounded up, at
  least one, also when a condition fails; ``TransactWriteItems`` counts twice. The sizes
  before and after are read from moto's own tables (the counter runs inside moto's process).
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ACCESS_KEY_PREFIX = "sandbox."
READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024

ItemSize = Callable[[str, str, Mapping[str, Any]], int | None]  # (region, table, key) -> bytes


def function_access_key(region: str, logical_id: str) -> str:
    """The access key the worker of ``logical_id`` in ``region`` signs its requests with."""
    return f"{ACCESS_KEY_PREFIX}{region}.{logical_id}"


def credential_scope(authorization: str) -> list[str]:
    """``[access key, date, region, service, "aws4_request"]`` of a SigV4 ``Authorization``
    header (fewer parts when it is not one)."""
    return authorization.partition("Credential=")[2].split(",", 1)[0].strip().split("/")


def service_of(authorization: str) -> str:
    """The service a SigV4 request is signed for ("" when it is not one)."""
    scope = credential_scope(authorization)
    return scope[3] if len(scope) >= 5 else ""


def caller_of(authorization: str) -> tuple[str, str, str, str] | None:
    """(function region, logical id, service region, service) of a SigV4 ``Authorization``
    header signed with a function's access key; None for anything else."""
    scope = credential_scope(authorization)
    if len(scope) < 5 or not scope[0].startswith(ACCESS_KEY_PREFIX):
        return None
    function_region, _, logical_id = scope[0][len(ACCESS_KEY_PREFIX) :].partition(".")
    if not function_region or not logical_id:
        return None
    return function_region, logical_id, scope[2], scope[3]


# S3's REST operations the functions use, by method and whether the path names a key; a
# bucket subresource in the query (``?replication``) names its own operation.
_S3_OBJECT_OPERATIONS = {"HEAD": "HeadObject", "GET": "GetObject", "PUT": "PutObject"}
_S3_BUCKET_OPERATIONS = {"HEAD": "HeadBucket", "GET": "ListObjects", "PUT": "CreateBucket"}
_S3_SUBRESOURCES = {"replication": "BucketReplication", "versioning": "BucketVersioning"}
_S3_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}


def _s3_operation(method: str, path: str, query: str) -> str:
    """Path style (the sandbox's endpoint is an IP address): ``/<bucket>[/<key>]``."""
    names = {pair.partition("=")[0] for pair in query.split("&") if pair}
    for name, operation in _S3_SUBRESOURCES.items():
        if name in names and method in _S3_VERBS:
            return f"{_S3_VERBS[method]}{operation}"
    has_key = "/" in path.strip("/")
    table = _S3_OBJECT_OPERATIONS if has_key else _S3_BUCKET_OPERATIONS
    return table.get(method, f"{method} {'object' if has_key else 'bucket'}")


def operation_of(
    service: str, method: str, path: str, target: str, form: str, query: str = ""
) -> str:
    """The API operation of a request: its ``X-Amz-Target`` (JSON protocols), the ``Action``
    of a query-protocol body, for ``@connections`` the method (its REST API), for S3 the
    method, path and subresource."""
    if target:
        return target.rpartition(".")[2]
    if service == "s3":
        return _s3_operation(method, path, query)
    if service == "execute-api":
        name = {"POST": "PostToConnection", "GET": "GetConnection", "DELETE": "DeleteConnection"}
        return name.get(method, method)
    for pair in form.split("&"):
        key, _, value = pair.partition("=")
        if key == "Action":
            return value
    return f"{method} {path}"


class CallCounts:
    """Thread-safe counters: region -> function -> ``service:Operation`` -> figures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], dict[str, float]] = {}

    def record(
        self,
        caller: tuple[str, str, str, str],
        operation: str,
        read_units: float = 0.0,
        write_units: float = 0.0,
    ) -> None:
        function_region, logical_id, region, service = caller
        function = logical_id if function_region == region else f"{logical_id}@{function_region}"
        key = (region, function, f"{service}:{operation}")
        with self._lock:
            figures = self._counts.setdefault(key, {"calls": 0})
            figures["calls"] += 1
            if read_units or write_units or service == "dynamodb":
                figures["readUnits"] = figures.get("readUnits", 0.0) + read_units
                figures["writeUnits"] = figures.get("writeUnits", 0.0) + write_units

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        with self._lock:
            items = sorted(self._counts.items())
        tree: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for (region, function, operation), figures in items:
            tree.setdefault(region, {}).setdefault(function, {})[operation] = dict(figures)
        return tree


def merge(*trees: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> dict[str, Any]:
    """Snapshots of several counters (moto's, the sandbox's own services') as one."""
    merged: dict[str, Any] = {}
    for tree in trees:
        for region, functions in tree.items():
            for function, operations in functions.items():
                target = merged.setdefault(region, {}).setdefault(function, {})
                for operation, figures in operations.items():
                    into = target.setdefault(operation, {})
                    for name, value in figures.items():
                        into[name] = into.get(name, 0) + value
    return {region: dict(sorted(functions.items())) for region, functions in sorted(merged.items())}


def totals(tree: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> dict[str, Any]:
    """Per region and in all: calls, DynamoDB calls, read and write units."""
    per_region: dict[str, dict[str, float]] = defaultdict(
        lambda: {"calls": 0, "dynamodbCalls": 0, "readUnits": 0.0, "writeUnits": 0.0}
    )
    for region, functions in tree.items():
        for operations in functions.values():
            for operation, figures in operations.items():
                row = per_region[region]
                row["calls"] += figures.get("calls", 0)
                if operation.startswith("dynamodb:"):
                    row["dynamodbCalls"] += figures.get("calls", 0)
                row["readUnits"] += figures.get("readUnits", 0.0)
                row["writeUnits"] += figures.get("writeUnits", 0.0)
    everything = {
        name: sum(row[name] for row in per_region.values())
        for name in ("calls", "dynamodbCalls", "readUnits", "writeUnits")
    }
    return {"regions": dict(sorted(per_region.items())), "all": everything}


# --- DynamoDB units ------------------------------------------------------------------------


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


def _raw_size(item: Mapping[str, Any]) -> int:
    """An item's size in DynamoDB's terms, from its wire form (``{"name": {"S": "..."}}``)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind == "N":
        return len(str(inner))
    if kind in ("S", "B"):
        return len(str(inner).encode())
    if kind == "BOOL" or kind == "NULL":
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(part).encode()) for part in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(part) for part in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return 0


def _read_units(sizes: Iterable[int], consistent: bool, each: bool = False) -> float:
    factor = 1.0 if consistent else 0.5
    sizes = list(sizes)
    if each:
        return sum(_units(size, READ_UNIT_BYTES) * factor for size in sizes) or factor
    return _units(sum(sizes), READ_UNIT_BYTES) * factor


class DynamoDbUnits:
    """Read and write units of one DynamoDB request, from its body, moto's answer and the
    items' sizes before and after (``item_size`` reads moto's table)."""

    def __init__(self, item_size: ItemSize) -> None:
        self._item_size = item_size

    def before(self, region: str, operation: str, request: Mapping[str, Any]) -> list[int]:
        """Sizes of the items a write will touch, as they are before it (0: absent)."""
        return [self._item_size(region, t, k) or 0 for t, k in _written_keys(operation, request)]

    def units(
        self,
        region: str,
        operation: str,
        request: Mapping[str, Any],
        response: Mapping[str, Any],
        before: list[int],
    ) -> tuple[float, float]:
        consistent = bool(request.get("ConsistentRead"))
        if operation == "GetItem":
            item = response.get("Item")
            return _read_units([_raw_size(item)] if item else [0], consistent), 0.0
        if operation in ("Query", "Scan"):
            items = response.get("Items") or []
            return _read_units((_raw_size(i) for i in items), consistent), 0.0
        if operation == "BatchGetItem":
            sizes = [
                _raw_size(item)
                for items in (response.get("Responses") or {}).values()
                for item in items
            ]
            tables = request.get("RequestItems") or {}
            strong = all(bool(spec.get("ConsistentRead")) for spec in tables.values())
            return _read_units(sizes, strong, each=True), 0.0
        if operation == "TransactGetItems":
            sizes = [_raw_size(r.get("Item") or {}) for r in response.get("Responses") or []]
            return 2 * _read_units(sizes, True, each=True), 0.0
        keys = _written_keys(operation, request)
        if not keys:
            return 0.0, 0.0
        after = [self._item_size(region, table, key) or 0 for table, key in keys]
        written = sum(
            _units(max(old, new), WRITE_UNIT_BYTES) for old, new in zip(before, after, strict=True)
        )
        return 0.0, float(2 * written if operation == "TransactWriteItems" else written)


def _written_keys(
    operation: str, request: Mapping[str, Any]
) -> list[tuple[str, Mapping[str, Any]]]:
    """(table, key or whole item) of each item a write request touches."""
    table = str(request.get("TableName", ""))
    if operation == "PutItem":
        return [(table, request.get("Item") or {})]
    if operation in ("UpdateItem", "DeleteItem"):
        return [(table, request.get("Key") or {})]
    if operation == "BatchWriteItem":
        return [
            (name, _key_or_item(write))
            for name, writes in (request.get("RequestItems") or {}).items()
            for write in writes
        ]
    if operation == "TransactWriteItems":
        return [
            (str(spec.get("TableName", "")), spec.get("Item") or spec.get("Key") or {})
            for entry in request.get("TransactItems") or []
            for spec in entry.values()
        ]
    return []


def _key_or_item(write: Mapping[str, Any]) -> Mapping[str, Any]:
    if "PutRequest" in write:
        return write["PutRequest"].get("Item") or {}
    return (write.get("DeleteRequest") or {}).get("Key") or {}


# --- in moto's process: a WSGI wrapper ------------------------------------------------------

CALLS_PATH = "/_sandbox/calls"


class CountingApp:
    """Wraps moto's WSGI app: counts the functions' requests; ``GET /_sandbox/calls`` reads the
    counts, ``DELETE /_sandbox/calls`` resets them."""

    def __init__(self, app: Any, item_size: ItemSize) -> None:
        self.app = app
        self.counts = CallCounts()
        self._dynamodb = DynamoDbUnits(item_size)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CALLS_PATH:
            return self._control(environ, start_response)
        caller = caller_of(environ.get("HTTP_AUTHORIZATION", ""))
        if caller is None:
            return self.app(environ, start_response)
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service, region = caller[3], caller[2]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        form = body.decode(errors="replace") if not target and service != "s3" else ""
        operation = operation_of(
            service,
            environ.get("REQUEST_METHOD", ""),
            environ.get("PATH_INFO", ""),
            target,
            form,
            environ.get("QUERY_STRING", ""),
        )
        if service != "dynamodb":
            self.counts.record(caller, operation)
            return self.app(environ, start_response)
        request = _json_or_empty(body)
        before = self._dynamodb.before(region, operation, request)
        chunks = list(self.app(environ, start_response))
        response = _json_or_empty(b"".join(chunks))
        read, write = self._dynamodb.units(region, operation, request, response, before)
        self.counts.record(caller, operation, read, write)
        return chunks

    def _control(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method == "DELETE":
            self.counts.reset()
        elif method != "GET":
            start_response("405 Method Not Allowed", [("Content-Type", "application/json")])
            return [b'{"message": "GET or DELETE"}']
        body = json.dumps(self.counts.snapshot()).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]


def _json_or_empty(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def moto_item_size(account: str) -> ItemSize:
    """An item's size as moto stores it (None when the table or item is not there)."""

    def size(region: str, table: str, key: Mapping[str, Any]) -> int | None:
        from moto.dynamodb.models import dynamodb_backends

        try:
            backend = dynamodb_backends[account][region]
            schema = backend.get_table(table)
            names = (schema.hash_key_attr, schema.range_key_attr)
            wanted = {name: key[name] for name in names if name and name in key}
            item = backend.get_item(table, wanted)
        except Exception:  # no such table, a malformed key: moto answers the error itself
            return None
        return item.size() if item is not None else None

    return size


# --- in the sandbox's process: its own services (EventBridge, @connections) ----------------


def counting_middleware(counts: CallCounts) -> Any:
    """An aiohttp middleware that counts the functions' requests to one of the sandbox's own
    services (PutEvents, ``@connections``)."""
    from aiohttp import web

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        caller = caller_of(request.headers.get("Authorization", ""))
        if caller is not None:
            target = request.headers.get("X-Amz-Target", "")
            counts.record(caller, operation_of(caller[3], request.method, request.path, target, ""))
        return await handler(request)

    return count
