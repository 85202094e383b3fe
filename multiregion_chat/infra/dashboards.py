"""CloudWatch dashboards: one per region, and a global one with every region side by side.

The regional dashboard shows what the region's alarms watch (infra/monitoring.py)
and the traffic around it: connections, messages in and out, the fan-out's
deliveries and failures, the EventBridge rules' failures and event age, the
dead-letter queues, throttles, errors and p99 durations. AWS metrics name the
region's own resources (function names, API ids, queue names, rule names).

The global dashboard lives in the primary region's stack and shows the
runtime's own metrics (namespace ``<appName>/<stage>``, dimension ``service``:
docs/contracts.md, "Metrics"), one line per region, each metric with its
``region`` set: those metrics have the same name and dimensions in every
region, so the primary stack can name them without knowing any other stack's
generated resource names (which it could only get through cross-region
references). It links to each region's dashboard for the AWS metrics.

Every metric name used here is one the handlers emit (tests/infra/test_dashboards.py
checks them against runtime/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

__all__ = [
    "CONNECTION_METRICS",
    "EVENT_AGE_METRIC",
    "FANOUT_METRICS",
    "GLOBAL_METRICS",
    "MESSAGE_METRICS",
    "RUNTIME_ERROR_METRICS",
    "ChatGlobalDashboard",
    "ChatRegionDashboard",
    "custom_bus_rule_name",
    "dashboard_url",
]

# The runtime's count metrics (runtime/, docs/contracts.md), by what they show.
CONNECTION_METRICS = ("Connections", "Disconnections", "RefusedConnections", "RefusedTokens")
MESSAGE_METRICS = ("MessagesAccepted", "DeliveredMessages")
FANOUT_METRICS = (
    "DeliveredMessages",
    "FailedDeliveries",
    "GoneConnections",
    "DeliveryRetries",
    "FanoutShards",
    "HandedOffConnections",
    "ShardFailures",
)
RUNTIME_ERROR_METRICS = (
    "InternalErrors",
    "PublishFailures",
    "PresencePublishFailures",
    "PresenceCountFailures",
    "FanoutErrors",
    "HistoryWriteFailures",
)
# Milliseconds from a message's acceptance (its id's timestamp) to its history
# write in the region that delivers it: the replication delay (p99 shown).
EVENT_AGE_METRIC = "EventAge"
# The global dashboard: one graph per count metric, one line per region.
GLOBAL_METRICS: tuple[tuple[str, str], ...] = (
    ("Connections", "Connections opened"),
    ("MessagesAccepted", "Messages in (accepted sends)"),
    ("DeliveredMessages", "Messages out (frames delivered)"),
    ("FailedDeliveries", "Failed deliveries"),
    ("GoneConnections", "Gone connections (410)"),
    ("DeliveryRetries", "@connections retries (throttled)"),
    ("ShardFailures", "Fan-out shard failures"),
    ("PublishFailures", "Publish failures"),
    ("InternalErrors", "Internal errors"),
    ("RefusedTokens", "Refused tokens"),
    ("AttachmentMessages", "Attachments sent (uploads referenced)"),
)

_PERIOD = Duration.minutes(5)
_WIDTH = 8  # three graphs per 24-unit row
_HEIGHT = 6


def dashboard_url(region: str, name: str) -> str:
    """The console address of dashboard ``name`` in ``region``."""
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards/dashboard/{name}"
    )


def custom_bus_rule_name(rule: events.IRule) -> str:
    """The name of ``rule`` (a rule on a custom bus) as its metrics' ``RuleName`` dimension.

    ``rule.rule_name`` is the rule's ``Ref``, and for a rule on a custom bus
    CloudFormation's ``Ref`` is ``<bus name>|<rule name>``, not the name
    (cloudformation-coverage-roadmap#1131): a metric with that dimension
    matches no data. The part after the ``|`` is the name.
    """
    return Fn.select(1, Fn.split("|", rule.rule_name))


def _runtime_metric(
    namespace: str,
    service: str,
    name: str,
    *,
    region: str | None = None,
    label: str | None = None,
    statistic: str = "Sum",
) -> cloudwatch.Metric:
    # Exactly the dimension set the handlers emit (Powertools' `service` only), or
    # the graph shows nothing (docs/contracts.md, "Metrics").
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=_PERIOD,
        region=region,
        label=label or name,
    )


def _graph(
    title: str, left: Sequence[cloudwatch.IMetric], **kwargs: object
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title,
        left=list(left),
        width=_WIDTH,
        height=_HEIGHT,
        **kwargs,  # type: ignore[arg-type]
    )


def _api_gateway_metric(
    api_id: str, stage: str, name: str, statistic: str, label: str
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/ApiGateway",
        metric_name=name,
        dimensions_map={"ApiId": api_id, "Stage": stage},
        statistic=statistic,
        period=_PERIOD,
        label=label,
    )


def _dashboard(
    scope: Construct,
    name: str,
    *,
    header: str,
    totals_title: str,
    totals: Sequence[cloudwatch.IMetric],
    rows: Sequence[Sequence[cloudwatch.IWidget]],
) -> cloudwatch.Dashboard:
    """The layout both dashboards share: a markdown header, one line of totals over the
    time range, then the rows of graphs."""
    return cloudwatch.Dashboard(
        scope,
        "Dashboard",
        dashboard_name=name,
        default_interval=Duration.hours(3),
        widgets=[
            [cloudwatch.TextWidget(markdown=header, width=24, height=2)],
            [
                cloudwatch.SingleValueWidget(
                    title=totals_title,
                    metrics=list(totals),
                    set_period_to_time_range=True,
                    width=24,
                    height=4,
                )
            ],
            *(list(row) for row in rows),
        ],
    )


class ChatRegionDashboard(Construct):
    """The region's dashboard.

    Attributes:
        dashboard: the ``Dashboard`` (named ``dashboard_name``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        functions: Mapping[str, lambda_.IFunction],
        queues: Mapping[str, sqs.IQueue],
        rules: Mapping[str, events.IRule],
        bus_name: str,
        bus_handler: lambda_.IFunction,
        api_id: str,
        api_stage_name: str,
        http_api_id: str,
        http_api_stage_name: str,
        metrics_namespace: str,
        service_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region

        def runtime(name: str) -> cloudwatch.Metric:
            return _runtime_metric(metrics_namespace, service_name, name)

        def api(name: str, statistic: str = "Sum", label: str | None = None) -> cloudwatch.Metric:
            return _api_gateway_metric(
                api_id, api_stage_name, name, statistic, label or f"WebSocket {name}"
            )

        def http(name: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return _api_gateway_metric(
                http_api_id, http_api_stage_name, name, statistic, f"HTTP {name}"
            )

        def rule_metric(
            rule_label: str, rule: events.IRule, name: str, statistic: str = "Sum"
        ) -> cloudwatch.Metric:
            # A custom bus's rules report under EventBusName + RuleName.
            return cloudwatch.Metric(
                namespace="AWS/Events",
                metric_name=name,
                dimensions_map={"EventBusName": bus_name, "RuleName": custom_bus_rule_name(rule)},
                statistic=statistic,
                period=_PERIOD,
                label=f"{rule_label} {name}",
            )

        traffic = [
            _graph(
                "Connections",
                [api("ConnectCount"), *(runtime(name) for name in CONNECTION_METRICS)],
            ),
            _graph(
                "Messages in and out",
                [
                    api("MessageCount", label="WebSocket MessageCount (frames in + out)"),
                    http("Count"),
                    *(runtime(name) for name in MESSAGE_METRICS),
                ],
            ),
            _graph("Fan-out deliveries and failures", [runtime(n) for n in FANOUT_METRICS]),
        ]
        delivery = [
            _graph(
                "EventBridge rules: failed and dead-lettered invocations",
                [
                    rule_metric(label, rule, name)
                    for label, rule in rules.items()
                    for name in ("FailedInvocations", "InvocationsSentToDlq")
                ],
            ),
            _graph(
                "Event age (p99, ms)",
                [
                    _runtime_metric(
                        metrics_namespace,
                        service_name,
                        EVENT_AGE_METRIC,
                        statistic="p99",
                        label="EventAge (accepted -> stored here)",
                    ),
                    *(
                        rule_metric(label, rule, "IngestiontoInvocationStartLatency", "p99")
                        for label, rule in rules.items()
                    ),
                    bus_handler.metric(
                        "AsyncEventAge",
                        statistic="p99",
                        period=_PERIOD,
                        label="EventBusMessageHandler AsyncEventAge",
                    ),
                ],
            ),
            _graph(
                "Dead-letter queue depth",
                [
                    queue.metric_approximate_number_of_messages_visible(
                        statistic="Maximum", period=_PERIOD, label=name
                    )
                    for name, queue in queues.items()
                ],
            ),
        ]
        health = [
            _graph(
                "Throttles",
                [
                    *(
                        function.metric_throttles(statistic="Sum", period=_PERIOD, label=name)
                        for name, function in functions.items()
                    ),
                    api("ClientError", label="WebSocket ClientError (incl. 429)"),
                    http("4xx"),
                    runtime("DeliveryRetries"),
                ],
            ),
            _graph(
                "Errors",
                [
                    *(
                        function.metric_errors(statistic="Sum", period=_PERIOD, label=name)
                        for name, function in functions.items()
                    ),
                    api("ExecutionError"),
                    api("IntegrationError"),
                    http("5xx"),
                    *(runtime(name) for name in RUNTIME_ERROR_METRICS),
                ],
            ),
            _graph(
                "p99 durations (ms)",
                [
                    *(
                        function.metric_duration(statistic="p99", period=_PERIOD, label=name)
                        for name, function in functions.items()
                    ),
                    api("IntegrationLatency", "p99"),
                    http("Latency", "p99"),
                ],
            ),
        ]
        self.dashboard = _dashboard(
            self,
            dashboard_name,
            header=(
                f"## {dashboard_name}\n"
                "Runtime metrics: docs/contracts.md (Metrics). Alarms: docs/operations.md. "
                "API Gateway counts a throttled request (429) as a client error / 4xx."
            ),
            totals_title=f"Totals over the time range ({region})",
            totals=[
                api("ConnectCount"),
                api("MessageCount"),
                runtime("MessagesAccepted"),
                runtime("DeliveredMessages"),
                runtime("FailedDeliveries"),
                runtime("InternalErrors"),
            ],
            rows=[traffic, delivery, health],
        )


class ChatGlobalDashboard(Construct):
    """Every region side by side: one graph per runtime metric, one line per region.

    Attributes:
        dashboard: the ``Dashboard`` (named ``dashboard_name``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        regional_dashboards: Mapping[str, str],
        metrics_namespace: str,
        service_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        regions = list(regional_dashboards)
        links = " | ".join(
            f"[{region}]({dashboard_url(region, name)})"
            for region, name in regional_dashboards.items()
        )

        def per_region(name: str) -> list[cloudwatch.IMetric]:
            return [
                _runtime_metric(metrics_namespace, service_name, name, region=r, label=r)
                for r in regions
            ]

        event_age = [
            _runtime_metric(
                metrics_namespace,
                service_name,
                EVENT_AGE_METRIC,
                region=r,
                label=r,
                statistic="p99",
            )
            for r in regions
        ]
        graphs = [
            _graph("Replication delay: EventAge p99 (ms)", event_age),
            *(_graph(title, per_region(name)) for name, title in GLOBAL_METRICS),
        ]
        self.dashboard = _dashboard(
            self,
            dashboard_name,
            header=(
                f"## {dashboard_name}: every region\n"
                f"Runtime metrics per region. Each region's own dashboard (API Gateway, "
                f"Lambda, EventBridge, queues): {links}"
            ),
            totals_title="Messages delivered per region over the time range",
            totals=per_region("DeliveredMessages"),
            rows=[graphs[i : i + 3] for i in range(0, len(graphs), 3)],
        )
