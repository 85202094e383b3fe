"""Sharded fan-out of one region: the fan-out queue and its FanoutWorker.

EventBusMessageHandler delivers a frame itself when the room is small; for a
big room it puts shard jobs on this queue (``FANOUT_QUEUE_URL``) and the
FanoutWorkers post them in parallel (docs/architecture.md, "Big rooms").

Why SQS and not asynchronous invocation: a queue absorbs a burst of shards
without Lambda's async throttling retries, caps parallel workers with the
event source's MaximumConcurrency (so the budget is shared by a known number
of workers), lets a worker hand on what it could not finish as an ordinary
message (with a delay when API Gateway is throttling), returns exactly the
failed jobs with partial batch responses, and keeps what keeps failing in a
dead-letter queue that can be redriven.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from multiregion_chat.infra.code_asset import handler_path
from multiregion_chat.infra.lambda_function import FunctionDefaults, FunctionRow, chat_function
from multiregion_chat.infra.replication import grant_put_chat_events
from multiregion_chat.infra.storage import dead_letter_queue

__all__ = ["FANOUT_WORKER_CONNECTIONS_ACTIONS", "ChatFanout"]

# Exactly what the worker calls on the connections table (docs/contracts.md).
FANOUT_WORKER_CONNECTIONS_ACTIONS = (
    "dynamodb:GetItem",  # shard progress; 410 Gone cleanup: META
    # shard progress; the budget's window counters; 410 cleanup: the user item, the count
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",  # 410 Gone cleanup: memberships
    "dynamodb:DeleteItem",  # 410 Gone cleanup: META
)

WORKER_TIMEOUT = Duration.seconds(60)
# AWS's guidance for SQS event sources: at least six times the function timeout,
# so a batch the poller retries after throttling is not visible twice at once.
VISIBILITY_TIMEOUT = Duration.seconds(6 * 60)
# A job that fails this often (its progress or hand-off could not be written)
# goes to the dead-letter queue; progress records make a redrive safe.
MAX_RECEIVE_COUNT = 5


class ChatFanout(Construct):
    """The fan-out queue (with dead-letter queue) and the FanoutWorker that drains it.

    Attributes:
        queue: shard jobs (SQS-managed encryption, TLS only).
        dead_letter_queue: jobs that failed ``MAX_RECEIVE_COUNT`` times.
        worker: the FanoutWorker function.
        log_group: its log group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        defaults: FunctionDefaults,
        environment: dict[str, str],
        connections_table: dynamodb.ITable,
        event_bus: events.IEventBus,
        event_source: str,
        memory_size: int,
        max_workers: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = dead_letter_queue(
            self, "FanoutDeadLetterQueue", removal_policy=removal_policy
        )
        self.queue = sqs.Queue(
            self,
            "FanoutQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=VISIBILITY_TIMEOUT,
            # A frame older than an hour is history, not live chat.
            retention_period=Duration.hours(1),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
            removal_policy=removal_policy,
        )
        self.worker, self.log_group = chat_function(
            self,
            FunctionRow(
                name="FanoutWorker",
                handler=handler_path("fanout_worker"),
                description="Fan-out queue: one shard of a big room's members per job",
                memory_size=memory_size,
                timeout=WORKER_TIMEOUT,
            ),
            defaults,
            environment=environment,
        )
        connections_table.grant(self.worker, *FANOUT_WORKER_CONNECTIONS_ACTIONS)
        # 410 cleanup publishes "left" presence events.
        grant_put_chat_events(event_bus, self.worker, [event_source])
        self.allow_send_jobs(self.worker)  # hand-offs
        self.worker.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                # One shard per invocation: shards run in parallel up to max_workers.
                batch_size=1,
                report_batch_item_failures=True,
                max_concurrency=max_workers,
            )
        )

    def allow_send_jobs(self, function: lambda_.Function) -> None:
        """Let ``function`` put jobs on the queue (sqs:SendMessage on it, nothing else)."""
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.queue.queue_arn])
        )
        function.add_environment("FANOUT_QUEUE_URL", self.queue.queue_url)
