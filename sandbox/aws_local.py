"""The moto server (DynamoDB, SQS, S3, Secrets Manager, SSM of every region) and what the
templates put in it: tables (keys, indexes, streams, TTL), queues (attributes, redrive to a DLQ),
buckets (versioning, CORS), secrets (given or generated), SSM parameters.

moto runs with ``MOTO_ACCOUNT_ID`` = the resolver's account, so the ARNs and queue URLs it
answers are the ones the templates resolve to (a RedrivePolicy's ``deadLetterTargetArn``, an
event source mapping's ``EventSourceArn``).

moto runs in its own process (``python -m sandbox.aws_local --port N``) so the handlers' database
calls do not compete with the sandbox's event loop for one interpreter lock, behind an aiohttp
server rather than werkzeug's (``sandbox.moto_front``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import secrets
import signal
import string
import sys
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError
from sandbox.resolver import ACCOUNT_ID
from sandbox.template_model import QueueSpec, RegionModel, SecretSpec

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_SESSION_TOKEN": "sandbox",
}


class MotoProcess:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as sink:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sandbox.aws_local", "--port", str(self.port),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
                cwd=str(Path(__file__).resolve().parent.parent),
                env={**os.environ, "MOTO_ACCOUNT_ID": ACCOUNT_ID},
                start_new_session=True,
            )  # fmt: skip

    async def wait_ready(self, timeout: float = 60.0) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if text != "READY":
            detail = self._log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise SandboxError(
                f"the moto server (DynamoDB) did not start on 127.0.0.1:{self.port}: "
                f"{detail[0] if detail else text or 'no answer'} (see {self._log_path})"
            )

    def kill_now(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), 3.0)
                return
            except TimeoutError:
                continue


def generate_secret(spec: SecretSpec) -> str:
    """A SecretString, given or generated like GenerateSecretString."""
    if spec.secret_string is not None:
        return str(spec.secret_string)
    options = spec.generate or {}
    alphabet = ""
    if not options.get("ExcludeLowercase"):
        alphabet += string.ascii_lowercase
    if not options.get("ExcludeUppercase"):
        alphabet += string.ascii_uppercase
    if not options.get("ExcludeNumbers"):
        alphabet += string.digits
    if not options.get("ExcludePunctuation"):
        alphabet += "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    if options.get("IncludeSpace"):
        alphabet += " "
    excluded = set(str(options.get("ExcludeCharacters", "")))
    alphabet = "".join(c for c in alphabet if c not in excluded) or string.ascii_letters
    length = int(options.get("PasswordLength", 32))
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    template = options.get("SecretStringTemplate")
    key = options.get("GenerateStringKey")
    if template and key:
        document = json.loads(template)
        document[key] = value
        return json.dumps(document)
    return value


def provision(
    model: RegionModel,
    endpoint: str,
    secret_values: Mapping[str, str],
    *,
    replicas: Mapping[str, Sequence[str]] | None = None,
    replicated_here: Collection[str] = (),
) -> None:
    """Create the region's tables, secrets and parameters in moto (blocking; run in a thread).

    ``secret_values`` maps each secret name this region must hold to its value: the
    template's own secrets, replicas of other regions' secrets, and the signing
    secret its authorizer reads by name (see ``Sandbox._prepare_secrets``). A secret
    in ``replicas`` is created with those replica regions (moto replicates it, and
    the primary reports ``ReplicationStatus``); a name in ``replicated_here`` is left
    to the primary region's replication.
    """
    import boto3

    session = boto3.session.Session(region_name=model.region, **_credential_kwargs())
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    for table in model.tables:
        try:
            dynamodb.create_table(**table.create_args)
        except dynamodb.exceptions.ResourceInUseException:
            continue
        except Exception as exc:
            raise SandboxError(
                f"stack {model.stack.name} ({model.region}) resource {table.logical_id}: "
                f"moto refused the table definition: {exc}"
            ) from exc
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
    if model.queues:
        _create_queues(session.client("sqs", endpoint_url=endpoint), model)
    if secret_values:
        manager = session.client("secretsmanager", endpoint_url=endpoint)
        _create_secrets(manager, secret_values, replicas or {}, replicated_here)
    if model.buckets:
        _create_buckets(session.client("s3", endpoint_url=endpoint), model)
    if model.parameters:
        ssm = session.client("ssm", endpoint_url=endpoint)
        for parameter in model.parameters:
            ssm.put_parameter(
                Name=parameter.name, Value=parameter.value, Type=parameter.kind, Overwrite=True
            )


def send_to_queue(endpoint: str, queue_arn: str, body: str, attributes: Mapping[str, str]) -> None:
    """SendMessage to the queue ``queue_arn`` names (any region) with string attributes (blocking).

    How EventBridge hands an undeliverable event to a target's dead-letter queue.
    """
    import boto3

    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"{queue_arn} is not a queue ARN")
    region, account, name = parts[3], parts[4], parts[5]
    session = boto3.session.Session(region_name=region, **_credential_kwargs())
    session.client("sqs", endpoint_url=endpoint).send_message(
        QueueUrl=f"{endpoint}/{account}/{name}",
        MessageBody=body,
        MessageAttributes={
            key: {"DataType": "String", "StringValue": value} for key, value in attributes.items()
        },
    )


def local_queue_url(endpoint: str, queue: QueueSpec) -> str:
    """The queue's URL at moto, as moto's own GetQueueUrl answers it."""
    return f"{endpoint}/{ACCOUNT_ID}/{queue.name}"


def _create_queues(sqs: Any, model: RegionModel) -> None:
    """Every queue first, then the redrive policies (a DLQ must exist before it is named)."""
    by_arn = {queue.arn for queue in model.queues.values()}
    for queue in model.queues.values():
        try:
            sqs.create_queue(QueueName=queue.name, Attributes=queue.attributes)
        except Exception as exc:
            raise SandboxError(
                f"stack {model.stack.name} ({model.region}) resource {queue.logical_id}: "
                f"moto refused the queue definition: {exc}"
            ) from exc
    for queue in model.queues.values():
        if queue.dead_letter_arn in by_arn:
            policy = {
                "deadLetterTargetArn": queue.dead_letter_arn,
                "maxReceiveCount": queue.max_receive_count,
            }
            sqs.set_queue_attributes(
                QueueUrl=local_queue_url(sqs.meta.endpoint_url, queue),
                Attributes={"RedrivePolicy": json.dumps(policy)},
            )


def _create_secrets(
    manager: Any,
    secret_values: Mapping[str, str],
    replicas: Mapping[str, Sequence[str]],
    replicated_here: Collection[str],
) -> None:
    for name, value in secret_values.items():
        if name in replicated_here:
            continue
        replica_regions = replicas.get(name) or ()
        extra: dict[str, Any] = {}
        if replica_regions:
            extra["AddReplicaRegions"] = [{"Region": region} for region in replica_regions]
        manager.create_secret(Name=name, SecretString=value, **extra)


def _create_buckets(s3: Any, model: RegionModel) -> None:
    """The region's buckets with their versioning and CORS (moto keeps both; versioning is
    what S3 Replication requires of a source and a destination)."""
    location = {} if model.region == "us-east-1" else {"LocationConstraint": model.region}
    for bucket in model.buckets:
        try:
            s3.create_bucket(Bucket=bucket.name, CreateBucketConfiguration=location)
        except Exception as exc:
            raise SandboxError(
                f"stack {model.stack.name} ({model.region}) resource {bucket.logical_id}: "
                f"moto refused the bucket {bucket.name}: {exc}"
            ) from exc
        if bucket.versioned:
            s3.put_bucket_versioning(
                Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"}
            )
        if bucket.cors_rules:
            s3.put_bucket_cors(
                Bucket=bucket.name, CORSConfiguration={"CORSRules": bucket.cors_rules}
            )


def sandbox_client(service: str, region: str, endpoint: str) -> Any:
    """A boto3 client of moto signed with the sandbox's own key (not counted as the app's)."""
    import boto3

    session = boto3.session.Session(region_name=region, **_credential_kwargs())
    return session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


def _credential_kwargs() -> dict[str, Any]:
    return {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="sandbox.aws_local")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from sandbox.calls import CountingApp, moto_item_size
    from sandbox.gc_pauses import freeze_after_full_collections
    from sandbox.moto_dispatch import DirectDispatch
    from sandbox.moto_front import MotoFront
    from sandbox.moto_speedups import install
    from sandbox.s3_post_policy import PolicyCheck
    from sandbox.s3_replication_rules import ReplicationCheck

    install()
    freeze_after_full_collections()

    moto_app = DirectDispatch(
        ReplicationCheck(PolicyCheck(DomainDispatcherApplication(create_backend_app)))
    )
    app = CountingApp(moto_app, moto_item_size(ACCOUNT_ID))
    front = MotoFront(app, "127.0.0.1", args.port)
    ready = threading.Event()
    failure: list[BaseException] = []

    profile_path = os.environ.get("SANDBOX_MOTO_PROFILE")  # docs/sandbox.md, "Capacity"
    profiler = cProfile.Profile() if profile_path else None

    def serve() -> None:
        if profiler is not None:
            profiler.enable()  # this thread: every request is handled on it (or its pool)
        try:
            asyncio.run(front.serve(ready.set))
        except BaseException as exc:  # the port is taken, say: reported below
            failure.append(exc)
            ready.set()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait()
    if failure:
        sys.stderr.write(f"port {args.port}: {failure[0]}\n")
        sys.exit(1)
    sys.stdout.write("READY\n")
    sys.stdout.flush()

    def exit_when_parent_goes() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    if profiler is not None and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    os._exit(0)


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
