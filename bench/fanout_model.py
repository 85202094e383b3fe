"""A discrete-event model of the sharded fan-out of one message, for rooms this machine cannot run.

Rooms of 20,000 and 100,000 members in one region are *predicted*: this 2-core machine cannot
host the workers. The model follows one message through the path of docs/architecture.md:

1. EventBusMessageHandler reads the room's members, one DynamoDB Query page at a time
   (``Limit`` = ``shard_size`` ids, within DynamoDB's 1 MB of items *read* per page;
   ``query_rtt_s`` plus ``query_page_s`` per MB read);
2. it cuts each page into shard jobs of ``shard_size`` ids and sends them to the FanoutQueue
   with SendMessageBatch (10 messages per call, ``send_batch_s`` each);
3. a job is picked up ``poll_s`` after it was sent by an event-source-mapping poller; at most
   ``max_concurrency`` workers run (ScalingConfig.MaximumConcurrency), and the mapping starts
   with 5 concurrent invocations and adds up to 300 per minute (AWS documentation); a worker
   that has not run before pays ``cold_start_s`` first (``warm_workers`` of them are warm);
4. each running worker posts at ``rate_per_worker`` (the measured per-invocation rate of
   ``runtime.delivery.engine.deliver``), and all of them together at most at the region's *cap*:
   ``min(budget, account_limit - client_rps - presence_rps)``. When more workers run than the
   cap allows, they share it equally (the shared budget and AIMD on 429 do that in the app).

Between two events (a page read, a batch sent, a job becoming visible, a worker starting or
finishing) every rate is constant, so the simulation jumps from event to event and is exact
for this fluid model (no time step). The result is the wall time from the handler's start to
the last post, beside the bound ``N / account_limit``.

Presence churn (``presence_rps``) is the API Gateway requests per second that members
reconnecting cost in that room (``churn_per_min`` of the members per minute, each a leave and
a join), with the formulas of docs/architecture.md ("Presence at scale"): see
:func:`presence_rps`. It is subtracted from the cap, like client traffic.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

PAGE_BYTES = 1024 * 1024  # DynamoDB Query: at most 1 MB of data read per call
SQS_BATCH = 10  # SendMessageBatch: at most 10 messages per call
INITIAL_POLLERS = 5  # "starts processing five batches at a time with five concurrent invocations"
SCALE_UP_PER_S = 300 / 60  # "up to 300 more instances per minute"


@dataclass(frozen=True)
class Parameters:
    """The model's inputs; docs/performance.md gives the source of each default."""

    members: int
    rate_per_worker: float = 1500.0  # posts/s of one invocation (measured: the fanout bench)
    budget: float = 9000.0  # fanoutRequestBudget of the region, posts/s
    account_limit: float = 10000.0  # API Gateway throttle quota per account and Region
    client_rps: float = 500.0  # client traffic on the same quota (assumption)
    shard_size: int = 1000  # fanoutShardSize
    shard_threshold: int = 2000  # fanoutShardThreshold: at or below, delivered in-process
    # ScalingConfig.MaximumConcurrency of the FanoutWorker mapping; 0: enough workers for the
    # budget, ceil(budget / rate_per_worker) + 1 (what the deployment should configure)
    max_concurrency: int = 0
    item_bytes: int = 200  # one membership item as DynamoDB sizes it
    query_page_s: float = 0.030  # reading 1 MB of items in a Query (assumption)
    query_rtt_s: float = 0.005  # a Query's fixed round trip (assumption)
    send_batch_s: float = 0.015  # one SendMessageBatch call (assumption)
    poll_s: float = 0.100  # from SendMessageBatch to the worker's invocation (assumption)
    cold_start_s: float = 1.0  # worker init when no warm environment is free (AWS: <100 ms..>1 s)
    warm_workers: int = 0  # environments already warm (0: the first message after idle)
    handler_overhead_s: float = 0.020  # EventBridge -> handler start, warm
    churn_per_min: float = 0.01  # share of members reconnecting per minute
    presence_mode: str = "auto"  # auto (live up to presence_live_max_members, else quiet),
    # live, quiet or batched
    presence_live_max_members: int = 200  # presenceLiveMaxMembers
    presence_interval_s: float = 5.0  # batched mode: one coalesced frame per interval
    requests_per_reconnect: int = 2  # $connect and the join message


@dataclass
class Prediction:
    members: int
    predicted_wall_s: float
    bound_s: float
    ratio_vs_bound: float
    cap_rps: float
    presence_rps: float
    shards: int
    workers_used: int  # the most workers running at once
    pages: int
    send_calls: int
    cold_starts: int
    parameters: dict[str, Any] = field(default_factory=dict)


def presence_rps(p: Parameters) -> float:
    """API Gateway requests/s that reconnecting members cost in one room of ``p.members``
    (one region holding them all), with docs/architecture.md's "Presence at scale" formulas.

    Each reconnect is a leave and a join (2 events) and costs the client's own
    ``requests_per_reconnect`` (``$connect`` and the ``join`` message; the ``joined`` reply is
    the route's response). ``live`` (rooms up to ``presence_live_max_members``): each event is
    a ``member`` frame to every member, 2cN^2/60 posts/s; ``quiet`` (above it): no member
    frames, events only move a counter; ``batched`` (the rejected design, for comparison): one
    coalesced frame per ``presence_interval_s`` to every member whenever anything changed.
    """
    reconnects_per_s = p.members * p.churn_per_min / 60
    own = reconnects_per_s * p.requests_per_reconnect
    mode = p.presence_mode
    if mode == "auto":
        mode = "live" if p.members <= p.presence_live_max_members else "quiet"
    if mode == "live":
        return own + 2 * reconnects_per_s * p.members
    if mode == "batched":
        changes_per_window = 2 * reconnects_per_s * p.presence_interval_s
        busy = 1 - math.exp(-changes_per_window)  # share of windows with any change
        return own + p.members * busy / p.presence_interval_s
    if mode == "quiet":
        return own
    raise ValueError(f"unknown presence mode {p.presence_mode!r}")


def _steps(t: float) -> int:
    """Whole scale-up steps the mapping has taken ``t`` seconds after it saw jobs."""
    return int(SCALE_UP_PER_S * max(0.0, t) + 1e-9)


def _available_workers(p: Parameters, t: float) -> int:
    """Concurrent invocations the SQS mapping allows ``t`` seconds after jobs first appeared."""
    ramp = INITIAL_POLLERS + _steps(t)
    return max(1, min(p.max_concurrency, ramp))


def simulate(p: Parameters) -> Prediction:
    """Predict the wall time of one message to ``p.members`` local members."""
    if p.max_concurrency <= 0:
        needed = math.ceil(p.budget / p.rate_per_worker) + 1
        p = replace(p, max_concurrency=max(2, min(1000, needed)))
    presence = presence_rps(p)
    cap = min(p.budget, p.account_limit - p.client_rps - presence)
    if cap <= 0:
        raise ValueError(f"no request rate left for messages: presence costs {presence:.0f}/s")
    bound = p.members / p.account_limit
    # runtime.delivery.broadcast reads pages of one shard's ids (Limit = shard_size) so the first
    # jobs go out early; a page is read in time proportional to its bytes, plus a fixed
    # round trip.
    per_page = max(1, min(PAGE_BYTES // p.item_bytes, p.shard_size))
    pages = math.ceil(p.members / per_page)
    page_s = p.query_rtt_s + p.query_page_s * per_page * p.item_bytes / PAGE_BYTES
    t = p.handler_overhead_s

    if p.members <= p.shard_threshold:  # in-process: one invocation, no queue
        rate = min(p.rate_per_worker, cap)
        wall = t + pages * page_s + p.members / rate
        return Prediction(
            p.members, wall, bound, wall / bound, cap, presence, 0, 1, pages, 0, 0, asdict(p)
        )

    visible, send_calls = _send_jobs(p, pages, per_page, page_s, t)
    now, workers_used, cold_starts = _run_workers(p, visible, cap)
    shards = len(visible)
    return Prediction(
        p.members, now, bound, now / bound, cap, presence, shards, workers_used, pages,
        send_calls, cold_starts, asdict(p),
    )  # fmt: skip


def _send_jobs(
    p: Parameters, pages: int, per_page: int, page_s: float, t: float
) -> tuple[list[tuple[float, int]], int]:
    """Steps 1-2: [(when a shard job becomes visible, its ids)], SendMessageBatch calls.

    Pages are read one after another; each page's shard jobs are sent in batches of 10
    right after the page arrives (the handler does both in one loop).
    """
    visible: list[tuple[float, int]] = []
    send_calls = 0
    remaining = p.members
    for _ in range(pages):
        t += page_s
        in_page, remaining = min(per_page, remaining), remaining - min(per_page, remaining)
        jobs = [p.shard_size] * (in_page // p.shard_size)
        if in_page % p.shard_size:
            jobs.append(in_page % p.shard_size)
        for first in range(0, len(jobs), SQS_BATCH):
            t += p.send_batch_s
            send_calls += 1
            visible.extend((t + p.poll_s, size) for size in jobs[first : first + SQS_BATCH])
    return visible, send_calls


def _run_workers(
    p: Parameters, visible: list[tuple[float, int]], cap: float
) -> tuple[float, int, int]:
    """Steps 3-4: (time the last job is done, most workers at once, cold starts).

    Workers take visible jobs while the mapping's concurrency allows; running workers
    share the cap. Events: a job becomes visible, a worker finishes its cold start, a
    worker finishes its job, the mapping's concurrency grows by one.
    """
    first_visible = visible[0][0]
    pending = list(visible)
    heapq.heapify(pending)
    queue: list[int] = []  # visible, not yet taken
    running: list[list[float]] = []  # [ids left, start of posting]; posting when now >= start
    now = first_visible
    warm_free = p.warm_workers
    cold_starts = 0
    workers_used = 0
    while pending or queue or running:
        while pending and pending[0][0] <= now + 1e-12:
            queue.append(heapq.heappop(pending)[1])
        allowed = _available_workers(p, now - first_visible)
        while queue and len(running) < allowed:
            size = queue.pop(0)
            cold = warm_free <= 0
            warm_free -= 0 if cold else 1
            cold_starts += 1 if cold else 0
            running.append([float(size), now + (p.cold_start_s if cold else 0.0)])
            workers_used = max(workers_used, len(running))
        posting = [job for job in running if job[1] <= now + 1e-12]
        each = min(p.rate_per_worker, cap / len(posting)) if posting else 0.0
        step_to = _next_event(
            p, now, first_visible, pending, queue, running, posting, each, allowed
        )
        for job in posting:
            job[0] -= each * (step_to - now)
        now = step_to
        finished = [job for job in running if job[1] <= now + 1e-12 and job[0] <= 1e-6]
        for job in finished:
            running.remove(job)
            warm_free += 1  # its environment is warm for the next job
    return now, workers_used, cold_starts


def _next_event(
    p: Parameters,
    now: float,
    first_visible: float,
    pending: list[tuple[float, int]],
    queue: list[int],
    running: list[list[float]],
    posting: list[list[float]],
    each: float,
    allowed: int,
) -> float:
    """When the next job becomes visible, cold start ends, job finishes or concurrency grows."""
    candidates = [pending[0][0]] if pending else []
    candidates += [job[1] for job in running if job[1] > now + 1e-12]
    if posting:
        candidates.append(now + min(job[0] for job in posting) / each)
    if queue and allowed < p.max_concurrency:
        candidates.append(first_visible + (_steps(now - first_visible) + 1) / SCALE_UP_PER_S)
    return min(candidates)


def predict(members: int, rate_per_worker: float, **overrides: Any) -> dict[str, Any]:
    """The JSON entry of one room size: the warm prediction, with the cold one beside it.

    ``predicted_wall_s`` is for a busy room (its workers warm from the previous message: a
    room this big has messages often); ``predicted_cold_wall_s`` is the first message after
    the workers idled out.
    """
    base = Parameters(members=members, rate_per_worker=rate_per_worker, **overrides)
    warm = simulate(replace(base, warm_workers=1000))
    cold = simulate(replace(base, warm_workers=0))
    return {
        "predicted_wall_s": warm.predicted_wall_s,
        "bound_s": warm.bound_s,
        "ratio_vs_bound": warm.ratio_vs_bound,
        "predicted_cold_wall_s": cold.predicted_wall_s,
        "presence_rps": warm.presence_rps,
        "presence_live_rps": presence_rps(replace(base, presence_mode="live")),
        "presence_batched_rps": presence_rps(replace(base, presence_mode="batched")),
        "cap_rps": warm.cap_rps,
        "shards": warm.shards,
        "workers": warm.workers_used,
        "pages": warm.pages,
        "send_calls": warm.send_calls,
        "method": "discrete-event (fluid rates between events)",
    }


def predict_all(sizes: tuple[int, ...], rate_per_worker: float, **overrides: Any) -> dict:
    return {str(n): predict(n, rate_per_worker, **overrides) for n in sizes}
