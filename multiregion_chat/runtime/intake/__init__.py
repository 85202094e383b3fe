"""The steps every client frame takes before its action runs, and a team's own actions.

Modules are imported one by one (``from multiregion_chat.runtime.intake import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
