"""The tables' key schemas and index, in one place (no CDK import).

``infra.storage`` builds the tables from it and the handler tests create
their moto tables from it (tests/unit/conftest.py), so the two cannot drift.
The runtime's item layouts (docs/contracts.md) are written against these names.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONNECTIONS_BY_USER_INDEX",
    "CONNECTIONS_TABLE",
    "MESSAGES_TABLE",
    "TTL_ATTRIBUTE",
    "TableSchema",
]

# Epoch seconds; DynamoDB's TTL deletes expired connections, memberships,
# remote presence and history for free (no sweeper function).
TTL_ATTRIBUTE = "expiresAt"


@dataclass(frozen=True)
class TableSchema:
    """String partition and sort key, and global secondary indexes: name -> partition key."""

    partition_key: str
    sort_key: str
    indexes: tuple[tuple[str, str], ...] = ()


# A user's connections in this region (the server API's disconnect): a sparse
# index on META items only, which alone carry ``connectedUserId``; keys only.
CONNECTIONS_BY_USER_INDEX = "ConnectionsByUser"
CONNECTIONS_TABLE = TableSchema("pk", "sk", ((CONNECTIONS_BY_USER_INDEX, "connectedUserId"),))
MESSAGES_TABLE = TableSchema("room", "id")
