"""Alarms of one region and the SNS topic they notify.

What is alarmed and why:

* each function's ``Errors`` and ``Throttles``: a handler failing or being
  throttled means refused connections, lost acks or undelivered frames;
* each dead-letter queue holding a message: something was not delivered and
  needs a look (and a redrive);
* the WebSocket API's ``ExecutionError`` (API Gateway could not call the
  integration) and a burst of ``IntegrationError`` (the integration answered
  4XX/5XX; a few are normal, e.g. refused ``$connect`` requests);
* the HTTP API's ``5xx`` (HttpHandler failed or timed out, or API Gateway
  could not call it; 4xx are the clients' own errors and are not alarmed);
* the runtime's ``FailedDeliveries``, ``PublishFailures``,
  ``PresencePublishFailures``, ``PresenceCountFailures``, ``ShardFailures``,
  ``OversizedReplies`` and ``RateLimitErrors`` (names in
  docs/contracts.md, "Metrics").

Why the topic has its own KMS key: an alarm action publishes as the
CloudWatch service, not as a caller in this account, so CloudWatch itself
must be allowed to use the topic's key. The AWS-managed ``alias/aws/sns``
key's policy cannot be changed and does not allow that: every alarm action on
such a topic fails silently (the alarm history shows the failed action,
nothing else does). The customer managed key below lets
``cloudwatch.amazonaws.com`` encrypt for this account only, and the topic
policy lets it publish for this region's alarms only.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

__all__ = [
    "ALARMED_CUSTOM_METRICS",
    "ALARM_PUBLISHER",
    "INTEGRATION_ERROR_THRESHOLD",
    "ChatMonitoring",
]

# The service principal that performs alarm actions (publishes to the topic).
ALARM_PUBLISHER = "cloudwatch.amazonaws.com"

# Runtime metrics that must stay at zero (docs/contracts.md, "Metrics").
ALARMED_CUSTOM_METRICS: tuple[str, ...] = (
    "FailedDeliveries",
    "PublishFailures",
    "PresencePublishFailures",
    # A room's member count (runtime.presence.roster) was not updated, or its live/quiet
    # switch failed: memberCount drifts (bounded) and a big room may stay live.
    "PresenceCountFailures",
    # A fan-out shard failed (FanoutWorker reports it as a batch item failure, not
    # a Lambda error, so FanoutWorkerErrors does not see it); SQS retries it.
    "ShardFailures",
    # A reply the handler had to replace with an error because it would not fit
    # API Gateway's 128 KB (a bug: runtime.protocol.reply_limits keeps replies under it).
    "OversizedReplies",
    # The request budget could not be read or written (runtime.quota.client_budget lets the
    # request through): while it lasts, no client budget is enforced.
    "RateLimitErrors",
)

# IntegrationError counts every 4XX the handlers return on purpose (a refused
# $connect, for one): alarm on a burst, not on the first one.
INTEGRATION_ERROR_THRESHOLD = 10

_PERIOD = Duration.minutes(5)


class ChatMonitoring(Construct):
    """An encrypted SNS topic and every alarm of the region, all notifying the topic.

    Attributes:
        key: the topic's customer managed KMS key (rotated yearly); its policy
            lets CloudWatch use it on behalf of this account.
        topic: the alarm topic: SSE with ``key``, TLS only, and a policy that
            lets CloudWatch publish for this account's alarms in this region.
        alarms: every alarm, by construct id.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        queues: Mapping[str, sqs.IQueue],
        api_id: str,
        api_stage_name: str,
        http_api_id: str,
        http_api_stage_name: str,
        metrics_namespace: str,
        service_name: str,
        removal_policy: RemovalPolicy,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Alarm topic encryption; CloudWatch may use it to publish alarms",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            # Only used when removal_policy is DESTROY: the shortest wait KMS allows.
            pending_window=Duration.days(7),
        )
        # CloudWatch encrypts the notification with a data key of this key
        # (GenerateDataKey*) and SNS decrypts it for delivery (Decrypt); both
        # calls are made as CloudWatch, so its principal needs them.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal(ALARM_PUBLISHER)],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="Chat alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal(ALARM_PUBLISHER)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                # Confused-deputy guard: only alarms of this account and region.
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        for name, function in functions.items():
            self.add_function_alarms(name, function)
        for name, queue in queues.items():
            self.add_queue_alarm(name, queue)

        api_dimensions = {"ApiId": api_id, "Stage": api_stage_name}
        self._alarm(
            "WebSocketExecutionErrors",
            self._metric("AWS/ApiGateway", "ExecutionError", api_dimensions),
            "API Gateway could not invoke a WebSocket integration",
        )
        self._alarm(
            "WebSocketIntegrationErrors",
            self._metric("AWS/ApiGateway", "IntegrationError", api_dimensions),
            f"At least {INTEGRATION_ERROR_THRESHOLD} WebSocket integration 4XX/5XX in 5 min",
            threshold=INTEGRATION_ERROR_THRESHOLD,
        )
        self._alarm(
            "HttpApiServerErrors",
            self._metric(
                "AWS/ApiGateway", "5xx", {"ApiId": http_api_id, "Stage": http_api_stage_name}
            ),
            "The HTTP fallback API answered 5xx (HttpHandler failed or timed out)",
        )
        for metric_name in ALARMED_CUSTOM_METRICS:
            self._alarm(
                metric_name,
                self._metric(metrics_namespace, metric_name, {"service": service_name}),
                f"Runtime reported {metric_name}",
            )

    # ---- extension points ----------------------------------------------
    def add_function_alarms(self, name: str, function: lambda_.IFunction) -> None:
        """Alarms ``<name>Errors`` and ``<name>Throttles`` on ``function``."""
        self._alarm(
            f"{name}Errors",
            function.metric_errors(period=_PERIOD, statistic="Sum"),
            f"{name} invocations failed",
        )
        self._alarm(
            f"{name}Throttles",
            function.metric_throttles(period=_PERIOD, statistic="Sum"),
            f"{name} invocations were throttled",
        )

    def add_queue_alarm(self, name: str, queue: sqs.IQueue) -> None:
        """Alarm (``<name>NotEmpty``) as soon as ``queue`` (a dead-letter queue) holds a message."""
        self._alarm(
            f"{name}NotEmpty",
            queue.metric_approximate_number_of_messages_visible(
                period=_PERIOD, statistic="Maximum"
            ),
            f"{name} holds undelivered events: inspect and redrive",
        )

    def add_alarm(self, alarm_id: str, metric: cloudwatch.IMetric, description: str) -> None:
        """Alarm ``alarm_id`` as soon as ``metric`` (a 5-minute sum) reaches 1."""
        self._alarm(alarm_id, metric, description)

    def set_threshold(self, alarm_id: str, threshold: float) -> None:
        """Change one alarm's threshold (a per-region override); ``alarm_id`` as in ``alarms``."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            raise ValueError(f"no alarm {alarm_id!r}; alarms: {', '.join(sorted(self.alarms))}")
        cfn_alarm = alarm.node.default_child
        assert isinstance(cfn_alarm, cloudwatch.CfnAlarm)
        cfn_alarm.threshold = threshold

    @staticmethod
    def _metric(namespace: str, name: str, dimensions: Mapping[str, str]) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map=dict(dimensions),
            period=_PERIOD,
            statistic="Sum",
        )

    def _alarm(
        self, construct_id: str, metric: cloudwatch.IMetric, description: str, threshold: int = 1
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # No data means nothing happened: not an alarm.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        self.alarms[construct_id] = alarm
