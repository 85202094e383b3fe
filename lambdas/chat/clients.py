"""boto3 clients, created once per container and reused by every invocation.

Clients are built lazily on first use (not at import time) so that tests can
set the environment and start ``moto`` first; :func:`reset` drops them.
Low-level clients are used rather than resources because clients are
thread-safe (the fan-out shares one across its worker threads).

Endpoints: boto3 itself honours ``AWS_ENDPOINT_URL_<SERVICE>`` (the local
sandbox points DynamoDB and EventBridge at local servers). The management API
has no fixed endpoint: it is the WebSocket API's ``CALLBACK_URL``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from chat import config

if TYPE_CHECKING:  # the stubs are a dev dependency only
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["dynamodb", "events", "management_api", "reset", "sqs"]


@functools.cache
def dynamodb() -> DynamoDBClient:
    settings = config.get_settings()
    return boto3.client(
        "dynamodb",
        region_name=settings.region or None,
        config=Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"mode": "standard", "total_max_attempts": 3},
            max_pool_connections=max(10, settings.fanout_concurrency),
        ),
    )


@functools.cache
def events() -> EventBridgeClient:
    settings = config.get_settings()
    # botocore retries a raising PutEvents (throttling, 5xx, network) itself;
    # chat.bus retries the entries a successful call reports as failed.
    return boto3.client(
        "events",
        region_name=settings.region or None,
        config=Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"mode": "standard", "total_max_attempts": 3},
        ),
    )


@functools.cache
def management_api() -> ApiGatewayManagementApiClient:
    settings = config.get_settings()
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=settings.callback_endpoint,
        region_name=settings.region or None,
        config=Config(
            # One HTTP connection per fan-out worker: no worker waits for a socket.
            max_pool_connections=settings.fanout_concurrency,
            # total_max_attempts=1 turns botocore's own retries off. chat.fanout
            # retries throttling with backoff + jitter itself; if botocore also
            # retried, every one of our attempts would become up to N requests,
            # multiplying load exactly while API Gateway is asking us to slow down.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=2,
            read_timeout=3,
        ),
    )


@functools.cache
def sqs() -> SQSClient:
    """The fan-out queue's client (shard jobs, hand-offs); botocore retries throttling."""
    settings = config.get_settings()
    return boto3.client(
        "sqs",
        region_name=settings.region or None,
        config=Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"mode": "standard", "total_max_attempts": 3},
        ),
    )


# Captured here, not looked up at reset time, so that a test which replaces a
# factory on the module (monkeypatch) can still reset the real ones.
_FACTORIES = (dynamodb, events, management_api, sqs)


def reset() -> None:
    """Drop every cached client (and the settings) so the next use rebuilds them."""
    for factory in _FACTORIES:
        factory.cache_clear()
    config.reset()
