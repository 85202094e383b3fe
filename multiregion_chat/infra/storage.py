"""Durable state of one region: the DynamoDB tables and the dead-letter queues.

Item layouts are in ``docs/contracts.md``. Tables get no physical names: the
functions receive the generated names through their environment, so two
stages (or two apps) can share an account and region.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from multiregion_chat.infra.table_schema import (
    CONNECTIONS_BY_USER_INDEX,
    CONNECTIONS_TABLE,
    MESSAGES_TABLE,
    TTL_ATTRIBUTE,
    TableSchema,
)

__all__ = ["CONNECTIONS_BY_USER_INDEX", "TTL_ATTRIBUTE", "ChatStorage", "dead_letter_queue"]


def _table(
    scope: Construct,
    construct_id: str,
    *,
    schema: TableSchema,
    removal_policy: RemovalPolicy,
) -> dynamodb.Table:
    retained = removal_policy == RemovalPolicy.RETAIN
    string = dynamodb.AttributeType.STRING
    table = dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=schema.partition_key, type=string),
        sort_key=dynamodb.Attribute(name=schema.sort_key, type=string),
        # Chat traffic is spiky and idle most of the time: on-demand costs
        # nothing at rest and needs no capacity planning per region.
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=TTL_ATTRIBUTE,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        # A retained table is production data: also refuse console/API deletes.
        deletion_protection=retained,
        removal_policy=removal_policy,
    )
    if schema.indexes:
        _add_indexes(table, schema)
    return table


def _add_indexes(table: dynamodb.Table, schema: TableSchema) -> None:
    """The schema's indexes (keys only), added on the CloudFormation resource.

    Not with ``add_global_secondary_index``: once the L2 table knows of an
    index, every ``table.grant(...)`` also grants on ``<table>/index/*``, and
    every handler would get the index. This way only the statement that names
    the index (infra/server_api.py) does.
    """
    cfn_table = table.node.default_child
    assert isinstance(cfn_table, dynamodb.CfnTable)
    keys = [schema.partition_key, schema.sort_key, *(key for _, key in schema.indexes)]
    cfn_table.add_property_override(
        "AttributeDefinitions",
        [{"AttributeName": key, "AttributeType": "S"} for key in dict.fromkeys(keys)],
    )
    cfn_table.add_property_override(
        "GlobalSecondaryIndexes",
        [
            {
                "IndexName": name,
                "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
            for name, key in schema.indexes
        ],
    )


class ChatStorage(Construct):
    """The connections table and the messages (history) table of one region.

    Attributes:
        connections_table: ``pk``/``sk`` strings; connection, membership and
            remote-presence items; index ``ConnectionsByUser`` (META items by
            ``connectedUserId``, keys only).
        messages_table: pk ``room``, sk ``id``; one item per message, the
            conditional write that de-duplicates replicated events.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.connections_table = _table(
            self,
            "ConnectionsTable",
            schema=CONNECTIONS_TABLE,
            removal_policy=removal_policy,
        )
        self.messages_table = _table(
            self,
            "MessagesTable",
            schema=MESSAGES_TABLE,
            removal_policy=removal_policy,
        )


def dead_letter_queue(
    scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
) -> sqs.Queue:
    """A queue that keeps what could not be delivered, for inspection and redrive.

    SQS-managed encryption (no KMS key to grant to EventBridge or Lambda),
    TLS-only access, and the longest retention SQS offers so a failure found
    after a long weekend can still be replayed.
    """
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        removal_policy=removal_policy,
    )
