"""Access-log settings shared by the WebSocket and HTTP API stages."""

from __future__ import annotations

import json
from collections.abc import Mapping

import jsii
from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_logs as logs

__all__ = ["AccessLogSettings", "LogGroupArnDestination", "json_access_logs"]


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


@jsii.implements(apigwv2.IAccessLogDestination)
class LogGroupArnDestination:
    """A log group as an access-log destination, named by its ARN *without* the ``:*``.

    CDK's ``LogGroupLogDestination`` passes ``GetAtt LogGroup.Arn``, which ends
    with ``:*``; API Gateway stores the ARN without it, so CloudFormation's
    drift detection reports every stage as modified forever (aws-cdk#38816).
    """

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self.log_group = log_group

    def bind(self, stage: apigwv2.IStage) -> apigwv2.AccessLogDestinationConfig:
        arn = Stack.of(self.log_group).format_arn(
            service="logs",
            resource="log-group",
            resource_name=self.log_group.log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        return apigwv2.AccessLogDestinationConfig(destination_arn=arn)


def json_access_logs(log_group: logs.ILogGroup, fields: Mapping[str, str]) -> AccessLogSettings:
    """One JSON object per request, with ``fields`` (name -> ``$context`` variable)."""
    return AccessLogSettings(
        LogGroupArnDestination(log_group),
        apigateway.AccessLogFormat.custom(json.dumps(dict(fields))),
    )
