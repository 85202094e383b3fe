"""Presence transitions published on the bus, room sizes and the quiet mode of big rooms.

Modules are imported one by one (``from multiregion_chat.runtime.presence import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
