"""Replay a dead-letter queue: put each message back where it was going, once.

``python -m tools.replay_dlq --queue-url URL [--dry-run]`` reads every message of the queue and
recognizes three kinds (docs/operations.md, "Region outage longer than the retry window"):

* **EventBridge target DLQ** (the replication DLQ): the body is the event, the message
  attributes ``RULE_ARN``, ``TARGET_ARN``, ``ERROR_CODE``, ``ERROR_MESSAGE``... A bus target gets
  the event again with ``PutEvents`` to that bus ARN in the bus's region; a function target gets
  it with an asynchronous ``Invoke``.
* **Lambda on-failure destination** (EventBusMessageHandler's failure queue): the body is an
  invocation record (``requestContext.functionArn``, ``requestPayload``); the payload is invoked
  again asynchronously.
* **SQS redrive DLQ** (the fan-out queue's): anything else; the body and its attributes are sent
  back to the queue whose ``RedrivePolicy`` names this DLQ (``ListDeadLetterSourceQueues``, or
  ``--to-queue-url``).

Only this deployment's own buses, functions and queues are ever called, and an EventBridge
dead letter must name a rule on the chat bus (:mod:`tools.dlq_destinations`; the deployment is
cdk.json's context, ``--app-name``/``--stage``/``--regions`` override it): a dead letter names
its own destination, and anything that can send to the queue can write it. A refused message
stays in the queue, reported as ``refused`` with the reason.

A message is deleted only after its put succeeded; one that failed, was refused or was not
recognized stays in the queue (made visible again at the end). A replayed chat event may still reach
a region that already has it (the put succeeded but the delete did not, or a region received it
before the failure): the history write de-duplicates by message id, so no client sees it twice.

The standard boto3 credential chain applies. ``--sandbox-endpoints FILE`` points every
client at a running sandbox instead (its moto for SQS, each region's PutEvents endpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiregion_chat.infra.config import ChatConfig
from tools.deployment_config import add_deployment_arguments, deployment_config_of
from tools.dlq_destinations import Destinations

ClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client

BUS = "event-bus"
FUNCTION = "function"
QUEUE = "queue"
UNRECOGNIZED = "unrecognized"


@dataclass(frozen=True)
class Replay:
    """Where one dead letter goes back to."""

    kind: str  # event-bus, function, queue or unrecognized
    region: str
    destination: str  # bus ARN, function ARN, queue URL, or why it is not recognized
    payload: Any = None
    rule: str | None = None  # an EventBridge dead letter's RULE_ARN (None: not one)


@dataclass
class Report:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, kind)
    errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, outcome: str, kind: str, message_id: str = "", error: str = "") -> None:
        self.counts[(outcome, kind)] += 1
        if error:
            self.errors.append({"messageId": message_id, "kind": kind, "error": error})

    def as_dict(self) -> dict[str, Any]:
        outcomes: dict[str, dict[str, int]] = {}
        for (outcome, kind), count in sorted(self.counts.items()):
            outcomes.setdefault(outcome, {})[kind] = count
        return {"outcomes": outcomes, "errors": self.errors}

    def lines(self) -> list[str]:
        rows = [f"{outcome:<14} {kind:<13} {count}" for (outcome, kind), count in
                sorted(self.counts.items())]  # fmt: skip
        rows += [f"error {e['messageId']} ({e['kind']}): {e['error']}" for e in self.errors]
        return rows or ["the queue is empty"]


def arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 else ""


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = (message.get("MessageAttributes") or {}).get(name) or {}
    found = value.get("StringValue")
    return str(found) if found is not None else None


def plan(message: dict[str, Any], to_queue: Callable[[], str]) -> Replay:
    """Where ``message`` (an SQS message with its attributes) goes back to."""
    body = message.get("Body", "")
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    target = _attribute(message, "TARGET_ARN")
    rule = _attribute(message, "RULE_ARN") or ""  # "": an EventBridge letter without one
    if target is not None:
        if not isinstance(document, dict) or "detail" not in document:
            return Replay(UNRECOGNIZED, "", "TARGET_ARN set but the body is not an event")
        if ":event-bus/" in target:
            entry = {
                "Source": document.get("source"),
                "DetailType": document.get("detail-type"),
                "Detail": json.dumps(document["detail"]),
                "Resources": list(document.get("resources") or []),
                "EventBusName": target,
            }
            return Replay(BUS, arn_region(target), target, entry, rule)
        if ":function:" in target:
            return Replay(FUNCTION, arn_region(target), target, document, rule)
        return Replay(UNRECOGNIZED, "", f"target {target} is neither a bus nor a function")
    if isinstance(document, dict) and "requestPayload" in document:
        function = (document.get("requestContext") or {}).get("functionArn")
        if isinstance(function, str) and ":function:" in function:
            return Replay(FUNCTION, arn_region(function), function, document["requestPayload"])
        return Replay(UNRECOGNIZED, "", "an invocation record without requestContext.functionArn")
    return Replay(QUEUE, "", to_queue(), body)


def refusal(replay: Replay, destinations: Destinations) -> str | None:
    """Why ``replay`` must not be carried out (None: it goes to this deployment's own resource)."""
    if replay.rule is not None:
        problem = destinations.rule_refusal(replay.rule or None)
        if problem:
            return f"rule: {problem}"
    if replay.kind == BUS:
        return destinations.bus_refusal(replay.destination)
    if replay.kind == FUNCTION:
        return destinations.function_refusal(replay.destination)
    if replay.kind == QUEUE:
        return destinations.queue_refusal(replay.destination)
    return None


def _queue_attributes(message: dict[str, Any]) -> dict[str, Any]:
    kept = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        kept[name] = {
            k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")
        }
    return kept


def put_back(replay: Replay, message: dict[str, Any], clients: ClientFactory, sqs: Any) -> None:
    """Put one message back; raises with the reason when the destination refused it."""
    if replay.kind == BUS:
        answer = clients("events", replay.region).put_events(Entries=[replay.payload])
        if answer.get("FailedEntryCount"):
            entry = answer["Entries"][0]
            raise RuntimeError(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
    elif replay.kind == FUNCTION:
        clients("lambda", replay.region).invoke(
            FunctionName=replay.destination,
            InvocationType="Event",
            Payload=json.dumps(replay.payload).encode(),
        )
    elif replay.kind == QUEUE:
        arguments: dict[str, Any] = {"QueueUrl": replay.destination, "MessageBody": replay.payload}
        attributes = _queue_attributes(message)
        if attributes:
            arguments["MessageAttributes"] = attributes
        sqs.send_message(**arguments)
    else:
        raise ValueError(replay.destination)


def _receive(
    sqs: Any, queue_url: str, wait_seconds: int, visibility: int
) -> Iterator[dict[str, Any]]:
    """Every message once: stops when a receive brings nothing new."""
    seen: set[str] = set()
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility,
            MessageAttributeNames=["All"],
        )
        fresh = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def replay_queue(
    sqs: Any,
    queue_url: str,
    clients: ClientFactory,
    *,
    config: ChatConfig,
    dry_run: bool = False,
    to_queue_url: str | None = None,
    max_messages: int | None = None,
    wait_seconds: int = 1,
    visibility: int = 60,
) -> Report:
    """Replay (or, with ``dry_run``, only classify) the messages of ``queue_url``.

    ``config``: the deployment the queue belongs to; nothing outside it is called.
    """
    destinations = Destinations.for_queue(sqs, queue_url, config)
    report = Report()
    source_queue: list[str] = []

    def to_queue() -> str:
        if to_queue_url:
            return to_queue_url
        if not source_queue:
            found = sqs.list_dead_letter_source_queues(QueueUrl=queue_url).get("queueUrls", [])
            if len(found) != 1:
                raise LookupError(
                    f"{len(found)} queues redrive to this DLQ; name one with --to-queue-url"
                )
            source_queue.append(found[0])
        return source_queue[0]

    kept: list[str] = []  # receipt handles to make visible again
    for number, message in enumerate(_receive(sqs, queue_url, wait_seconds, visibility)):
        if max_messages is not None and number >= max_messages:
            kept.append(message["ReceiptHandle"])
            break
        if _replay_one(
            message, sqs, queue_url, clients, to_queue, report, destinations, dry_run=dry_run
        ):
            kept.append(message["ReceiptHandle"])
    _release(sqs, queue_url, kept)
    return report


def _replay_one(
    message: dict[str, Any],
    sqs: Any,
    queue_url: str,
    clients: ClientFactory,
    to_queue: Callable[[], str],
    report: Report,
    destinations: Destinations,
    *,
    dry_run: bool,
) -> bool:
    """Replay one dead letter and record the outcome; True when it stays in the queue."""
    message_id = message["MessageId"]
    try:
        replay = plan(message, to_queue)
    except LookupError as error:
        replay = Replay(UNRECOGNIZED, "", str(error))
    if replay.kind == UNRECOGNIZED:
        report.add("left", UNRECOGNIZED, message_id, replay.destination)
        return True
    problem = refusal(replay, destinations)
    if problem:
        report.add("refused", replay.kind, message_id, f"{replay.destination}: {problem}")
        return True
    if dry_run:
        report.add("would-replay", replay.kind)
        return True
    try:
        put_back(replay, message, clients, sqs)
    except Exception as error:  # any refusal: the message stays for the next run
        report.add("failed", replay.kind, message_id, f"{type(error).__name__}: {error}")
        return True
    try:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    except Exception as error:  # replayed; it comes back, and history de-duplicates it
        report.add("replayed-kept", replay.kind, message_id, f"delete failed: {error}")
        return False
    report.add("replayed", replay.kind)
    return False


def _release(sqs: Any, queue_url: str, receipt_handles: list[str]) -> None:
    """Make the messages left in the queue visible again at once (batches of 10)."""
    for start in range(0, len(receipt_handles), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(receipt_handles[start : start + 10])
            ],
        )


# --------------------------------------------------------------------- command line


def region_of_queue_url(url: str) -> str | None:
    host = url.split("/")[2] if url.count("/") >= 2 else ""
    parts = host.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "sqs" else None


def client_factory(endpoints: dict[str, Any] | None) -> Callable[[str, str], Any]:
    import boto3

    def make(service: str, region: str) -> Any:
        if endpoints is None:
            return boto3.client(service, region_name=region)  # type: ignore[call-overload]
        if service == "sqs":
            url = endpoints["dynamodb"]  # the sandbox's moto serves SQS too
        elif service == "events":
            url = endpoints["regions"][region]["events"]
        else:
            raise ValueError(f"the sandbox has no {service} endpoint")
        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=region,
            endpoint_url=url,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",
            aws_session_token="sandbox",
        )

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.replay_dlq",
        description="Put every message of a dead-letter queue back where it was going.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--queue-url", help="the dead-letter queue")
    where.add_argument(
        "--queue", help="with --sandbox-endpoints: the queue's logical id in the endpoints file"
    )
    parser.add_argument("--region", help="the queue's region (default: from its URL)")
    parser.add_argument("--dry-run", action="store_true", help="classify and count; change nothing")
    parser.add_argument("--to-queue-url", help="where a redrive DLQ's messages go back to")
    parser.add_argument("--max-messages", type=int, default=None)
    parser.add_argument(
        "--sandbox-endpoints", type=Path, help="a sandbox's endpoints file (local run)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_deployment_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = deployment_config_of(args)
    except ValueError as error:
        parser.error(str(error))
    endpoints = (
        json.loads(args.sandbox_endpoints.read_text(encoding="utf-8"))
        if args.sandbox_endpoints
        else None
    )
    queue_url = args.queue_url
    region = args.region
    if args.queue is not None:
        if endpoints is None or not region:
            parser.error("--queue needs --sandbox-endpoints and --region")
        try:
            queue_url = endpoints["queues"][region][args.queue]["url"]
        except KeyError:
            parser.error(f"no queue {args.queue} in {region} in {args.sandbox_endpoints}")
    region = region or region_of_queue_url(queue_url)
    if not region:
        parser.error("--region is needed: the queue URL does not name one")
    clients = client_factory(endpoints)
    report = replay_queue(
        clients("sqs", region),
        queue_url,
        clients,
        config=config,
        dry_run=args.dry_run,
        to_queue_url=args.to_queue_url,
        max_messages=args.max_messages,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    failed = sum(
        n for (outcome, _), n in report.counts.items() if outcome in ("failed", "left", "refused")
    )
    return 1 if failed and not args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
