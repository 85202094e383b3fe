"""The two DynamoDB tables: item layout, connections and memberships, a room's members,
history, per-sender sequences and fan-out shard progress.

Modules are imported one by one (``from multiregion_chat.runtime.store import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
