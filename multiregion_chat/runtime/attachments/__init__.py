"""Attachments: upload slots, the check of a ``send`` that references one, download URLs.

Modules are imported one by one (``from multiregion_chat.runtime.attachments import <module>``),
never
all at once: what a handler loads at init is its cold start.
"""
