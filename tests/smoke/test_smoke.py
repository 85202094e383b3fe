"""``python -m tools.smoke`` in AWS mode: moto for CloudFormation and Secrets Manager,
botocore's Stubber for what moto cannot answer, a local WebSocket chat for the exchange."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from multiregion_chat.clients.tokens import mint_token
from multiregion_chat.infra.config import ChatConfig
from tools.smoke import attachment, cli
from tools.smoke.replicas import check_replicas
from tools.smoke.targets import from_endpoints_file, from_stacks

from .chat_server import ChatServers

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
ORIGIN = REGIONS[0]
SECRET_NAME = "chat/prod/token-signing-secret"
SECRET = "s" * 64


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


@pytest.fixture(autouse=True)
def quick_attachment_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's replica arrives on a region's second ask: no need to wait a second for it."""
    monkeypatch.setattr(attachment, "POLL_SECONDS", 0.05)


@pytest.fixture
def context_file(tmp_path: Path) -> Path:
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps({"context": {"appName": "chat", "stage": "prod",
                                            "regions": list(REGIONS)}}))  # fmt: skip
    return path


def deploy_stack(region: str, outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=region).create_stack(
        StackName=f"chat-prod-{region}", TemplateBody=json.dumps(template)
    )


def deploy(servers: ChatServers, regions: tuple[str, ...] = REGIONS) -> None:
    for region in regions:
        deploy_stack(
            region,
            {
                "WebSocketUrl": servers.urls[region],
                "HttpUrl": f"https://{region}.example/",
                "SigningSecretName": SECRET_NAME,
            },
        )


def create_secret(replicas: tuple[str, ...] = REGIONS[1:], taken_in: tuple[str, ...] = ()) -> None:
    """The signing secret in the primary region with ``replicas``; a secret of the same name
    made beforehand in ``taken_in`` makes that replica fail, as in AWS."""
    for region in taken_in:
        boto3.client("secretsmanager", region_name=region).create_secret(
            Name=SECRET_NAME, SecretString="left over"
        )
    boto3.client("secretsmanager", region_name=REGIONS[0]).create_secret(
        Name=SECRET_NAME,
        SecretString=SECRET,
        AddReplicaRegions=[{"Region": region} for region in replicas],
    )


def smoke(context_file: Path, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    status = cli.run(
        ["--context", str(context_file), "--timeout", "10", "--settle", "0.3", *extra],
        out=out,
    )
    return status, out.getvalue()


def smoke_deployment(
    context_file: Path,
    *,
    deployed: tuple[str, ...] = REGIONS,
    secret: bool = True,
    replicas: tuple[str, ...] = REGIONS[1:],
    taken_in: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    **faults: Any,
) -> tuple[int, str]:
    """``smoke`` (with ``extra`` arguments) against the stacks of ``deployed`` on local chat
    servers (``faults``: ChatServers' lose_in, duplicate_in, refuse_send_in, the attachment
    switches), with the signing secret
    (``create_secret``'s ``replicas`` and ``taken_in``) unless ``secret`` is False."""
    with ChatServers(REGIONS, SECRET, **faults) as servers:
        deploy(servers, regions=deployed)
        if secret:
            create_secret(replicas=replicas, taken_in=taken_in)
        return smoke(context_file, *extra)


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by region (cells split on runs of 2+ spaces)."""
    import re

    found = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in (*REGIONS, "global") and len(cells) == 8:
            found[cells[0]] = cells
    return found


def test_a_healthy_deployment_passes(context_file: Path) -> None:
    status, output = smoke_deployment(context_file)
    assert status == 0, output
    table = rows(output)
    assert list(table) == list(REGIONS)
    assert output.splitlines()[0].split() == list(cli_columns())
    for region, cells in table.items():
        assert cells[1] == "ok" and cells[2].startswith("ok (") and cells[3] == "3/3", cells
        assert cells[4] == ("primary" if region == REGIONS[0] else "InSync")
        assert cells[5].startswith("max ") and cells[7] == "PASS"
        # The first region uploads; the others read their own replica (the fake's arrives
        # on the second ask: the first is answered with the origin's copy).
        assert cells[6] == "uploaded" if region == REGIONS[0] else cells[6].startswith("own copy")
    assert output.rstrip().endswith("PASS: 3 region(s)")


def cli_columns() -> tuple[str, ...]:
    from tools.smoke.report import COLUMNS

    return COLUMNS


@pytest.mark.parametrize("global_loses", [False, True])
def test_the_global_endpoint_listens_and_must_receive_everything(
    context_file: Path, global_loses: bool
) -> None:
    """With GlobalWebSocketUrl in the outputs, a "global" row connects there, sends nothing,
    and must receive every region's message once."""
    lose = {"edge"} if global_loses else set()
    with ChatServers((*REGIONS, "edge"), SECRET, lose_in=lose) as servers:
        for region in REGIONS:
            deploy_stack(
                region,
                {
                    "WebSocketUrl": servers.urls[region],
                    "SigningSecretName": SECRET_NAME,
                    "GlobalWebSocketUrl": servers.urls["edge"],
                },
            )
        create_secret()
        status, output = smoke(context_file)
    table = rows(output)
    assert list(table) == [*REGIONS, "global"]
    assert table["global"][2] == "(listens)" and table["global"][4] == "-"
    assert table["us-east-1"][3] == "3/3"  # the listener sent nothing
    if global_loses:
        assert status == 1 and table["global"][3] == "0/3"
        assert output.rstrip().endswith("FAIL: global")
    else:
        assert status == 0, output
        assert table["global"][3] == "3/3" and table["global"][7] == "PASS"


def test_a_failed_secret_replica_fails_the_check(context_file: Path) -> None:
    """CloudFormation says CREATE_COMPLETE, the replica says Failed: the check must say FAIL."""
    status, output = smoke_deployment(context_file, taken_in=("eu-west-1",))
    assert status == 1, output
    table = rows(output)
    assert table["eu-west-1"][4] == "Failed" and table["eu-west-1"][7] == "FAIL"
    assert table["us-east-1"][7] == "PASS" and table["ap-northeast-1"][7] == "PASS"
    assert "eu-west-1: signing secret replica Failed: Replication failed" in output
    assert output.rstrip().endswith("FAIL: eu-west-1")


def test_a_region_without_a_replica_fails(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, replicas=("eu-west-1",))
    assert status == 1
    assert rows(output)["ap-northeast-1"][4] == "missing"
    assert "ap-northeast-1: signing secret replica missing" in output


def test_a_region_that_never_receives_fails(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, lose_in={"ap-northeast-1"})
    assert status == 1
    table = rows(output)
    assert table["ap-northeast-1"][3] == "0/3" and table["ap-northeast-1"][7] == "FAIL"
    assert table["us-east-1"][3] == "3/3" and table["us-east-1"][7] == "PASS"
    assert "never received the message from ap-northeast-1, eu-west-1, us-east-1" in output


def test_a_duplicate_delivery_fails(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, duplicate_in={"eu-west-1"})
    assert status == 1
    assert rows(output)["eu-west-1"][3] == "3/3 dup"
    assert "eu-west-1: received more than one copy of the message from" in output


def test_a_refused_send_fails_that_region_only(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, refuse_send_in={"us-east-1"})
    assert status == 1
    table = rows(output)
    assert table["us-east-1"][2] == "FAIL" and "us-east-1: send: internal: no" in output
    # The others still received both messages that were accepted.
    assert table["eu-west-1"][3] == "2/2" and table["eu-west-1"][7] == "PASS"


def test_the_attachment_is_read_from_every_other_regions_own_copy(context_file: Path) -> None:
    """Each reader was first served the origin's copy, then its own: both had the bytes."""
    with ChatServers(REGIONS, SECRET, replicate_after=3) as servers:
        deploy(servers)
        create_secret()
        status, output = smoke(context_file, "--attachment-bytes", "200000")
        (key,) = servers.buckets.objects[ORIGIN]
        copies = {region: len(servers.buckets.objects[region][key]) for region in REGIONS}
        asked = {region: servers.downloads_of(region, key) for region in REGIONS[1:]}
    assert status == 0, output
    assert copies == dict.fromkeys(REGIONS, 200000)
    assert asked == dict.fromkeys(REGIONS[1:], 3)
    table = rows(output)
    assert table[ORIGIN][6] == "uploaded"
    assert all(table[region][6].startswith("own copy ") for region in REGIONS[1:])


def test_other_bytes_in_a_replica_fail_that_region(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, corrupt_replica_in={"eu-west-1"})
    assert status == 1, output
    table = rows(output)
    assert table["eu-west-1"][6] == "FAIL" and table["eu-west-1"][7] == "FAIL"
    assert "eu-west-1: attachment: the copy in eu-west-1 has other bytes than the upload" in output
    assert table["ap-northeast-1"][7] == "PASS" and table[ORIGIN][7] == "PASS"
    assert output.rstrip().endswith("FAIL: eu-west-1")


def test_a_refused_download_fails_that_region(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, refuse_download_in={"ap-northeast-1"})
    assert status == 1, output
    assert "ap-northeast-1: attachment: download refused: forbidden: not a member" in output
    assert rows(output)["eu-west-1"][7] == "PASS"
    assert output.rstrip().endswith("FAIL: ap-northeast-1")


def test_a_replica_that_never_arrives_fails_when_the_wait_ends(context_file: Path) -> None:
    """The origin's copy is readable (nothing is lost), but replication is broken."""
    status, output = smoke_deployment(
        context_file,
        never_replicate_to={"eu-west-1"},
        extra=("--attachment-wait", "0.5"),
    )
    assert status == 1, output
    assert (
        "eu-west-1: attachment: not replicated within 0.5 s: still served from us-east-1 "
        "(those bytes match)" in output
    )
    assert rows(output)["ap-northeast-1"][7] == "PASS"


def test_a_refused_upload_fails_the_origin_and_checks_no_reader(context_file: Path) -> None:
    """The POST's size differs from the slot's: storage answers 400, as S3's policy does."""
    status, output = smoke_deployment(context_file, slot_size_offset=1)
    assert status == 1, output
    table = rows(output)
    assert table[ORIGIN][6] == "FAIL"
    assert "us-east-1: attachment: upload POST: storage answered 400: EntityTooLarge" in output
    assert [table[region][6] for region in REGIONS[1:]] == ["-", "-"]


def test_a_connection_closed_during_the_attachment_is_a_failed_row_not_a_traceback() -> None:
    """websockets raises ConnectionClosed (not a ConnectionError) from a send on a closed
    connection; the check must report it like any other lost connection."""
    import asyncio

    from websockets.exceptions import ConnectionClosedError

    from tools.smoke.exchange import RegionExchange, _Session

    class ClosedUnderneath:
        """A connection whose close the reader has not seen yet: sends fail, reads wait."""

        def __aiter__(self) -> ClosedUnderneath:
            return self

        async def __anext__(self) -> str:
            await asyncio.Event().wait()
            raise StopAsyncIteration

        async def send(self, message: str) -> None:
            raise ConnectionClosedError(None, None)

    async def main() -> attachment.AttachmentOutcome:
        session = _Session(
            ClosedUnderneath(),  # type: ignore[arg-type]
            RegionExchange(ORIGIN),
            "run",
            "room",
            asyncio.Condition(),
            {},
        )
        plan = attachment.AttachmentPlan(size=10, wait=1.0, reply_timeout=1.0)
        try:
            outcomes = await attachment.check_attachment(
                {ORIGIN: session}, ORIGIN, "room", "run", plan
            )
        finally:
            session.reader.cancel()
        return outcomes[ORIGIN]

    outcome = asyncio.run(main())
    assert outcome.problem is not None
    assert outcome.problem.startswith("upload: ConnectionError: the connection closed")


def test_a_request_on_a_connection_already_closed_fails_at_once() -> None:
    """Not after the reply timeout: the reader that would answer has ended."""
    import asyncio

    from tools.smoke.exchange import RegionExchange, _Session

    class Ended:
        def __aiter__(self) -> Ended:
            return self

        async def __anext__(self) -> str:
            raise StopAsyncIteration

        async def send(self, message: str) -> None:
            pass

    async def main() -> BaseException | None:
        ws: Any = Ended()
        session = _Session(ws, RegionExchange(ORIGIN), "run", "room", asyncio.Condition(), {})
        await session.reader
        try:
            await session.request({"action": "download"}, timeout=3600)
        except (ConnectionError, TimeoutError) as error:
            return error
        return None

    assert isinstance(asyncio.run(asyncio.wait_for(main(), 60)), ConnectionError)


def test_the_attachment_check_can_be_skipped_and_is_bounded_by_the_limit(
    context_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, output = smoke_deployment(context_file, extra=("--attachment-bytes", "0"))
    assert status == 0, output
    assert all(cells[6] == "-" for cells in rows(output).values())
    assert "attachment check skipped (--attachment-bytes 0)" in output
    too_big = str(10 * 1024 * 1024 + 1)
    assert cli.main(["--context", str(context_file), "--attachment-bytes", too_big]) == 2
    assert (
        "--attachment-bytes must be 0 to maxAttachmentBytes (10485760)" in capsys.readouterr().err
    )


def test_a_stack_that_is_not_deployed_fails_its_region(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, deployed=REGIONS[:2])
    assert status == 1
    table = rows(output)
    assert table["ap-northeast-1"][1] == "FAIL"
    assert "ap-northeast-1: stack chat-prod-ap-northeast-1: ValidationError" in output
    assert table["us-east-1"][3] == "2/2" and table["us-east-1"][7] == "PASS"


def test_a_token_from_the_command_line_is_used(context_file: Path) -> None:
    with ChatServers(REGIONS, SECRET) as servers:
        deploy(servers)
        create_secret()
        good = mint_token(SECRET, "ops")
        assert smoke(context_file, "--token", good)[0] == 0
        status, output = smoke(context_file, "--token", mint_token("another secret", "ops"))
    assert status == 1
    assert "us-east-1: connect: HTTP 401 at the handshake" in output


def test_the_minted_token_outlives_the_attachment_wait(
    context_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection whose token expires is closed: the token must last the whole check."""
    ttls: list[int] = []

    def recording(secret: str, sub: str, **options: Any) -> str:
        ttls.append(options["ttl_seconds"])
        return mint_token(secret, sub, **options)

    monkeypatch.setattr(cli, "mint_token", recording)
    with ChatServers(REGIONS, SECRET) as servers:
        deploy(servers)
        create_secret()
        status, output = smoke(context_file, "--attachment-wait", "900")
        assert status == 0, output
        # a wait over maxTokenLifetimeHours (24) gets the longest token the authorizer takes
        assert smoke(context_file, "--attachment-wait", "1e6")[0] == 0
    assert ttls[0] >= 10 + 0.3 + 900  # --timeout, --settle, --attachment-wait
    assert ttls[0] >= 910.3 + cli.TOKEN_TTL_MARGIN_SECONDS  # and the steps' own timeouts
    assert ttls[1] == 24 * 3600


def test_an_unreadable_secret_is_reported_without_connecting(context_file: Path) -> None:
    status, output = smoke_deployment(context_file, secret=False)
    assert status == 1
    assert (
        "no connection attempted: GetSecretValue chat/prod/token-signing-secret in us-east-1: "
        in output
    )
    assert "ResourceNotFoundException" in output and "(or pass --token)" in output
    assert all(cells[4] == "error" for cells in rows(output).values())


def test_region_and_stage_overrides_name_the_stacks(context_file: Path) -> None:
    with ChatServers(("eu-west-1",), SECRET) as servers:
        deploy_stack("eu-west-1", {"WebSocketUrl": servers.urls["eu-west-1"]})
        boto3.client("cloudformation", region_name="eu-west-1").create_stack(
            StackName="chat-dev-eu-west-1",
            TemplateBody=json.dumps({
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"WebSocketUrl": {"Value": servers.urls["eu-west-1"]}},
            }),
        )  # fmt: skip
        boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="chat/dev/token-signing-secret", SecretString=SECRET
        )
        status, output = smoke(context_file, "--stage", "dev", "--regions", "eu-west-1")
    assert status == 0, output
    assert rows(output)["eu-west-1"][4] == "primary"


def test_bad_arguments_exit_2(context_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--context", str(context_file), "--regions", "mars-1"]) == 2
    assert "Invalid context value for 'regions'" in capsys.readouterr().err
    missing = context_file.parent / "nothing.json"
    assert cli.main(["--endpoints-file", str(missing)]) == 2
    assert "not found" in capsys.readouterr().err


# ---- the parts on their own ------------------------------------------------


def test_describe_stacks_answers_are_read_per_region() -> None:
    """A stack rolled back still has outputs: it is reported, not trusted (Stubber)."""
    client = boto3.client("cloudformation", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_response(
        "describe_stacks",
        {"Stacks": [{
            "StackName": "chat-prod-eu-west-1", "CreationTime": "2026-01-01T00:00:00Z",
            "StackStatus": "UPDATE_ROLLBACK_COMPLETE",
            "Outputs": [{"OutputKey": "WebSocketUrl", "OutputValue": "wss://x/prod"}],
        }]},
        {"StackName": "chat-prod-eu-west-1"},
    )  # fmt: skip
    stubber.add_client_error(
        "describe_stacks",
        "Throttling",
        "Rate exceeded",
        expected_params={"StackName": "chat-prod-us-east-1"},
    )

    class Session:
        def client(self, service: str, region_name: str) -> Any:
            assert service == "cloudformation"
            return client

    config = ChatConfig(regions=("eu-west-1", "us-east-1"))
    with stubber:
        eu, us = from_stacks(Session(), config)
    assert eu.websocket_url == "wss://x/prod"
    assert eu.problem == "stack chat-prod-eu-west-1 is UPDATE_ROLLBACK_COMPLETE"
    assert (
        us.websocket_url is None
        and us.problem == "stack chat-prod-us-east-1: Throttling: Rate exceeded"
    )


def test_replicas_are_asked_of_the_actual_primary() -> None:
    """signingSecretManaged=false with the primary elsewhere: its ReplicationStatus counts."""
    boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name=SECRET_NAME, SecretString=SECRET,
        AddReplicaRegions=[{"Region": "us-east-1"}, {"Region": "ap-northeast-1"}],
    )  # fmt: skip
    checks = check_replicas(
        lambda region: boto3.client("secretsmanager", region_name=region),
        SECRET_NAME,
        "us-east-1",
        REGIONS,
    )
    assert {r: (c.status, c.ok) for r, c in checks.items()} == {
        "us-east-1": ("InSync", True),
        "eu-west-1": ("primary", True),
        "ap-northeast-1": ("InSync", True),
    }


def test_replication_in_progress_is_not_a_pass() -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response(
        "describe_secret",
        {"Name": SECRET_NAME, "ReplicationStatus": [
            {"Region": "eu-west-1", "Status": "InProgress", "StatusMessage": "In progress"},
            {"Region": "ap-northeast-1", "Status": "InSync"},
        ]},
        {"SecretId": SECRET_NAME},
    )  # fmt: skip
    with stubber:
        checks = check_replicas(lambda region: client, SECRET_NAME, "us-east-1", REGIONS)
    assert checks["eu-west-1"].status == "InProgress" and not checks["eu-west-1"].ok
    assert checks["ap-northeast-1"].ok and checks["us-east-1"].status == "primary"


def test_endpoints_file_mode_skips_the_replica_check_with_a_reason(tmp_path: Path) -> None:
    with ChatServers(REGIONS[:2], SECRET) as servers:
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps({
            "regions": {r: {"websocket": u, "http": "http://x"} for r, u in servers.urls.items()},
            "signingSecret": SECRET,
        }))  # fmt: skip
        out = io.StringIO()
        status = cli.run(
            ["--endpoints-file", str(endpoints), "--context", str(tmp_path / "none.json"),
             "--settle", "0"],
            out=out,
        )  # fmt: skip
    output = out.getvalue()
    assert status == 0, output
    assert [cells[4] for cells in rows(output).values()] == ["skipped", "skipped"]
    assert f"replica check skipped: {endpoints} exposes no Secrets Manager endpoint" in output


def test_endpoints_file_problems() -> None:
    from tools.smoke.errors import SmokeSetupError

    with pytest.raises(SmokeSetupError, match="not found"):
        from_endpoints_file(Path("/nonexistent/endpoints.json"))
