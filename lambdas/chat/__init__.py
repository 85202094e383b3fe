"""Shared runtime code of the chat Lambda handlers.

Modules (imported as ``chat.*``; the asset root ``lambdas/`` is on ``sys.path``):

* :mod:`chat.config`        typed settings read from the environment
* :mod:`chat.clients`       boto3 clients, created once per container
* :mod:`chat.observability` Powertools Logger, Metrics and Tracer
* :mod:`chat.ids`           time-ordered message ids and time helpers
* :mod:`chat.protocol`      client frame validation and server frame builders
* :mod:`chat.store`         DynamoDB access (connections and history tables)
* :mod:`chat.bus`           publishing chat events to the region's bus
* :mod:`chat.fanout`        posting a frame to every local member of a room
* :mod:`chat.presence`      presence transitions published as ``chat.presence`` events
* :mod:`chat.identity`      the caller's user (the token authorizer's context only)
* :mod:`chat.tokens`        HS256 token verification and room patterns (the authorizer)

Only the standard library, boto3/botocore and ``aws_lambda_powertools`` may be
imported here: the asset is deployed unbundled next to the Powertools layer.
"""
