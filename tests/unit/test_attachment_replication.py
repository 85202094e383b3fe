"""The replication setup custom resource: the rules it writes as the regions' stacks deploy.

Every region's bucket is a moto bucket; the stacks' deploy orders are replayed by creating
buckets one after another and running the resource of the stack just deployed.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from multiregion_chat.runtime.handlers import attachment_replication

ACCOUNT = "123456789012"
REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")


def bucket_name(region: str) -> str:
    return f"chat-prod-files-{ACCOUNT}-{region}"


def properties(region: str, regions: tuple[str, ...] = REGIONS) -> dict[str, Any]:
    return {
        "Region": region,
        "Partition": "aws",
        "Buckets": {r: bucket_name(r) for r in regions},
        "Roles": {r: f"arn:aws:iam::{ACCOUNT}:role/chat-prod-files-repl-{r}" for r in regions},
    }


def create_bucket(region: str) -> None:
    s3 = boto3.client("s3", region_name=region)
    location = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    s3.create_bucket(Bucket=bucket_name(region), **location)
    s3.put_bucket_versioning(
        Bucket=bucket_name(region), VersioningConfiguration={"Status": "Enabled"}
    )


def destinations(region: str) -> list[str]:
    """The regions ``region``'s bucket replicates to, by rule id, in priority order."""
    s3 = boto3.client("s3", region_name=region)
    try:
        configuration = s3.get_bucket_replication(Bucket=bucket_name(region))
    except s3.exceptions.ClientError as error:
        assert "ReplicationConfigurationNotFound" in str(error)
        return []
    rules = sorted(configuration["ReplicationConfiguration"]["Rules"], key=lambda r: r["Priority"])
    for rule in rules:
        target = rule["ID"].removeprefix("to-")
        assert rule["Destination"]["Bucket"] == f"arn:aws:s3:::{bucket_name(target)}"
    assert configuration["ReplicationConfiguration"]["Role"].endswith(f"repl-{region}")
    return [rule["ID"].removeprefix("to-") for rule in rules]


def test_each_rule_replicates_the_rooms_prefix_with_metrics() -> None:
    """moto answers GetBucketReplication with a fixed Filter, so the rules are read here."""
    present = {r: bucket_name(r) for r in REGIONS}
    rules = attachment_replication.replication_rules("eu-west-1", present, list(REGIONS), "aws")
    assert rules == [
        {
            "ID": f"to-{region}",
            "Priority": priority,
            "Status": "Enabled",
            "Filter": {"Prefix": "rooms/"},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {
                "Bucket": f"arn:aws:s3:::{bucket_name(region)}",
                # No EventThreshold: S3 refuses one without Replication Time Control.
                "Metrics": {"Status": "Enabled"},
            },
        }
        for priority, region in ((0, "us-east-1"), (2, "ap-northeast-1"))
    ]


def test_a_fresh_deploy_all_completes_the_mesh_with_its_last_stack(aws: None) -> None:
    """`cdk deploy --all`: the first region alone, then the others one at a time."""
    create_bucket("us-east-1")
    attachment_replication.reconcile(properties("us-east-1"), leaving=False)
    assert destinations("us-east-1") == []  # nothing to replicate to yet, and no failure
    create_bucket("eu-west-1")
    attachment_replication.reconcile(properties("eu-west-1"), leaving=False)
    assert destinations("us-east-1") == ["eu-west-1"]
    assert destinations("eu-west-1") == ["us-east-1"]
    create_bucket("ap-northeast-1")
    attachment_replication.reconcile(properties("ap-northeast-1"), leaving=False)
    assert destinations("us-east-1") == ["eu-west-1", "ap-northeast-1"]
    assert destinations("eu-west-1") == ["us-east-1", "ap-northeast-1"]
    assert destinations("ap-northeast-1") == ["us-east-1", "eu-west-1"]


def test_a_region_added_first_or_last_joins_both_ways(aws: None) -> None:
    before = REGIONS[:2]
    for region in before:
        create_bucket(region)
        attachment_replication.reconcile(properties(region, before), leaving=False)
    # The documented order: the new region's stack alone (-e), then every stack.
    create_bucket("ap-northeast-1")
    attachment_replication.reconcile(properties("ap-northeast-1"), leaving=False)
    assert destinations("us-east-1") == ["eu-west-1", "ap-northeast-1"]
    assert destinations("ap-northeast-1") == ["us-east-1", "eu-west-1"]
    # The old stacks' update (their region list changed) writes the same mesh again.
    for region in before:
        attachment_replication.reconcile(properties(region), leaving=False)
    assert destinations("eu-west-1") == ["us-east-1", "ap-northeast-1"]


def test_removing_a_region_stops_replication_to_it(aws: None) -> None:
    for region in REGIONS:
        create_bucket(region)
    attachment_replication.reconcile(properties("us-east-1"), leaving=False)
    # `cdk destroy` of the region's stack: its resource is deleted (its bucket is retained).
    attachment_replication.reconcile(properties("ap-northeast-1"), leaving=True)
    assert destinations("ap-northeast-1") == []
    assert destinations("us-east-1") == ["eu-west-1"]
    assert destinations("eu-west-1") == ["us-east-1"]


class _ResponseCatcher(http.server.BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["content-length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Where CloudFormation would take the answer (a local server on 127.0.0.1)."""
    _ResponseCatcher.bodies = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _ResponseCatcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", _ResponseCatcher.bodies
    server.shutdown()
    server.server_close()


def event(request_type: str, url: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
        "RequestId": "r-1",
        "LogicalResourceId": "AttachmentsReplication",
        "ResourceProperties": props,
    }


def test_the_handler_answers_cloudformation(
    aws: None, context: Any, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    for region in REGIONS:
        create_bucket(region)
    attachment_replication.handler(event("Create", url, properties("eu-west-1")), context)
    assert bodies[-1]["Status"] == "SUCCESS"
    assert bodies[-1]["PhysicalResourceId"] == "attachment-replication-eu-west-1"
    assert (bodies[-1]["RequestId"], bodies[-1]["LogicalResourceId"]) == (
        "r-1",
        "AttachmentsReplication",
    )
    assert destinations("ap-northeast-1") == ["us-east-1", "eu-west-1"]


def test_a_failure_fails_the_deploy_but_not_a_delete(
    aws: None,
    context: Any,
    response_url: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, bodies = response_url
    create_bucket("us-east-1")

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("S3 said no")

    monkeypatch.setattr(attachment_replication, "reconcile", broken)
    attachment_replication.handler(event("Update", url, properties("us-east-1")), context)
    assert bodies[-1]["Status"] == "FAILED" and "S3 said no" in bodies[-1]["Reason"]
    attachment_replication.handler(event("Delete", url, properties("us-east-1")), context)
    assert bodies[-1]["Status"] == "SUCCESS"
