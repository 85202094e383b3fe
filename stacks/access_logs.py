"""Access-log settings shared by the WebSocket and HTTP API stages."""

from __future__ import annotations

import json
from collections.abc import Mapping

import jsii
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_logs as logs

__all__ = ["AccessLogSettings", "json_access_logs"]


@jsii.implements(apigwv2.IAccessLogSettings)
class AccessLogSettings:
    """``IAccessLogSettings`` is a jsii interface, not a struct: Python implements it."""

    def __init__(
        self, destination: apigwv2.IAccessLogDestination, log_format: apigateway.AccessLogFormat
    ) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return self._format


def json_access_logs(log_group: logs.ILogGroup, fields: Mapping[str, str]) -> AccessLogSettings:
    """One JSON object per request, with ``fields`` (name -> ``$context`` variable)."""
    return AccessLogSettings(
        apigwv2.LogGroupLogDestination(log_group),
        apigateway.AccessLogFormat.custom(json.dumps(dict(fields))),
    )
