"""Starts and stops the whole sandbox: moto, workers, and each region's local services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from sandbox import custom_resources
from sandbox.assembly import load_stacks
from sandbox.aws_local import (
    FAKE_CREDENTIALS,
    MotoProcess,
    generate_secret,
    local_queue_url,
    provision,
    send_to_queue,
)
from sandbox.bus_latency import BusLatency
from sandbox.calls import CallCounts, counting_middleware, function_access_key
from sandbox.chaos import Chaos
from sandbox.errors import SandboxError
from sandbox.event_sources import QueuePoller
from sandbox.eventbus import DEFAULT_RETRY_TIME_SCALE, ForwardFailure, RegionBus
from sandbox.events_api import events_app
from sandbox.function_pool import InvokeResult, Worker
from sandbox.http_api import HttpApi
from sandbox.management import ManagementApi, RateLimit
from sandbox.oidc import LocalIdentityProvider, declared_issuer
from sandbox.resolver import ACCOUNT_ID, URL_SUFFIX
from sandbox.s3_replication import S3Replication
from sandbox.template_model import RegionModel, SecretSpec, TemplateFunction, build_models
from sandbox.websocket_api import WebSocketApi

log = logging.getLogger("sandbox")

HOST = "127.0.0.1"
PORTS_PER_REGION = 4


@dataclass
class Options:
    cdk_out: Path = Path("cdk.out")
    regions: list[str] | None = None
    port_base: int = 8700
    endpoints_file: Path = Path("sandbox-endpoints.json")
    mgmt_latency_ms: float = 0.0
    mgmt_rate_limit: float | None = None  # @connections requests/s per region (None: no limit)
    mgmt_rate_burst: float | None = None  # the token bucket's capacity (None: the rate)
    state_dir: Path = Path(".sandbox")
    handler_logs: str = "file"  # file, or stderr (also mirrored to the sandbox's stderr)
    signing_secret: str | None = None
    oidc: bool = False  # be the token issuer the templates declare (sandbox.oidc)
    # new WebSocket connections/s per region (None: no limit); the excess is answered 429
    connect_rate_limit: float | None = None
    # EventBridge retry delays and event ages are multiplied by this (docs/sandbox.md, "Chaos")
    retry_time_scale: float = DEFAULT_RETRY_TIME_SCALE
    bus_latency: BusLatency | None = None  # --bus-latency-ms: delay of each bus delivery
    down_regions: list[str] = field(default_factory=list)  # down from the start
    cut_links: list[tuple[str, str]] = field(default_factory=list)  # (from, to) cut from the start


@dataclass(frozen=True)
class RegionPorts:
    websocket: int
    http: int
    management: int
    events: int


def plan_ports(port_base: int, count: int) -> tuple[int, int, list[RegionPorts]]:
    """Web page at port-base, moto at port-base+1, then 4 consecutive ports per region."""
    last = port_base + 1 + PORTS_PER_REGION * count
    if port_base < 1024 or last > 65535:
        raise SandboxError(f"--port-base {port_base}: the ports {port_base}-{last} are not usable")
    regions = []
    for index in range(count):
        first = port_base + 2 + PORTS_PER_REGION * index
        regions.append(RegionPorts(first, first + 1, first + 2, first + 3))
    return port_base, port_base + 1, regions


@dataclass
class RegionRuntime:
    model: RegionModel
    ports: RegionPorts
    workers: dict[str, Worker] = field(default_factory=dict)
    websocket: WebSocketApi | None = None
    management: ManagementApi | None = None
    http: HttpApi | None = None
    bus: RegionBus | None = None
    pollers: list[QueuePoller] = field(default_factory=list)
    http_runner: web.AppRunner | None = None
    http_site: web.TCPSite | None = None  # None while the region is down (chaos)

    @property
    def region(self) -> str:
        return self.model.region

    def urls(self) -> dict[str, str]:
        stage = self.model.websocket.stage if self.model.websocket else ""
        urls = {
            "websocket": f"ws://{HOST}:{self.ports.websocket}/{stage}",
            "http": f"http://{HOST}:{self.ports.http}",
            "management": f"http://{HOST}:{self.ports.management}/{stage}",
            "events": f"http://{HOST}:{self.ports.events}",
        }
        http_api = self.model.http
        if http_api is not None and http_api.stage != "$default":
            urls["http"] += f"/{http_api.stage}"
        if self.model.websocket is None:
            del urls["websocket"], urls["management"]
        return urls


def _secret_name(value: str) -> str:
    """A secret's name from its name or ARN (``...:secret:<name>-<6 characters>``)."""
    if value.startswith("arn:") and ":secret:" in value:
        name = value.split(":secret:", 1)[1]
        return name[:-7] if re.search(r"-[A-Za-z0-9?]{6}$", name) else name
    return value


def _generated_signing_secret() -> str:
    return generate_secret(
        SecretSpec("", "", "", None, {"ExcludePunctuation": True, "PasswordLength": 64})
    )


class Sandbox:
    def __init__(self, options: Options, echo: TextIO | None = None) -> None:
        self.options = options
        self._echo = echo if echo is not None else sys.stderr
        self.regions: list[RegionRuntime] = []
        self.web_port = 0
        self._moto: MotoProcess | None = None
        self._runners: list[web.AppRunner] = []
        self._secret_values: dict[str, dict[str, str]] = {}
        # region -> {secret name: its ReplicaRegions}: secrets that region's template
        # creates with replicas (made through Secrets Manager's own replication).
        self._secret_replicas: dict[str, dict[str, tuple[str, ...]]] = {}
        self.signing_secret: str | None = None
        self.signing_secret_names: tuple[str, ...] = ()
        self.identity_provider: LocalIdentityProvider | None = None
        self.started_at = 0.0
        self.ready_seconds = 0.0
        self._endpoints_written = False
        self.chaos = Chaos(self)
        self.calls = CallCounts()  # the functions' requests to the sandbox's own services
        self.s3_replication: S3Replication | None = None

    # ----------------------------------------------------------------- start

    async def start(self) -> None:
        self.started_at = time.perf_counter()
        options = self.options
        models = build_models(load_stacks(options.cdk_out), options.regions)
        for model in models:
            for warning in model.warnings:
                log.warning("%s", warning)
        local = f"python{sys.version_info.major}.{sys.version_info.minor}"
        runtimes = sorted({f.runtime for m in models for f in m.functions.values()} - {local})
        if runtimes:
            log.info("handlers declare %s; they run here on %s", ", ".join(runtimes), local)
        self.web_port, moto_port, ports = plan_ports(options.port_base, len(models))
        self.regions = [RegionRuntime(m, p) for m, p in zip(models, ports, strict=True)]
        _remove_stale(options.endpoints_file)
        logs = options.state_dir / "logs"
        self._moto = MotoProcess(moto_port, logs / "moto.log")
        await self._moto.start()
        self._prepare_secrets()
        self._prepare_identity_provider()
        workers = []
        for runtime in self.regions:
            for spec in runtime.model.functions.values():
                worker = Worker(
                    spec,
                    self._environment(runtime, spec),
                    self._code_dir(spec),
                    logs / runtime.region / f"{spec.logical_id}.log",
                    self._echo if options.handler_logs == "stderr" else None,
                )
                runtime.workers[spec.logical_id] = worker
                workers.append(worker)
        await asyncio.gather(self._moto.wait_ready(), *(w.start() for w in workers))
        await asyncio.gather(
            *(
                asyncio.to_thread(
                    provision,
                    r.model,
                    self._moto.url,
                    self._secret_values.get(r.region, {}),
                    replicas=self._secret_replicas.get(r.region, {}),
                    replicated_here=self._replicated_into(r.region),
                )
                for r in self.regions
            )
        )
        await custom_resources.create_all(self.regions, self._moto.url)
        self.s3_replication = S3Replication(self.regions, self._moto.url, self.chaos)
        await self.s3_replication.start()
        for runtime in self.regions:
            await self._start_region(runtime)
        await self._start_web()
        for source, target in options.cut_links:
            self.chaos.cut_link(source, target)
        for region in options.down_regions:
            await self.chaos.region_down(region)
        self.ready_seconds = time.perf_counter() - self.started_at
        self._write_endpoints()

    # TODO(issue 12, 10identity): rewritten to read the secret from the template references.
    def _prepare_secrets(self) -> None:  # noqa: C901, PLR0912
        """The secrets of every region, by name; the signing secret is one value everywhere.

        A template's secret exists in its region and in its ``ReplicaRegions``
        with one value (as Secrets Manager replicates it). A signing secret is
        one an authorizer function may read, found through the template's own
        references: the resources of the ``secretsmanager:GetSecretValue``
        statements on the function's role (``TemplateFunction.readable_secrets``):
        a secret of *any* region's template by ARN (the app creates it in the
        first region and the others refer to it by name), or an ARN pattern
        ``...:secret:<name>-??????`` (a secret referenced by name, or made
        outside the app). Each signing secret gets ``--signing-secret`` (else
        one generated value) in every region, under that name, and becomes
        the endpoints file's ``signingSecret``.
        """
        defined: dict[str, SecretSpec] = {}
        by_arn: dict[str, str] = {}
        for runtime in self.regions:
            for secret in runtime.model.secrets:
                defined.setdefault(secret.name, secret)
                by_arn[secret.arn] = secret.name
        signing: set[str] = set()
        for runtime in self.regions:
            model = runtime.model
            for authorizer in model.authorizers:
                spec = model.functions.get(authorizer.function)
                for resource in spec.readable_secrets if spec else ():
                    if resource in by_arn:
                        signing.add(by_arn[resource])
                    elif ":secret:" in resource:
                        signing.add(_secret_name(resource))
        shared = self.options.signing_secret
        if signing and shared is None:
            first = next((defined[name] for name in sorted(signing) if name in defined), None)
            shared = generate_secret(first) if first else _generated_signing_secret()
        running = {runtime.region for runtime in self.regions}
        values: dict[str, dict[str, str]] = {region: {} for region in running}
        for runtime in self.regions:
            for secret in runtime.model.secrets:
                value = shared if secret.name in signing and shared else generate_secret(secret)
                for region in (runtime.region, *secret.replica_regions):
                    if region in running:
                        values[region].setdefault(secret.name, value)
        for name in sorted(signing):
            for region in running:
                values[region][name] = shared or ""
        self._secret_values = values
        self._secret_replicas = {
            runtime.region: {
                secret.name: secret.replica_regions
                for secret in runtime.model.secrets
                if secret.replica_regions
            }
            for runtime in self.regions
        }
        self.signing_secret_names = tuple(sorted(signing))
        if signing:
            self.signing_secret = shared
        elif any(r.model.authorizers for r in self.regions):
            self.signing_secret = self.options.signing_secret

    def _replicated_into(self, region: str) -> frozenset[str]:
        """Names that reach ``region`` as replicas of a running region's secret (moto's
        replication creates them there, as Secrets Manager does: with ``ReplicationStatus``
        on the primary, which the post-deploy check reads)."""
        return frozenset(
            name
            for primary, replicated in self._secret_replicas.items()
            if primary != region
            for name, replica_regions in replicated.items()
            if region in replica_regions
        )

    def _prepare_identity_provider(self) -> None:
        """``--oidc``: become the issuer the templates declare (sandbox.oidc)."""
        try:
            declared = declared_issuer([r.model.outputs for r in self.regions])
        except ValueError as error:
            raise SandboxError(str(error)) from None
        if declared is None:
            if self.options.oidc:
                raise SandboxError(
                    "--oidc: the templates declare no token issuer (outputs TokenIssuer and "
                    "TokenAudience); synthesize with -c jwtIssuer=https://... -c jwtAudience=..."
                )
            return
        issuer, audience = declared
        if not self.options.oidc:
            log.warning(
                "the templates' tokens come from %s: the authorizers fetch its keys there; "
                "pass --oidc to make the sandbox that issuer",
                issuer,
            )
            return
        self.identity_provider = LocalIdentityProvider.create(
            issuer, audience, self.web_port, self.options.state_dir
        )

    def _code_dir(self, spec: TemplateFunction) -> Path:
        if spec.code_dir is not None:
            return spec.code_dir
        folder = (self.options.state_dir / "inline" / spec.region / spec.logical_id).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        module = spec.handler.rpartition(".")[0]
        (folder / f"{module}.py").write_text(spec.inline_code or "", encoding="utf-8")
        return folder

    def local_url(self, value: str) -> str:
        """Map AWS URLs of the app's own APIs and queues, and with ``--oidc`` the token
        issuer's, to local endpoints (docs/sandbox.md)."""
        value = self._local_queue_urls(value)
        if self.identity_provider is not None:
            value = self.identity_provider.local_url(value)
        table: dict[str, tuple[str, str]] = {}
        for runtime in self.regions:
            ws_api, http_api = runtime.model.websocket, runtime.model.http
            if ws_api is not None:
                table[ws_api.api_id] = (
                    f"http://{HOST}:{runtime.ports.management}",
                    f"ws://{HOST}:{runtime.ports.websocket}",
                )
            if http_api is not None:
                table[http_api.api_id] = (f"http://{HOST}:{runtime.ports.http}", "")

        def replace(match: re.Match[str]) -> str:
            local = table.get(match.group("api"))
            if local is None:
                return match.group(0)
            https, wss = local
            chosen = wss if match.group("scheme") == "wss" else https
            return chosen or match.group(0)

        return re.sub(
            rf"(?P<scheme>https|wss)://(?P<api>[a-z0-9]{{10}})\.execute-api\.[a-z0-9-]+\."
            rf"{re.escape(URL_SUFFIX)}",
            replace,
            value,
        )

    def _local_queue_urls(self, value: str) -> str:
        """``https://sqs.<region>.amazonaws.com/<account>/<name>`` of a queue -> its moto URL."""
        if "https://sqs." not in value or self._moto is None:
            return value
        table = {
            queue.url: local_queue_url(self._moto.url, queue)
            for runtime in self.regions
            for queue in runtime.model.queues.values()
        }
        return re.sub(
            rf"https://sqs\.[a-z0-9-]+\.{re.escape(URL_SUFFIX)}/{ACCOUNT_ID}/[A-Za-z0-9_.-]+",
            lambda match: table.get(match.group(0), match.group(0)),
            value,
        )

    def _environment(self, runtime: RegionRuntime, spec: TemplateFunction) -> dict[str, str]:
        assert self._moto is not None
        environment = {k: self.local_url(v) for k, v in spec.environment.items()}
        code_dir = str(self._code_dir(spec))
        management = runtime.urls().get("management", "")
        environment.update(
            {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "C.UTF-8",
                "TZ": "UTC",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",  # leave cdk.out's asset folders as they are
                "AWS_REGION": runtime.region,
                "AWS_DEFAULT_REGION": runtime.region,
                **FAKE_CREDENTIALS,
                # The function's own access key: the services count its requests by it.
                "AWS_ACCESS_KEY_ID": function_access_key(runtime.region, spec.logical_id),
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                # Every service reaches moto unless a local endpoint of its own is set below:
                # nothing a handler does can reach AWS.
                "AWS_ENDPOINT_URL": self._moto.url,
                "AWS_ENDPOINT_URL_DYNAMODB": self._moto.url,
                "AWS_ENDPOINT_URL_SQS": self._moto.url,
                "AWS_ENDPOINT_URL_EVENTBRIDGE": f"http://{HOST}:{runtime.ports.events}",
                "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": management,
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": "local/[$LATEST]sandbox",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "LAMBDA_TASK_ROOT": code_dir,
                "_HANDLER": spec.handler,
                "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
                # runtime.auth.jwks.LOOPBACK_SETTING: the local issuer (--oidc) is http on
                # 127.0.0.1; deployed functions never get it (docs/sandbox.md).
                "CHAT_SANDBOX_LOOPBACK_ISSUER": "1",
            }
        )
        if not management:
            del environment["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
        return environment

    async def _listen(
        self, app: web.Application, port: int, what: str
    ) -> tuple[web.AppRunner, web.TCPSite]:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        return runner, await _site(runner, port, what)

    async def stop_http(self, runtime: RegionRuntime) -> None:
        """Stop listening on the region's HTTP API port and drop its open connections (chaos)."""
        if runtime.http_site is not None:
            await runtime.http_site.stop()
            runtime.http_site = None
        server = runtime.http_runner.server if runtime.http_runner else None
        for handler in list(server.connections if server else []):
            handler.force_close()

    async def start_http(self, runtime: RegionRuntime) -> None:
        if runtime.http_site is None and runtime.http_runner is not None:
            runtime.http_site = await _site(
                runtime.http_runner, runtime.ports.http, f"{runtime.region} HTTP API"
            )

    async def _start_region(self, runtime: RegionRuntime) -> None:
        region = runtime.region

        def invoker(default_timeout: float | None = None) -> Any:
            async def invoke(
                function: str, event: Any, timeout: float | None = default_timeout
            ) -> InvokeResult:
                worker = runtime.workers[function]
                limit = (
                    worker.spec.timeout_seconds
                    if timeout is None
                    else min(timeout, worker.spec.timeout_seconds)
                )
                return await worker.invoke(event, limit)

            return invoke

        invoke = invoker()

        async def invoke_async(function: str, event: Any) -> tuple[bool, str]:
            result = await invoke(function, event)
            return result.ok, f"{result.error_type}: {result.error_message}"

        runtime.bus = RegionBus(
            runtime.model,
            invoke_async,
            self._forward,
            dead_letter=self._dead_letter,
            retry_time_scale=self.options.retry_time_scale,
            latency=self.options.bus_latency,
        )
        events = events_app(runtime.bus)
        events.middlewares.append(counting_middleware(self.calls))
        await self._listen(events, runtime.ports.events, f"{region} events")
        runtime.http = HttpApi(region, runtime.model.http, invoke)
        runtime.http_runner, runtime.http_site = await self._listen(
            runtime.http.app(), runtime.ports.http, f"{region} HTTP API"
        )
        if runtime.model.websocket is not None:
            limit = self.options.connect_rate_limit
            runtime.websocket = WebSocketApi(
                region,
                runtime.model.websocket,
                invoke,
                connect_limit=RateLimit(limit) if limit else None,
            )
            runtime.management = ManagementApi(
                runtime.websocket,
                self.options.mgmt_latency_ms,
                self.options.mgmt_rate_limit,
                self.options.mgmt_rate_burst,
            )
            management = runtime.management.app()
            management.middlewares.append(counting_middleware(self.calls))
            await self._listen(management, runtime.ports.management, f"{region} management API")
            try:
                await runtime.websocket.start(HOST, runtime.ports.websocket)
            except OSError as exc:
                raise _port_error(runtime.ports.websocket, f"{region} WebSocket API", exc) from exc
        assert self._moto is not None
        for mapping in runtime.model.mappings:
            poller = QueuePoller(
                mapping,
                runtime.model.queues[mapping.queue],
                region,
                self._moto.url,
                invoke,
                runtime.model.functions[mapping.function].reserved_concurrency,
            )
            runtime.pollers.append(poller)
            await poller.start()

    async def _forward(
        self, region: str, bus: str, event: dict[str, Any], source_arn: str
    ) -> ForwardFailure | None:
        source_region = source_arn.split(":")[3]
        cut = self.chaos.forward_failure(source_region, region)
        if cut is not None:
            return cut
        for runtime in self.regions:
            if runtime.region == region and runtime.bus is not None:
                if bus not in runtime.bus.buses:
                    return ForwardFailure(
                        "RESOURCE_NOT_FOUND", f"no event bus {bus} in {region}", False
                    )
                runtime.bus.dispatch(bus, dict(event), arrived_from=source_arn)
                return None
        # Not an outage: the region is simply not part of this run.
        return ForwardFailure(
            "RESOURCE_NOT_FOUND",
            f"region {region} is not running in this sandbox (--regions)",
            False,
        )

    async def _dead_letter(
        self, queue_arn: str, body: str, attributes: dict[str, str]
    ) -> str | None:
        """Put an undeliverable event on a dead-letter queue in moto; an error, or None."""
        assert self._moto is not None
        try:
            await asyncio.to_thread(send_to_queue, self._moto.url, queue_arn, body, attributes)
        except Exception as exc:  # the queue is missing or moto refused: reported by the bus
            return f"{type(exc).__name__}: {exc}"
        return None

    async def _start_web(self) -> None:
        from sandbox.web import web_app

        await self._listen(web_app(self), self.web_port, "web page")

    # ----------------------------------------------------------------- endpoints

    def endpoints(self) -> dict[str, Any]:
        assert self._moto is not None
        document: dict[str, Any] = {
            "regions": {r.region: r.urls() for r in self.regions},
            "web": f"http://{HOST}:{self.web_port}/",
            "dynamodb": self._moto.url,
            "pid": os.getpid(),
        }
        queues = {
            r.region: {
                q.logical_id: {"url": local_queue_url(self._moto.url, q), "arn": q.arn}
                for q in r.model.queues.values()
            }
            for r in self.regions
            if r.model.queues
        }
        if queues:
            document["queues"] = queues
        # Secrets Manager lives in the same moto server (tools.smoke reads replicas there).
        document["secretsmanager"] = self._moto.url
        if self.signing_secret is not None:
            document["signingSecret"] = self.signing_secret
        if len(self.signing_secret_names) == 1:
            document["signingSecretName"] = self.signing_secret_names[0]
        if self.identity_provider is not None:
            document["oidc"] = self.identity_provider.endpoints_entry()
        return document

    def _write_endpoints(self) -> None:
        path = self.options.endpoints_file
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".endpoints-")
        with os.fdopen(handle, "w", encoding="utf-8") as sink:
            json.dump(self.endpoints(), sink, indent=2)
            sink.write("\n")
        os.replace(temporary, path)
        self._endpoints_written = True

    def stats(self) -> dict[str, Any]:
        regions: dict[str, Any] = {}
        for runtime in self.regions:
            counters: dict[str, Any] = {}
            for name, source in (
                ("websocket", runtime.websocket),
                ("http", runtime.http),
                ("events", runtime.bus),
            ):
                if source is not None:
                    counters[name] = dict(source.counters)
            if runtime.management is not None:
                counters["management"] = runtime.management.stats()
                counters["virtualConnections"] = runtime.management.virtual.summary()
            counters["functions"] = {
                logical_id: {
                    "invocations": w.invocations,
                    "errors": w.errors,
                    "inFlight": w.in_flight,
                    "peakConcurrency": w.peak_in_flight,
                    "throttles": w.throttles,
                }
                for logical_id, w in runtime.workers.items()
            }
            if runtime.pollers:
                counters["eventSourceMappings"] = {
                    p.mapping.logical_id: p.stats() for p in runtime.pollers
                }
            regions[runtime.region] = counters
        total: Counter[str] = Counter()
        for runtime in self.regions:
            if runtime.bus is not None:
                total.update(runtime.bus.counters)
        return {
            "regions": regions,
            "droppedCrossBusEvents": total["dropped_cross_bus"],
            "deadLetteredEvents": total["dead_lettered"],
            "eventsInFlight": sum(r.bus.in_flight for r in self.regions if r.bus),
        }

    # ----------------------------------------------------------------- stop

    def kill_now(self) -> None:
        """Kill every child at once (a second Ctrl-C); the endpoints file goes too."""
        for runtime in self.regions:
            for worker in runtime.workers.values():
                worker.kill_now()
        if self._moto is not None:
            self._moto.kill_now()
        if self._endpoints_written:
            _remove_stale(self.options.endpoints_file, only_pid=os.getpid())

    async def queue_depths(self) -> dict[str, Any]:
        """Per region and queue: its URL, ARN, DLQ and message counts (GetQueueAttributes)."""
        assert self._moto is not None
        endpoint = self._moto.url

        def read(runtime: RegionRuntime) -> dict[str, Any]:
            import boto3

            client = boto3.session.Session().client(
                "sqs",
                region_name=runtime.region,
                endpoint_url=endpoint,
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            )
            found: dict[str, Any] = {}
            for queue in runtime.model.queues.values():
                url = local_queue_url(endpoint, queue)
                attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
                    "Attributes"
                ]
                found[queue.logical_id] = {
                    "name": queue.name,
                    "url": url,
                    "arn": queue.arn,
                    "deadLetterQueue": queue.dead_letter_arn,
                    "maxReceiveCount": queue.max_receive_count,
                    "messages": int(attributes.get("ApproximateNumberOfMessages", 0)),
                    "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                    "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
                }
            return found

        answers = await asyncio.gather(*(asyncio.to_thread(read, r) for r in self.regions))
        return {r.region: found for r, found in zip(self.regions, answers, strict=True)}

    async def stop(self) -> None:
        stats = self.stats() if self.regions else {}
        if self.s3_replication is not None:
            await self.s3_replication.stop()
        await asyncio.gather(
            *(p.stop() for r in self.regions for p in r.pollers), return_exceptions=True
        )
        if stats.get("droppedCrossBusEvents") or stats.get("deadLetteredEvents"):
            log.warning(
                "events: %d dropped by the one-hop rule, %d dead-lettered (see above)",
                stats["droppedCrossBusEvents"],
                stats["deadLetteredEvents"],
            )
        for runtime in self.regions:
            if runtime.websocket is not None:
                for connection in runtime.websocket.connections.values():
                    connection.skip_disconnect = True  # no $disconnect storm at shutdown
                await runtime.websocket.stop()
        for runtime in self.regions:
            if runtime.bus is not None:
                await runtime.bus.drain(1.0)
                await runtime.bus.cancel()
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()
        await asyncio.gather(
            *(w.stop() for r in self.regions for w in r.workers.values()),
            return_exceptions=True,
        )
        if self._moto is not None:
            await self._moto.stop()
        if self._endpoints_written:
            _remove_stale(self.options.endpoints_file, only_pid=os.getpid())
            self._endpoints_written = False


async def _site(runner: web.AppRunner, port: int, what: str) -> web.TCPSite:
    site = web.TCPSite(runner, HOST, port, reuse_address=True, shutdown_timeout=1.0)
    try:
        await site.start()
    except OSError as exc:
        raise _port_error(port, what, exc) from exc
    return site


def _port_error(port: int, what: str, exc: OSError) -> SandboxError:
    return SandboxError(
        f"cannot listen on {HOST}:{port} ({what}): {exc.strerror or exc}; is another sandbox "
        "running? Stop it or choose another --port-base"
    )


def _remove_stale(path: Path, only_pid: int | None = None) -> None:
    """Remove an endpoints file: ours at exit, or a dead run's at start (never a live one's)."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8")).get("pid")
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        owner = None
    if only_pid is not None and owner != only_pid:
        return
    if only_pid is None and isinstance(owner, int) and owner != os.getpid() and _alive(owner):
        return  # another sandbox is running with this file; ours overwrites it when ready
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
