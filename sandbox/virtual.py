"""Client helpers for virtual connections: members that exist only as table items.

A benchmark (or a test) makes a big room without sockets in three steps:

1. ``ids = virtual_ids(5000)``;
2. ``register(management_url, ids)``: the region's ``@connections`` API accepts posts to these
   ids (200, after ``--mgmt-latency-ms`` and ``--mgmt-rate-limit``) and counts them;
3. ``seed_room(table, room, ids, endpoint_url=..., region=...)``: writes the membership items
   the app's fan-out reads and the per-user presence items its member lists and first-join /
   last-leave decisions read, laid out as ``runtime.store.connection_store.join_room`` (and
   ``put_connection``) write them.

Then send one message through the app and read ``summary(management_url)`` until
``posts`` reaches the count. ``management_url`` is the region's ``management`` URL from the
endpoints file (the stage suffix is ignored: the control routes live at the port's root).
Standard library plus boto3 (for the table), nothing of the app's code.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TTL_SECONDS = 3 * 3600  # runtime.platform.runtime_settings's CONNECTION_TTL_SECONDS default
_BATCH = 25  # BatchWriteItem's maximum


def virtual_ids(count: int, prefix: str = "virtual-") -> list[str]:
    """``count`` distinct connection ids (``virtual-000000``, ...), never a real id's shape."""
    return [f"{prefix}{index:06d}" for index in range(count)]


def _control_url(management_url: str, route: str) -> str:
    parts = urlsplit(management_url)
    return f"{parts.scheme}://{parts.netloc}/_sandbox/{route}"


def _request(method: str, url: str, document: Any = None, timeout: float = 30.0) -> Any:
    data = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def register(management_url: str, ids: Sequence[str]) -> dict[str, int]:
    """Make ``ids`` virtual connections of that region: ``{"added": n, "registered": total}``."""
    return dict(
        _request("POST", _control_url(management_url, "virtual-connections"), {"ids": list(ids)})
    )


def summary(management_url: str, detail: bool = False) -> dict[str, Any]:
    """Posts to the virtual connections so far (see docs/sandbox.md for the keys)."""
    suffix = "?detail=1" if detail else ""
    return dict(_request("GET", _control_url(management_url, "virtual-connections") + suffix))


def reset(management_url: str) -> dict[str, int]:
    """Forget every virtual connection and its counts: ``{"removed": n}``."""
    return dict(_request("DELETE", _control_url(management_url, "virtual-connections")))


def management_stats(management_url: str, reset_counters: bool = False) -> dict[str, Any]:
    """The region's ``@connections`` counters, limit and sliding-window peak (reset on ask)."""
    method = "DELETE" if reset_counters else "GET"
    return dict(_request(method, _control_url(management_url, "management")))


def wait_for_posts(
    management_url: str, posts: int, timeout: float, interval: float = 0.05
) -> dict[str, Any]:
    """Poll :func:`summary` until ``posts`` posts were counted or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = summary(management_url)
        if found["posts"] >= posts or time.monotonic() >= deadline:
            return found
        time.sleep(interval)


def function_variable(cdk_out: Path, region: str, name: str) -> str:
    """An environment variable of the region's functions as the sandbox resolves it, e.g.
    ``CONNECTIONS_TABLE``: the table names without knowing the handlers."""
    from sandbox.assembly import load_stacks
    from sandbox.template_model import build_models

    (model,) = build_models(load_stacks(cdk_out), [region])
    for spec in model.functions.values():
        if spec.environment.get(name):
            return spec.environment[name]
    raise KeyError(f"no function of {region} has the environment variable {name}")


def http_route_path(cdk_out: Path, region: str, handler: str) -> str:
    """The path of the region's HTTP API route served by ``handler`` (e.g.
    ``runtime.handlers.health_handler.handler``), resolved as the sandbox serves it: the global
    endpoint's health path carries a key known only once the stack exists (its stack id)."""
    from sandbox.assembly import load_stacks
    from sandbox.template_model import build_models

    (model,) = build_models(load_stacks(cdk_out), [region])
    if model.http is None:
        raise KeyError(f"{region} has no HTTP API")
    for route in model.http.routes.values():
        if model.functions[route.function].handler == handler:
            return route.route_key.partition(" ")[2]
    raise KeyError(f"no HTTP route of {region} is served by {handler}")


def seed_room(
    table: str,
    room: str,
    ids: Sequence[str],
    *,
    endpoint_url: str,
    region: str,
    user_id: Callable[[str], str] = lambda connection_id: f"user-{connection_id}",
    with_meta: bool = True,
    with_count: bool = True,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
) -> int:
    """Write ``ROOM#<room>/CONN#<id>`` memberships, one ``ROOM#<room>/USER#<userId>`` item per
    distinct user (``c:<id>`` = the expiry of each of its connections, ``v``, ``expiresAt``) and
    each id's ``CONN#<id>/META`` when ``with_meta``, as ``runtime.store.connection_store`` writes
    them on ``$connect`` and ``join``, and with ``with_count`` add the distinct users to
    ``n:<region>`` of the room's ``ROOM#<room>/COUNT`` item as ``runtime.presence.roster`` keeps it
    (its ``quiet`` flag is left to the app); returns the number of items written (memberships, user
    items and META; not the count). The user items overwrite any of the room's existing ones for
    these users. ``endpoint_url``: the endpoints file's ``dynamodb``."""
    import boto3

    from sandbox.aws_local import FAKE_CREDENTIALS

    client = boto3.session.Session().client(
        "dynamodb",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    )
    now = time.time()
    ms = int(now * 1000)
    at = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    expires = {"N": str(int(now) + ttl_seconds)}
    items: list[dict[str, Any]] = []
    users: dict[str, dict[str, Any]] = {}
    for connection_id in ids:
        user = {"S": user_id(connection_id)}
        entry = users.setdefault(
            user["S"],
            {
                "pk": {"S": f"ROOM#{room}"},
                "sk": {"S": f"USER#{user['S']}"},
                "userId": user,
                "v": {"N": "1"},
                "expiresAt": expires,
            },
        )
        entry[f"c:{connection_id}"] = expires
        if with_meta:
            items.append(
                {
                    "pk": {"S": f"CONN#{connection_id}"},
                    "sk": {"S": "META"},
                    "userId": user,
                    "connectedAt": {"S": at},
                    "rooms": {"SS": [room]},
                    "expiresAt": expires,
                }
            )
        items.append(
            {
                "pk": {"S": f"ROOM#{room}"},
                "sk": {"S": f"CONN#{connection_id}"},
                "connectionId": {"S": connection_id},
                "userId": user,
                "joinedAt": {"S": at},
                "presenceAt": {"N": str(int(now))},
                "expiresAt": expires,
            }
        )
    items.extend(users.values())
    for start in range(0, len(items), _BATCH):
        pending: dict[str, Any] = {
            table: [{"PutRequest": {"Item": item}} for item in items[start : start + _BATCH]]
        }
        for attempt in range(10):
            answer = client.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                break
            time.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError(f"seed_room: DynamoDB kept items unprocessed in {table}")
    if with_count and ids:
        client.update_item(
            TableName=table,
            Key={"pk": {"S": f"ROOM#{room}"}, "sk": {"S": "COUNT"}},
            UpdateExpression="ADD #n :users, v :one SET expiresAt = :exp",
            ExpressionAttributeNames={"#n": f"n:{region}"},
            ExpressionAttributeValues={
                ":users": {"N": str(len({user_id(i) for i in ids}))},
                ":one": {"N": "1"},
                ":exp": expires,
            },
        )
    return len(items)
