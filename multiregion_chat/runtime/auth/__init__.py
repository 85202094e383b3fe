"""Who is calling and what their token allows: identity, token verification (HS256, OIDC),
keys, refresh and expiry.

Modules are imported one by one (``from multiregion_chat.runtime.auth import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
