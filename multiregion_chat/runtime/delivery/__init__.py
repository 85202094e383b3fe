"""Getting a frame to the room's connections: the ``@connections`` engine, broadcast and
sharding, the fan-out queue, the region's request budget, the same-region fast path and
the HTTP fallback's long poll.

Modules are imported one by one (``from multiregion_chat.runtime.delivery import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
