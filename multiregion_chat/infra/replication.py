"""The region's chat bus and its share of the global full-mesh replication.

Loop-freedom is a property of the rule patterns, not of EventBridge's hop
limit: a forwarding rule matches only events whose ``detail.originRegion`` is
*this* region, and the receiving region's forwarding rules match only *its*
own region, so a forwarded event is delivered there and never forwarded again.
``tests/infra/test_replication_moto.py`` proves it in moto, which has no hop
limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from multiregion_chat.infra.storage import dead_letter_queue

__all__ = [
    "MAX_TARGETS_PER_RULE",
    "RETRY_ATTEMPTS",
    "RETRY_MAX_EVENT_AGE",
    "ChatReplication",
]

# EventBridge quota: at most 5 targets per rule.
MAX_TARGETS_PER_RULE = 5

# EventBridge's own maxima, set explicitly. History is what a rejoining client
# catches up from (`after`), so an event that is hours late is still worth
# delivering; whatever exhausts these lands in the dead-letter queue.
RETRY_MAX_EVENT_AGE = Duration.hours(24)
RETRY_ATTEMPTS = 185


def grant_put_chat_events(
    event_bus: events.IEventBus, grantee: iam.IGrantable, sources: Sequence[str]
) -> iam.Grant:
    """``events:PutEvents`` on the chat bus, only for events whose ``source`` is in ``sources``.

    The condition (``events:source``) is what makes the server API's source
    mean "from ServerApi": no other function of the app can put an event
    with it, so a ``system:`` sender in any other event is forged
    (EventBusMessageHandler drops it).
    """
    return iam.Grant.add_to_principal(
        grantee=grantee,
        actions=["events:PutEvents"],
        resource_arns=[event_bus.event_bus_arn],
        conditions={"StringEquals": {"events:source": list(sources)}},
    )


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class ChatReplication(Construct):
    """Chat bus, delivery rule, forwarding rules, their role and dead-letter queue.

    Attributes:
        event_bus: the custom bus, named ``bus_name`` (the same in every region).
        dead_letter_queue: receives events EventBridge could not deliver to any
            target of this construct's rules (after the retry policy).
        delivery_rule: ``{"source": event_sources}``; its target is added by
            :meth:`add_delivery_target`.
        forwarding_rules: one rule per at most 5 other regions.
        forwarding_role: the one role every forwarding target uses
            (``None`` with a single region).
        target_bus_arns: other region -> ARN of its chat bus.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bus_name: str,
        event_sources: Sequence[str],
        region: str,
        other_regions: Sequence[str],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        if region in other_regions:
            raise ValueError(f"other_regions must not contain this region ({region})")
        stack = Stack.of(self)
        self._retry_policy = {
            "MaximumEventAgeInSeconds": int(RETRY_MAX_EVENT_AGE.to_seconds()),
            "MaximumRetryAttempts": RETRY_ATTEMPTS,
        }

        self.event_bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=bus_name,
            description="Chat events: accepted here or forwarded from another region",
        )
        self.dead_letter_queue = dead_letter_queue(
            self, "DeadLetterQueue", removal_policy=removal_policy
        )

        self.delivery_rule = events.Rule(
            self,
            "DeliveryRule",
            event_bus=self.event_bus,
            description="Every chat event, local or forwarded, to EventBusMessageHandler",
            event_pattern=events.EventPattern(source=list(event_sources)),
        )

        self.target_bus_arns: dict[str, str] = {
            other: stack.format_arn(
                service="events",
                region=other,
                resource="event-bus",
                resource_name=bus_name,
            )
            for other in other_regions
        }
        self.forwarding_role: iam.Role | None = None
        self.forwarding_rules: list[events.Rule] = []
        if not other_regions:
            return

        # One role for all forwarding targets: CDK's EventBus target adds one
        # events:PutEvents statement per target bus to it, nothing more.
        # The trust policy pins who may assume it (confused deputy): this
        # account, and only rules on this region's chat bus. The rules' own
        # ARNs cannot be named here (each rule's target refers to the role, so
        # the role referring to the rules would be a dependency cycle), hence
        # the bus-scoped ARN pattern; rule names are generated.
        self.forwarding_role = iam.Role(
            self,
            "ForwardingRole",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="events",
                            resource="rule",
                            resource_name=f"{bus_name}/*",
                        )
                    },
                }
            ),
            description=f"Forward chat events accepted in {region} to the other regions' buses",
        )
        for number, chunk in enumerate(_chunks(other_regions, MAX_TARGETS_PER_RULE), start=1):
            rule = events.Rule(
                self,
                f"ForwardingRule{number}",
                event_bus=self.event_bus,
                description=f"Chat events accepted in {region} -> {', '.join(chunk)}",
                # originRegion == this region: what arrives from elsewhere is
                # delivered locally but never forwarded again (no loops).
                event_pattern=events.EventPattern(
                    source=list(event_sources), detail={"originRegion": [region]}
                ),
            )
            for other in chunk:
                rule.add_target(
                    targets.EventBus(
                        events.EventBus.from_event_bus_arn(
                            self, f"Bus-{other}", self.target_bus_arns[other]
                        ),
                        dead_letter_queue=self.dead_letter_queue,
                        role=self.forwarding_role,
                    )
                )
            self._add_retry_policies(rule, len(chunk))
            self.forwarding_rules.append(rule)

    def add_delivery_target(self, handler: lambda_.IFunction) -> None:
        """Deliver every chat event on the bus to ``handler`` (EventBusMessageHandler)."""
        self.delivery_rule.add_target(
            targets.LambdaFunction(
                handler,
                dead_letter_queue=self.dead_letter_queue,
                max_event_age=RETRY_MAX_EVENT_AGE,
                retry_attempts=RETRY_ATTEMPTS,
            )
        )

    def _add_retry_policies(self, rule: events.Rule, target_count: int) -> None:
        # CDK's EventBus target has no retry props (aws-cdk#28735), but
        # CloudFormation accepts RetryPolicy on any target: set it on the L1.
        cfn_rule = rule.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        for index in range(target_count):
            cfn_rule.add_property_override(f"Targets.{index}.RetryPolicy", self._retry_policy)
