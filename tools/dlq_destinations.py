"""What ``tools.replay_dlq`` may put a dead letter back to: this deployment's own resources only.

A dead letter names its destination itself (EventBridge's ``TARGET_ARN`` and
``RULE_ARN`` attributes, a Lambda record's ``requestContext.functionArn``), and
anything that can send to the queue can write those. Replayed with the
operator's credentials, a forged ARN would make the tool invoke any function
or put events on any bus, in any account. So every destination is checked
against the deployment the queue belongs to before anything is called:

* the account, partition and region are the dead-letter queue's own (its
  ``QueueArn``): a deployment's stacks all live in one account;
* a bus is ``<appName>-<stage>-chat-bus`` (the same name in every region) in
  one of the configured regions;
* a function, and a redrive queue, is in the queue's region and has a name
  CloudFormation generated in that region's stack (``<stack name>-<logical
  id>-<suffix>``; the stacks name no function or queue themselves);
* an EventBridge dead letter's rule is a rule on the chat bus in the queue's
  region (every rule with a dead-letter queue in the app is one: the
  forwarding and delivery rules, the server API's, team consumers').
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from multiregion_chat.infra.config import ChatConfig

__all__ = ["Destinations", "parse_arn"]


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str


def parse_arn(value: str) -> Arn | None:
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    return Arn(*parts[1:])


@dataclass(frozen=True)
class Destinations:
    """The deployment a dead-letter queue belongs to, and what its letters may go back to."""

    partition: str
    account: str
    region: str  # the dead-letter queue's
    regions: frozenset[str]
    bus_name: str
    stack_prefixes: dict[str, str]  # region -> "<stack name>-"

    @classmethod
    def of_queue(cls, queue_arn: str, config: ChatConfig) -> Destinations:
        arn = parse_arn(queue_arn)
        if arn is None or arn.service != "sqs":
            raise ValueError(f"{queue_arn!r} is not a queue ARN")
        if arn.region not in config.regions:
            raise ValueError(
                f"the queue is in {arn.region}, not one of the deployment's regions "
                f"({', '.join(config.regions)}): check --app-name/--stage/--regions"
            )
        return cls(
            partition=arn.partition,
            account=arn.account,
            region=arn.region,
            regions=frozenset(config.regions),
            bus_name=config.bus_name,
            stack_prefixes={region: f"{config.stack_name(region)}-" for region in config.regions},
        )

    @classmethod
    def for_queue(cls, sqs: Any, queue_url: str, config: ChatConfig) -> Destinations:
        """The destinations of the queue at ``queue_url`` (reads its ``QueueArn``)."""
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return cls.of_queue(attributes["Attributes"]["QueueArn"], config)

    # ------------------------------------------------------------------ checks
    def _ours(self, arn: Arn | None, service: str, *, same_region: bool) -> str | None:
        if arn is None or arn.service != service:
            return f"not an {service} ARN"
        if (arn.partition, arn.account) != (self.partition, self.account):
            return f"account {arn.account} is not the deployment's ({self.account})"
        if same_region and arn.region != self.region:
            return f"region {arn.region} is not the queue's ({self.region})"
        if arn.region not in self.regions:
            return f"region {arn.region} is not one of the deployment's"
        return None

    def bus_refusal(self, bus_arn: str) -> str | None:
        arn = parse_arn(bus_arn)
        problem = self._ours(arn, "events", same_region=False)
        if problem is None and arn is not None and arn.resource != f"event-bus/{self.bus_name}":
            problem = f"{arn.resource} is not the chat bus ({self.bus_name})"
        return problem

    def rule_refusal(self, rule_arn: str | None) -> str | None:
        if rule_arn is None:
            return "the dead letter has no RULE_ARN"
        arn = parse_arn(rule_arn)
        problem = self._ours(arn, "events", same_region=True)
        if problem is None and arn is not None:
            bus, _, name = arn.resource.removeprefix("rule/").partition("/")
            if not arn.resource.startswith("rule/") or bus != self.bus_name or not name:
                problem = f"{arn.resource} is not a rule on the chat bus ({self.bus_name})"
        return problem

    def function_refusal(self, function_arn: str) -> str | None:
        arn = parse_arn(function_arn)
        problem = self._ours(arn, "lambda", same_region=True)
        if problem is None and arn is not None:
            kind, _, name = arn.resource.partition(":")
            name = name.split(":", 1)[0]  # a qualifier (":$LATEST") may follow
            if kind != "function" or not name.startswith(self.stack_prefixes[arn.region]):
                problem = f"function {name or arn.resource} is not one of the stack's"
        return problem

    def queue_refusal(self, queue_url: str) -> str | None:
        parsed = urlsplit(queue_url)
        path = parsed.path.strip("/").split("/")
        if len(path) != 2:
            return f"{queue_url} is not a queue URL"
        account, name = path
        host = parsed.hostname or ""
        if account != self.account:
            return f"account {account} is not the deployment's ({self.account})"
        if host.startswith("sqs.") and host.split(".")[1] != self.region:
            return f"{host} is not the queue's region ({self.region})"
        if not name.startswith(self.stack_prefixes[self.region]):
            return f"queue {name} is not one of the stack's"
        return None
