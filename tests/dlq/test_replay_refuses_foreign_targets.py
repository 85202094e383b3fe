"""tools.replay_dlq calls nothing outside the deployment (issue 18, item 7).

A dead letter names its own destination: each forged one below is refused,
left in the queue, reported as ``refused`` with the reason, and nothing is
put or invoked, in a dry run too. The genuine ones (tests/dlq/test_replay_dlq.py)
still go back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.dlq.test_replay_dlq import (
    ACCOUNT,
    BUS,
    FUNCTION_ARN,
    RULE_ARN,
    SOURCE,
    TARGET,
    TARGET_BUS_ARN,
    Clients,
    chat_event,
    drain,
    eventbridge_dead_letter,
    replay_queue,
)

OTHER_ACCOUNT = "210987654321"
STACK_FUNCTION = FUNCTION_ARN.rsplit(":", 1)[1]

FORGED_EVENTBRIDGE_LETTERS = {
    "a bus in another account": (
        f"arn:aws:events:{TARGET}:{OTHER_ACCOUNT}:event-bus/{BUS}",
        RULE_ARN,
    ),
    "another bus of the account": (
        f"arn:aws:events:{TARGET}:{ACCOUNT}:event-bus/default",
        RULE_ARN,
    ),
    "the bus in a region not deployed": (
        f"arn:aws:events:sa-east-1:{ACCOUNT}:event-bus/{BUS}",
        RULE_ARN,
    ),
    "a function in another account": (
        f"arn:aws:lambda:{SOURCE}:{OTHER_ACCOUNT}:function:{STACK_FUNCTION}",
        RULE_ARN,
    ),
    "a function outside the stack": (
        f"arn:aws:lambda:{SOURCE}:{ACCOUNT}:function:payroll-export",
        RULE_ARN,
    ),
    "the stack's function in another region": (
        f"arn:aws:lambda:{TARGET}:{ACCOUNT}:function:{STACK_FUNCTION}",
        RULE_ARN,
    ),
    "a rule on another bus": (
        TARGET_BUS_ARN,
        f"arn:aws:events:{SOURCE}:{ACCOUNT}:rule/default/copy-everything",
    ),
    "a rule in another account": (
        TARGET_BUS_ARN,
        f"arn:aws:events:{SOURCE}:{OTHER_ACCOUNT}:rule/{BUS}/ForwardingRule1",
    ),
    "no rule at all": (TARGET_BUS_ARN, None),
}


@pytest.mark.parametrize("case", sorted(FORGED_EVENTBRIDGE_LETTERS))
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_forged_eventbridge_letter_is_refused_and_kept(
    world: dict[str, Any], case: str, dry_run: bool
) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    target, rule = FORGED_EVENTBRIDGE_LETTERS[case]
    eventbridge_dead_letter(sqs, dlq, chat_event("m1"), target, rule)
    clients = Clients()

    report = replay_queue(sqs, dlq, clients, dry_run=dry_run, wait_seconds=0).as_dict()

    kind = "function" if ":function:" in target else "event-bus"
    assert report["outcomes"] == {"refused": {kind: 1}}
    (error,) = report["errors"]
    assert target in error["error"]
    assert clients.invocations == []
    assert drain(world["target_sqs"], world["observer"]) == []  # nothing reached the bus
    assert len(drain(sqs, dlq)) == 1  # still there, visible again


def test_an_invocation_record_of_a_foreign_function_is_refused(world: dict[str, Any]) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    foreign = f"arn:aws:lambda:{SOURCE}:{OTHER_ACCOUNT}:function:{STACK_FUNCTION}:$LATEST"
    record = {"requestContext": {"functionArn": foreign}, "requestPayload": chat_event("m1")}
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(record))
    clients = Clients()
    report = replay_queue(sqs, dlq, clients, wait_seconds=0).as_dict()
    assert report["outcomes"] == {"refused": {"function": 1}}
    assert clients.invocations == []


def test_a_redrive_to_a_queue_outside_the_deployment_is_refused(world: dict[str, Any]) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"room": "big", "shard": 1}))
    outside = sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    report = replay_queue(sqs, dlq, Clients(), to_queue_url=outside, wait_seconds=0).as_dict()
    assert report["outcomes"] == {"refused": {"queue": 1}}
    assert "not one of the stack's" in report["errors"][0]["error"]
    assert drain(sqs, outside) == []


def test_a_queue_of_another_deployment_is_refused_before_anything_is_read(
    world: dict[str, Any],
) -> None:
    sqs = world["target_sqs"]  # eu-west-1
    elsewhere = sqs.create_queue(QueueName="chat-prod-eu-west-1-DeadLetterQueue-X")["QueueUrl"]
    from multiregion_chat.infra.config import ChatConfig
    from tools import replay_dlq

    only_asia = ChatConfig.from_mapping({"regions": "ap-northeast-1"})
    with pytest.raises(ValueError, match="not one of the deployment's regions"):
        replay_dlq.replay_queue(sqs, elsewhere, Clients(), config=only_asia, wait_seconds=0)
