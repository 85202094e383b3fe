"""One region's deployment: composes the constructs and wires them together.

The constructs never reach into each other; every cross-construct reference
(table names, bus ARN, callback URL, the ``@connections`` permission, the
delivery target, what to alarm) is made here, in one place.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import CfnOutput, Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IValidation

from multiregion_chat.infra.attachments import ChatAttachments
from multiregion_chat.infra.auth import ChatAuth
from multiregion_chat.infra.config import CLOUDWATCH_LOG_RETENTION, ChatConfig, RegionOverrides
from multiregion_chat.infra.dashboards import ChatGlobalDashboard, ChatRegionDashboard
from multiregion_chat.infra.fanout import ChatFanout
from multiregion_chat.infra.functions import SERVICE_NAME, ChatFunctions
from multiregion_chat.infra.global_endpoint import ChatGlobalEndpoint
from multiregion_chat.infra.http_api import ChatHttpApi
from multiregion_chat.infra.monitoring import ChatMonitoring
from multiregion_chat.infra.replication import ChatReplication
from multiregion_chat.infra.server_api import ChatServerApi
from multiregion_chat.infra.storage import ChatStorage
from multiregion_chat.infra.websocket_api import ChatWebSocketApi

__all__ = ["ChatRegionStack", "log_retention"]


def log_retention(days: int) -> logs.RetentionDays:
    """The ``RetentionDays`` member for ``days`` (validated by ChatConfig)."""
    return logs.RetentionDays[CLOUDWATCH_LOG_RETENTION[days]]


class ChatRegionStack(Stack):
    """Everything one region runs: API, functions, tables, bus, rules, alarms.

    Attributes:
        config, region_name, overrides: what the stack was built from.
        removal_policy, log_retention: what its tables, queues and log groups get.
        storage, attachments, functions, auth, api (WebSocket), http_api, server_api,
            replication, fanout, monitoring, dashboard: the constructs.
        global_dashboard: every region side by side (primary region only, else None).
        global_endpoint: custom domains and latency records (None without domainName).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ChatConfig,
        region: str,
        overrides: RegionOverrides | None = None,
        **kwargs: Any,
    ) -> None:
        if region not in config.regions:
            raise ValueError(f"{region} is not one of the configured regions {config.regions}")
        # Region only: the account stays a deploy-time value (env-agnostic on
        # the account axis), so synth needs no credentials.
        kwargs.setdefault("env", Environment(region=region))
        kwargs.setdefault("stack_name", config.stack_name(region))
        kwargs.setdefault(
            "description", f"Multi-region chat '{config.app_name}' ({config.stage}) in {region}"
        )
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.region_name = region
        self.overrides = overrides or RegionOverrides()
        self._applied_overrides: set[str] = set()
        self.node.add_validation(_UnusedOverrides(self))
        throttle_rate_limit = self.overrides.throttle_rate_limit or config.throttle_rate_limit
        throttle_burst_limit = self.overrides.throttle_burst_limit or config.throttle_burst_limit
        Tags.of(self).add("app", config.app_name)
        Tags.of(self).add("stage", config.stage)
        # cfn-lint checks a template against one region's CloudFormation
        # registry, us-east-1's unless told: this one is deployed here.
        self.template_options.metadata = {"cfn-lint": {"config": {"regions": [region]}}}

        removal = (
            RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY
        )
        retention = log_retention(config.log_retention_days)
        self.removal_policy = removal
        self.log_retention = retention

        self.storage = ChatStorage(self, "Storage", removal_policy=removal)
        self.replication = ChatReplication(
            self,
            "Replication",
            bus_name=config.bus_name,
            event_sources=config.chat_event_sources,
            region=region,
            other_regions=config.other_regions(region),
            removal_policy=removal,
        )
        self.functions = ChatFunctions(
            self,
            "Functions",
            config=config,
            connections_table=self.storage.connections_table,
            messages_table=self.storage.messages_table,
            event_bus=self.replication.event_bus,
            removal_policy=removal,
            log_retention=retention,
        )
        self.attachments = ChatAttachments(
            self,
            "Attachments",
            config=config,
            region=region,
            defaults=self.functions.defaults,
            removal_policy=removal,
        )
        self.attachments.grant_members(self.functions.client_message_handler)
        self.auth = ChatAuth(
            self,
            "Auth",
            config=config,
            region=region,
            authorizer_function=self.functions.authorizer,
            removal_policy=removal,
        )
        if self.auth.secret_arn_for_policy is not None:
            self.functions.allow_read_signing_secret(self.auth.secret_arn_for_policy)
        self.api = ChatWebSocketApi(
            self,
            "WebSocket",
            api_name=f"{config.app_name}-{config.stage}-websocket",
            connection_handler=self.functions.connection_handler,
            client_message_handler=self.functions.client_message_handler,
            connect_authorizer=self.auth.websocket_authorizer,
            stage_name=config.stage,
            throttle_rate_limit=throttle_rate_limit,
            throttle_burst_limit=throttle_burst_limit,
            log_retention=retention,
            removal_policy=removal,
            manage_account_role=config.api_gateway_account_role,
        )

        self.http_api = ChatHttpApi(
            self,
            "Http",
            api_name=f"{config.app_name}-{config.stage}-http",
            http_handler=self.functions.http_handler,
            authorizer=self.auth.http_authorizer,
            cors_origins=config.http_cors_origins,
            throttle_rate_limit=throttle_rate_limit,
            throttle_burst_limit=throttle_burst_limit,
            log_retention=retention,
            removal_policy=removal,
        )

        # The server API: IAM-authorized routes on the HTTP API for the team's backends.
        self.server_api = ChatServerApi(
            self,
            "ServerApi",
            http_api=self.http_api.api,
            defaults=self.functions.defaults,
            environment={**self.functions.environment, "CALLBACK_URL": self.api.callback_url},
            event_bus=self.replication.event_bus,
            event_source=config.event_source,
            connections_table=self.storage.connections_table,
            removal_policy=removal,
        )
        self.server_api.allow_disconnect(self.api.close_connections_arn)

        # The optional global endpoint (domainName + hostedZoneId).
        self.global_endpoint: ChatGlobalEndpoint | None = None
        if config.domain_name and config.hosted_zone_id:
            assert config.global_websocket_domain and config.global_http_domain
            assert self.functions.health_handler is not None
            self.global_endpoint = ChatGlobalEndpoint(
                self,
                "GlobalEndpoint",
                domain_name=config.domain_name,
                hosted_zone_id=config.hosted_zone_id,
                websocket_domain_name=config.global_websocket_domain,
                http_domain_name=config.global_http_domain,
                websocket_api=self.api.api,
                websocket_stage=self.api.stage,
                http_api=self.http_api.api,
                http_stage=self.http_api.stage,
                health_handler=self.functions.health_handler,
            )

        # Fan-out: EventBusMessageHandler posts to this API's connections
        # itself, or shards a big room's members onto the fan-out queue. It
        # reads the members, so it also closes those whose token expired
        # (the ``token_expired`` frame, then DELETE).
        bus_handler = self.functions.event_bus_message_handler
        bus_handler.add_environment("CALLBACK_URL", self.api.callback_url)
        self.functions.allow_manage_connections(
            self.api.manage_connections_arn, bus_handler, self.api.close_connections_arn
        )
        self.replication.add_delivery_target(bus_handler)
        # ClientMessageHandler closes connections whose token expired: it
        # pushes the ``token_expired`` frame (POST), then closes (DELETE).
        client_handler = self.functions.client_message_handler
        client_handler.add_environment("CALLBACK_URL", self.api.callback_url)
        self.functions.allow_manage_connections(
            self.api.manage_connections_arn, client_handler, self.api.close_connections_arn
        )
        self.fanout = ChatFanout(
            self,
            "Fanout",
            defaults=self.functions.defaults,
            environment={**self.functions.environment, "CALLBACK_URL": self.api.callback_url},
            connections_table=self.storage.connections_table,
            event_bus=self.replication.event_bus,
            event_source=config.event_source,
            memory_size=config.fanout_memory_mb,
            max_workers=config.fanout_max_workers,
            removal_policy=removal,
        )
        self.fanout.allow_send_jobs(bus_handler)
        self.functions.allow_manage_connections(self.api.manage_connections_arn, self.fanout.worker)

        monitored_functions = self.builtin_functions
        dead_letter_queues = {
            "ReplicationDeadLetterQueue": self.replication.dead_letter_queue,
            "EventBusMessageHandlerFailureQueue": self.functions.async_failure_queue,
            "FanoutDeadLetterQueue": self.fanout.dead_letter_queue,
            "ServerApiDisconnectsDeadLetterQueue": (
                self.server_api.disconnect_consumer.dead_letter_queue
            ),
        }
        self.monitoring = ChatMonitoring(
            self,
            "Monitoring",
            functions=monitored_functions,
            queues=dead_letter_queues,
            api_id=self.api.api.api_id,
            api_stage_name=config.stage,
            http_api_id=self.http_api.api.api_id,
            http_api_stage_name=self.http_api.stage.stage_name,
            metrics_namespace=config.metrics_namespace,
            service_name=SERVICE_NAME,
            removal_policy=removal,
            alarm_email=config.alarm_email,
        )
        self.dashboard = ChatRegionDashboard(
            self,
            "Dashboard",
            dashboard_name=config.dashboard_name(region),
            functions=monitored_functions,
            queues=dead_letter_queues,
            rules={
                "Delivery": self.replication.delivery_rule,
                **{
                    f"Forwarding{number}": rule
                    for number, rule in enumerate(self.replication.forwarding_rules, start=1)
                },
                "ServerApiDisconnects": self.server_api.disconnect_consumer.rule,
            },
            bus_name=config.bus_name,
            bus_handler=bus_handler,
            api_id=self.api.api.api_id,
            api_stage_name=config.stage,
            http_api_id=self.http_api.api.api_id,
            http_api_stage_name=self.http_api.stage.stage_name,
            metrics_namespace=config.metrics_namespace,
            service_name=SERVICE_NAME,
        )
        # The global dashboard: one per deployment, beside the primary's resources.
        self.global_dashboard: ChatGlobalDashboard | None = None
        if region == config.primary_region:
            self.global_dashboard = ChatGlobalDashboard(
                self,
                "GlobalDashboard",
                dashboard_name=config.global_dashboard_name,
                regional_dashboards={r: config.dashboard_name(r) for r in config.regions},
                metrics_namespace=config.metrics_namespace,
                service_name=SERVICE_NAME,
            )

        for destination in config.other_regions(region):
            self.monitoring.add_alarm(
                f"AttachmentReplicationFailedTo-{destination}",
                self.attachments.replication_metric("OperationsFailedReplication", destination),
                f"S3 could not replicate attachments to {destination}: see docs/operations.md",
            )
        self.dashboard.dashboard.add_widgets(
            *self.attachments.dashboard_widgets(config.metrics_namespace, SERVICE_NAME)
        )

        for name, function in self.builtin_functions.items():
            self.apply_memory_override(name, function)
        for alarm_id in self.monitoring.alarms:
            self.apply_alarm_override(alarm_id)

        self._outputs()

    def _outputs(self) -> None:
        """The stack's outputs: URLs, names and the alarm topic."""
        config = self.config
        CfnOutput(self, "WebSocketUrl", value=self.api.url, description="Clients connect here")
        CfnOutput(
            self,
            "HttpUrl",
            value=self.http_api.url,
            description="HTTP fallback API base URL (append rooms/<room>/messages)",
        )
        CfnOutput(
            self, "CallbackUrl", value=self.api.callback_url, description="@connections endpoint"
        )
        CfnOutput(self, "BusName", value=self.replication.event_bus.event_bus_name)
        if config.jwt_issuer and config.jwt_audience:
            # What clients and tools (the local sandbox's --oidc) need to know.
            CfnOutput(self, "TokenIssuer", value=config.jwt_issuer, description="iss of tokens")
            CfnOutput(self, "TokenAudience", value=config.jwt_audience, description="aud of tokens")
        else:
            CfnOutput(
                self,
                "SigningSecretName",
                value=config.signing_secret_id,
                description="Secrets Manager secret that signs the tokens (same in every region)",
            )
        CfnOutput(self, "ConnectionsTableName", value=self.storage.connections_table.table_name)
        CfnOutput(self, "MessagesTableName", value=self.storage.messages_table.table_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(
            self,
            "AttachmentBucketName",
            value=self.attachments.bucket.bucket_name,
            description="Attachments of this region (replicated to every other region's)",
        )
        if self.global_endpoint is not None:
            CfnOutput(
                self,
                "GlobalWebSocketUrl",
                value=self.global_endpoint.websocket_url,
                description="Clients connect here: the nearest healthy region",
            )
            CfnOutput(
                self,
                "GlobalHttpUrl",
                value=self.global_endpoint.http_url,
                description="HTTP fallback API of the nearest healthy region",
            )

    @property
    def builtin_functions(self) -> dict[str, lambda_.Function]:
        """Every function of the app in this region, by name (the authorizer included)."""
        return {
            **self.functions.functions,
            "FanoutWorker": self.fanout.worker,
            "ServerApi": self.server_api.function,
            "AttachmentReplicationSetup": self.attachments.setup_function,
        }

    # ---- per-region overrides (RegionOverrides) -------------------------
    def apply_memory_override(self, name: str, function: lambda_.Function) -> None:
        """Give ``function`` the memory ``overrides.memory_size[name]``, if there is one."""
        memory = self.overrides.memory_size.get(name)
        if memory is None:
            return
        cfn_function = function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.memory_size = memory
        self._applied_overrides.add(f"memory_size[{name!r}]")

    def apply_alarm_override(self, alarm_id: str) -> None:
        """Set alarm ``alarm_id``'s ``overrides.alarm_thresholds`` entry, if it has one."""
        threshold = self.overrides.alarm_thresholds.get(alarm_id)
        if threshold is None:
            return
        self.monitoring.set_threshold(alarm_id, threshold)
        self._applied_overrides.add(f"alarm_thresholds[{alarm_id!r}]")

    def unused_overrides(self) -> list[str]:
        """Override entries that named no function or alarm of this stack."""
        named = [f"memory_size[{name!r}]" for name in self.overrides.memory_size] + [
            f"alarm_thresholds[{name!r}]" for name in self.overrides.alarm_thresholds
        ]
        return [entry for entry in named if entry not in self._applied_overrides]


@jsii.implements(IValidation)
class _UnusedOverrides:
    """Fails synth when a RegionOverrides entry names no function or alarm (a typo)."""

    def __init__(self, stack: ChatRegionStack) -> None:
        self.stack = stack

    def validate(self) -> list[str]:
        return [
            f"RegionOverrides for {self.stack.region_name}: {entry} names nothing in the stack"
            for entry in self.stack.unused_overrides()
        ]
