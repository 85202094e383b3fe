"""Checks every template of this project must pass, ours and a team's app's alike.

tests/infra/test_templates.py applies them to the app's own templates and
tests/infra/test_example_app.py to those of examples/team_app (an app that
installs this project and extends it); cdk-nag runs inside every synth.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .helpers import JsonDict, as_list, getatt_id, resources

__all__ = [
    "RETRY_POLICY",
    "XRAY_ACTIONS",
    "cfn_lint",
    "check_no_wildcards_except_xray",
    "check_queues_enforce_tls",
    "check_rule_targets",
]

XRAY_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
# EventBridge's maxima (infra/replication.py), on every target of every rule.
RETRY_POLICY = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}


def check_rule_targets(template: JsonDict) -> None:
    """Every rule target has the retry policy and an encrypted, 14-day DLQ only its rule may use."""
    queue_policies = resources(template, "AWS::SQS::QueuePolicy")
    for rule_id, rule in resources(template, "AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            assert target["RetryPolicy"] == RETRY_POLICY, rule_id
            queue_id = getatt_id(target["DeadLetterConfig"]["Arn"])
            queue = template["Resources"][queue_id]
            assert queue["Properties"]["SqsManagedSseEnabled"] is True
            assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
            # EventBridge may send to the DLQ only on behalf of this rule.
            statements = [
                statement
                for policy in queue_policies.values()
                if policy["Properties"]["Queues"] == [{"Ref": queue_id}]
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            ]
            rule_arn = {"Fn::GetAtt": [rule_id, "Arn"]}
            assert any(
                s["Effect"] == "Allow"
                and s["Principal"] == {"Service": "events.amazonaws.com"}
                and s["Action"] == "sqs:SendMessage"
                and s["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}
                for s in statements
            ), rule_id


def check_no_wildcards_except_xray(template: JsonDict) -> None:
    """No ``service:*`` action anywhere; ``Resource: "*"`` only for X-Ray's two actions."""
    for logical_id, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = as_list(statement["Action"])
            assert not any(action.endswith(":*") or action == "*" for action in actions), (
                logical_id,
                actions,
            )
            if "*" in as_list(statement["Resource"]):
                assert sorted(actions) == XRAY_ACTIONS, (logical_id, statement)


def check_queues_enforce_tls(template: JsonDict) -> None:
    """Every queue is SQS-encrypted and refuses requests without TLS."""
    for queue_id, queue in resources(template, "AWS::SQS::Queue").items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        policies = [
            policy
            for policy in resources(template, "AWS::SQS::QueuePolicy").values()
            if policy["Properties"]["Queues"] == [{"Ref": queue_id}]
        ]
        (policy,) = policies
        assert {
            "Action": "sqs:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
        } in policy["Properties"]["PolicyDocument"]["Statement"]


# cfn-lint's exit code is a bit mask (8 = informational, not checked).
CFN_LINT_ERROR, CFN_LINT_WARNING = 2, 4


def cfn_lint(templates: Sequence[Path]) -> tuple[int, str]:
    """Lint ``templates``, each in the region it names (``Metadata.cfn-lint.config.regions``,
    set by infra/region_stack.py; no ``--regions``, which would override it);
    (OR of the exit codes, combined output)."""
    executable = shutil.which(
        "cfn-lint", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    )
    assert executable, "cfn-lint is not installed (requirements-dev.txt)"
    # cfn-lint is single-threaded: one process per core halves the 20-region run.
    workers = max(1, min(os.cpu_count() or 1, 4, len(templates)))
    processes = [
        subprocess.Popen(
            [executable, "--", *map(str, templates[i::workers])],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(workers)
    ]
    code, output = 0, ""
    for process in processes:
        out, _ = process.communicate(timeout=600)
        code |= process.returncode
        output += out
    return code, output
