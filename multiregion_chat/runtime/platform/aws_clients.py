"""boto3 clients, created once per container and reused by every invocation.

Clients are built lazily on first use (not at import time) so that tests can
set the environment and start ``moto`` first; :func:`reset` drops them.
Low-level clients are used rather than resources because clients are
thread-safe (the fan-out's 410 cleanups run on worker threads).

Endpoints: boto3 itself honours ``AWS_ENDPOINT_URL_<SERVICE>`` (the local
sandbox points DynamoDB, EventBridge and SQS at local servers). The
``@connections`` API is not called through boto3: :mod:`runtime.delivery.engine` signs
and posts to the WebSocket API's ``CALLBACK_URL`` itself.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from multiregion_chat.runtime.platform import runtime_settings

if TYPE_CHECKING:  # the stubs are a dev dependency only
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["dynamodb", "events", "management", "reset", "s3", "sqs"]


def _standard_config(**extra: Any) -> Config:
    """botocore's standard retries (3 attempts) and short timeouts, plus ``extra``."""
    return Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 3},
        **extra,
    )


@functools.cache
def dynamodb() -> DynamoDBClient:
    settings = runtime_settings.get_settings()
    return boto3.client(
        "dynamodb",
        region_name=settings.region or None,
        config=_standard_config(max_pool_connections=max(10, settings.fanout_concurrency)),
    )


@functools.cache
def events() -> EventBridgeClient:
    # botocore retries a raising PutEvents (throttling, 5xx, network) itself;
    # runtime.platform.bus retries the entries a successful call reports as failed.
    region = runtime_settings.get_settings().region or None
    return boto3.client("events", region_name=region, config=_standard_config())


@functools.cache
def sqs() -> SQSClient:
    """The fan-out queue's client (shard jobs, hand-offs); botocore retries throttling."""
    return boto3.client(
        "sqs", region_name=runtime_settings.get_settings().region or None, config=_standard_config()
    )


@functools.cache
def management() -> ApiGatewayManagementApiClient:
    """The ``@connections`` API of this stage (ClientMessageHandler closes
    connections whose token expired; the fan-out posts with its own engine)."""
    settings = runtime_settings.get_settings()
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=settings.callback_endpoint,
        region_name=settings.region or None,
        config=_standard_config(),
    )


@functools.cache
def s3(region: str | None = None) -> Any:  # mypy-boto3-s3 is not among the dev stubs
    """An S3 client of ``region`` (default this one): attachments' HeadObject and presigned URLs
    (runtime.attachments.transfers). Presigning is local; a URL names the region's own endpoint."""
    return boto3.client(
        "s3",
        region_name=region or runtime_settings.get_settings().region or None,
        config=_standard_config(signature_version="s3v4"),
    )


# Captured here, not looked up at reset time, so that a test which replaces a
# factory on the module (monkeypatch) can still reset the real ones.
_FACTORIES = (dynamodb, events, management, s3, sqs)


def reset() -> None:
    """Drop every cached client (and the settings) so the next use rebuilds them."""
    for factory in _FACTORIES:
        factory.cache_clear()
    runtime_settings.reset()
