"""S3 Replication between the sandbox's buckets, as the buckets' replication configurations say.

moto stores a bucket's replication configuration but copies nothing. After the custom
resources ran (:mod:`sandbox.custom_resources`: whatever the templates use to set the rules),
the sandbox reads each bucket's configuration (``GetBucketReplication``) and does what S3
does with it, asynchronously: every object written under an enabled rule's prefix is copied
(``CopyObject``: bytes, content type, metadata) to the rule's destination bucket. Replicas
are not replicated again (S3 only chains replication with rules on the replica's bucket for
objects *it* did not receive by replication).

The chaos controls apply: while the source's region or the destination's is down, or the link
source -> destination is cut, its copies wait and go once it heals, as S3 retries a pending
replication. New objects are found by listing each source bucket every ``POLL_SECONDS`` with
the sandbox's own credentials (not counted as the app's requests, docs/sandbox.md "Calls"):
the replication lag here is up to that interval plus the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.aws_local import sandbox_client

if TYPE_CHECKING:
    from sandbox.chaos import Chaos
    from sandbox.runtime import RegionRuntime

log = logging.getLogger("sandbox")

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Rule:
    prefix: str
    destination_bucket: str
    destination_region: str


@dataclass
class Source:
    region: str
    bucket: str
    rules: list[Rule]
    replicas: set[str] = field(default_factory=set)  # keys this sandbox copied into it


class S3Replication:
    def __init__(self, regions: list[RegionRuntime], endpoint: str, chaos: Chaos) -> None:
        self._endpoint = endpoint
        self._chaos = chaos
        self._region_of = {b.name: r.region for r in regions for b in r.model.buckets}
        self._s3 = sandbox_client("s3", "us-east-1", endpoint)
        self.sources: list[Source] = []
        self.copied = 0
        self._done: set[tuple[str, str, str]] = set()  # (destination bucket, key, ETag)
        self._task: asyncio.Task[None] | None = None

    def _read_rules(self, bucket: str, region: str) -> Source | None:
        try:
            config = self._s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
        except self._s3.exceptions.ClientError:  # no configuration: nothing to replicate
            return None
        rules = []
        for rule in config.get("Rules") or []:
            if rule.get("Status") != "Enabled":
                continue
            destination = str(rule["Destination"]["Bucket"]).rsplit(":", 1)[-1]
            prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
            if destination not in self._region_of:
                log.warning(
                    "%s: replication to %s, not a bucket of this sandbox", bucket, destination
                )
                continue
            rules.append(Rule(prefix, destination, self._region_of[destination]))
        return Source(region, bucket, rules) if rules else None

    async def start(self) -> None:
        for bucket, region in self._region_of.items():
            source = await asyncio.to_thread(self._read_rules, bucket, region)
            if source is not None:
                self.sources.append(source)
        if self.sources:
            self._task = asyncio.create_task(self._run(), name="s3-replication")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _held(self, source: str, destination: str) -> bool:
        chaos = self._chaos
        return (
            source in chaos.down or destination in chaos.down or (source, destination) in chaos.cut
        )

    def _pass(self) -> int:
        """One look at every source bucket; copies what is new and not held."""
        copied = 0
        for source in self.sources:
            for rule in source.rules:
                if self._held(source.region, rule.destination_region):
                    continue
                paginator = self._s3.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=source.bucket, Prefix=rule.prefix):
                    for item in page.get("Contents") or []:
                        key, etag = item["Key"], item["ETag"]
                        done = (rule.destination_bucket, key, etag)
                        if key in source.replicas or done in self._done:
                            continue
                        self._s3.copy_object(
                            Bucket=rule.destination_bucket,
                            Key=key,
                            CopySource={"Bucket": source.bucket, "Key": key},
                            MetadataDirective="COPY",
                        )
                        self._replica_of(rule.destination_bucket).add(key)
                        self._done.add(done)
                        copied += 1
        return copied

    def _replica_of(self, bucket: str) -> set[str]:
        for source in self.sources:
            if source.bucket == bucket:
                return source.replicas
        return set()  # a destination that replicates nothing itself

    async def _run(self) -> None:
        while True:
            try:
                self.copied += await asyncio.to_thread(self._pass)
            except Exception:  # moto busy or restarting: the next pass retries, as S3 does
                log.exception("S3 replication pass failed; retrying")
            await asyncio.sleep(POLL_SECONDS)
