"""The functions' code: handlers and the runtime they share, grouped by concern.

The code asset of every function is this package with the package root's ``__init__``
(:mod:`infra.code_asset`); handler strings name
``runtime.handlers.<module>.handler``.

Groups, each importing only those before it (tests/unit/test_module_layering.py):

* :mod:`~runtime.protocol`     frames, HTTP bodies, ids, JSON, claims, reply limits
* :mod:`~runtime.platform`     settings, AWS clients, observability, retry, bus
* :mod:`~runtime.store`        the tables' items: connections, rooms, history, sequences
* :mod:`~runtime.quota`        client budgets and the connection cap
* :mod:`~runtime.presence`     presence transitions and room sizes
* :mod:`~runtime.auth`         identity and tokens: verification, keys, refresh, expiry
* :mod:`~runtime.delivery`     the ``@connections`` engine, broadcast, fan-out queue
* :mod:`~runtime.intake`       the steps of every client frame; a team's own actions
* :mod:`~runtime.attachments`  upload slots and download URLs
* :mod:`~runtime.handlers`     one module per function

Only the standard library, boto3/botocore and what ``runtime/requirements.txt``
pins (Powertools, aiohttp, PyJWT with cryptography: the dependencies layer) may be imported
here: the asset is deployed unbundled next to that layer. PyJWT and cryptography come with
:mod:`runtime.auth.jwks` alone: imported at init by an OIDC deployment's
authorizer (``JWT_ISSUER`` set), never in an HS256 deployment, whose tokens
:mod:`runtime.auth.tokens` verifies with hmac (tests/unit/test_jwt_layering.py).
"""
