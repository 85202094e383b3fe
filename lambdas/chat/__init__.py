"""Shared runtime code of the chat Lambda handlers.

Modules (imported as ``chat.*``; the asset root ``lambdas/`` is on ``sys.path``):

* :mod:`chat.init_phase`         a handler's init without the cyclic GC, frozen at its end
* :mod:`chat.config`             typed settings read from the environment
* :mod:`chat.clients`            boto3 clients, created once per container
* :mod:`chat.observability`      Powertools Logger, Metrics and Tracer
* :mod:`chat.ids`                time-ordered message ids and time helpers
* :mod:`chat.json_codec`         strict JSON decoding and the compact encoding
* :mod:`chat.model`              rooms, senders, chat messages and presence events (bus schemas)
* :mod:`chat.frames`             client frame validation, server frames, error codes
* :mod:`chat.http_requests`      the HTTP fallback's ``POST`` body
* :mod:`chat.dynamo`             the tables' item layout and shared DynamoDB helpers
* :mod:`chat.connection_store`   connections, memberships, per-region user presence items
* :mod:`chat.room_store`         a room's members, presence and fan-out targets; remote presence
* :mod:`chat.history_store`      the messages (history) table
* :mod:`chat.bus`                publishing chat events to the region's bus
* :mod:`chat.fanout`             posting a frame to every local member of a room
* :mod:`chat.presence`           presence transitions published as ``chat.presence`` events
* :mod:`chat.identity`           the caller's user (the token authorizer's context only)
* :mod:`chat.claims`             identity limits and room patterns (standard library only)
* :mod:`chat.token_front_door`   the strict token parser every token passes first
* :mod:`chat.tokens`             token verification (HS256 with hmac, RS256/ES256 with PyJWT)
* :mod:`chat.jwks`               an OIDC issuer's keys, fetched and cached
* :mod:`chat.token_keys`         which keys verify tokens here (signing secret or JWKS)
* :mod:`chat.token_refresh`      ``refresh``: a fresh token extends an open connection
* :mod:`chat.token_expiry`       open connections honour their token's ``exp``

Only the standard library, boto3/botocore and what ``lambdas/requirements.txt``
pins (Powertools, aiohttp, PyJWT with cryptography: the dependencies layer) may
be imported here: the asset is deployed unbundled next to that layer.
PyJWT and cryptography come with chat.jwks alone: imported at init by an OIDC
deployment's authorizer (``JWT_ISSUER`` set), never in an HS256 deployment,
whose tokens chat.tokens verifies with hmac (tests/unit/test_jwt_layering.py).
chat.tokens and chat.token_keys are imported at init by the authorizer, and by
ClientMessageHandler on its first ``refresh`` (chat.token_refresh).
"""
