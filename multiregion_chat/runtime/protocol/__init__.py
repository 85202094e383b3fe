"""The wire protocol and the chat data it carries: frames, HTTP bodies, actions, ids, JSON,
claims and room patterns, reply limits.

Standard library only, and nothing else from the runtime: the lowest layer, which the stacks
and the clients may load too (tests/unit/test_module_layering.py).

Modules are imported one by one (``from multiregion_chat.runtime.protocol import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
