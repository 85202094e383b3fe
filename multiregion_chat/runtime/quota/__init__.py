"""Client budgets (per-connection and per-user rates) and the per-user connection cap.

Modules are imported one by one (``from multiregion_chat.runtime.quota import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
