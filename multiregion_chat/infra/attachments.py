"""One region's attachment storage: the bucket, its access logs, and its replication.

docs/architecture.md, "Attachments", has the design: a private bucket per region that
members upload to with presigned POSTs (runtime/attachments/transfers.py), replicated by S3
Replication rules to every other region's bucket. The rules are set by a custom resource
(runtime/handlers/attachment_replication.py) once the destination buckets exist, because S3 refuses
a rule to a bucket that does not exist yet and the stacks deploy one region at a time.

Names are deterministic (``ChatConfig.attachment_bucket_name``: app, stage, account,
region; ``attachment_replication_role_name``), so each region's stack, its replication
role and the runtime can name every other region's bucket without a cross-region lookup.

Encryption is SSE-S3, not SSE-KMS: replicating SSE-KMS objects needs a key (or a replica
key) in every region, key grants for each replication role and each reader, and a KMS
request per upload, download and replicated object; the bucket's access is IAM and
presigned URLs either way, so a KMS key would add cost and 20 key policies without
narrowing who can read.

Access logging is S3 server access logging to a log bucket of the region, not CloudTrail
data events: the app has no trail (its observability is CloudWatch metrics, alarms and
logs), data events cost $0.10 per 100,000 events on a trail of their own, while access
logs cost only their storage and record every presigned request, the ones that S3 refused
included.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnResource, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from multiregion_chat.infra.code_asset import handler_path
from multiregion_chat.infra.config import ChatConfig
from multiregion_chat.infra.lambda_function import FunctionDefaults, FunctionRow, chat_function

__all__ = ["ATTACHMENT_PREFIX", "ChatAttachments"]

# Every key the runtime makes (runtime.attachments.transfers.KEY_PREFIX).
ATTACHMENT_PREFIX = "rooms/"
ACCESS_LOG_PREFIX = "attachments/"
_PERIOD = Duration.minutes(5)
# What runtime.attachments.transfers counts (docs/contracts.md, "Metrics").
ATTACHMENT_RUNTIME_METRICS = (
    "UploadSlots",
    "AttachmentMessages",
    "DownloadUrls",
    "OriginDownloads",
    "ForbiddenAttachments",
)


def _private_bucket(scope: Construct, construct_id: str, **kwargs: object) -> s3.Bucket:
    """Private, every public access blocked, TLS only, SSE-S3, bucket-owner objects only."""
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        encryption=s3.BucketEncryption.S3_MANAGED,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        **kwargs,  # type: ignore[arg-type]
    )


def _quiet_auto_delete_provider(stack: Stack) -> None:
    """CDK's auto-delete provider (a stage whose removalPolicy is destroy: its buckets are
    emptied when the stack goes) renders its role dependency as DependsOn next to the GetAtt,
    which cfn-lint flags (W3005), as for every function (infra/lambda_function.py)."""
    provider = stack.node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
    handler = provider.node.try_find_child("Handler") if provider is not None else None
    if isinstance(handler, CfnResource):
        handler.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})


class ChatAttachments(Construct):
    """The attachment bucket of one region and everything it needs.

    Attributes:
        bucket: ``rooms/<room>/<origin region>/<uploader>/<id>`` objects; versioned
            (replication requires it), expired with the history (current and noncurrent
            versions), access-logged, CORS for browser uploads from ``httpCorsOrigins``.
        bucket_names: every configured region's bucket name (deterministic).
        bucket_name_pattern: the same with ``{region}`` for the region (runtime environment).
        access_log_bucket: the bucket's server access logs (kept ``logRetentionDays``).
        replication_role: the role S3 replicates this bucket with: reads this bucket's
            versions, writes replicas into the other regions' buckets, nothing else.
        setup_function: sets the replication rules of every existing bucket
            (runtime/handlers/attachment_replication.py), run by ``replication_setup``.
        replication_setup: the custom resource; it runs again when the regions change.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ChatConfig,
        region: str,
        defaults: FunctionDefaults,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.region = region
        account, partition = Aws.ACCOUNT_ID, Aws.PARTITION
        self.bucket_names = {r: config.attachment_bucket_name(r, account) for r in config.regions}
        self.bucket_name_pattern = config.attachment_bucket_name("{region}", account)
        role_arns = {
            r: f"arn:{partition}:iam::{account}:role/{config.attachment_replication_role_name(r)}"
            for r in config.regions
        }
        destroy = removal_policy == RemovalPolicy.DESTROY

        self.access_log_bucket = _private_bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs", expiration=Duration.days(config.log_retention_days)
                )
            ],
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )
        days = config.attachment_expiry_days
        self.bucket = _private_bucket(
            self,
            "Bucket",
            bucket_name=self.bucket_names[region],
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-with-history",
                    expiration=Duration.days(days),
                    noncurrent_version_expiration=Duration.days(days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.GET],
                    allowed_origins=list(config.http_cors_origins),
                    allowed_headers=["*"],
                    max_age=3600,
                )
            ],
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )

        if destroy:
            _quiet_auto_delete_provider(Stack.of(self))
        self._log_to(self.access_log_bucket, f"arn:{partition}:s3:::{self.bucket_names[region]}")
        self.replication_role = iam.Role(
            self,
            "ReplicationRole",
            role_name=config.attachment_replication_role_name(region),
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            description=f"S3 replication of {region}'s attachments to the other regions",
        )
        source = self.bucket.bucket_arn
        self.replication_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetReplicationConfiguration", "s3:ListBucket"], resources=[source]
            )
        )
        self.replication_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:GetObjectVersionForReplication",
                    "s3:GetObjectVersionAcl",
                    "s3:GetObjectVersionTagging",
                ],
                resources=[f"{source}/{ATTACHMENT_PREFIX}*"],
            )
        )
        destinations = [
            f"arn:{partition}:s3:::{name}/{ATTACHMENT_PREFIX}*"
            for r, name in self.bucket_names.items()
            if r != region
        ]
        if destinations:
            self.replication_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ReplicateObject", "s3:ReplicateTags"], resources=destinations
                )
            )

        self.setup_function, _ = chat_function(
            self,
            FunctionRow(
                name="ReplicationSetup",
                handler=handler_path("attachment_replication"),
                description="Sets the attachment buckets' replication rules (custom resource)",
                memory_size=256,
                timeout=Duration.seconds(120),
                shared_environment=False,
            ),
            defaults,
            environment={"POWERTOOLS_SERVICE_NAME": "chat-setup"},
        )
        bucket_arns = [f"arn:{partition}:s3:::{name}" for name in self.bucket_names.values()]
        self.setup_function.add_to_role_policy(
            iam.PolicyStatement(
                # HeadBucket is s3:ListBucket; Put/DeleteBucketReplication both are
                # s3:PutReplicationConfiguration.
                actions=["s3:ListBucket", "s3:PutReplicationConfiguration"],
                resources=bucket_arns,
            )
        )
        self.setup_function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=list(role_arns.values()),
                conditions={"StringEquals": {"iam:PassedToService": "s3.amazonaws.com"}},
            )
        )
        self.replication_setup = CustomResource(
            self,
            "Replication",
            service_token=self.setup_function.function_arn,
            resource_type="Custom::AttachmentReplication",
            properties={
                "Buckets": self.bucket_names,
                "Roles": role_arns,
                "Region": region,
                "Partition": partition,
            },
        )
        # The bucket and the role exist before rules name them.
        self.replication_setup.node.add_dependency(self.bucket, self.replication_role)

    def _log_to(self, log_bucket: s3.Bucket, source_arn: str) -> None:
        """Server access logs of ``self.bucket`` into ``log_bucket``, delivered under a bucket
        policy (not the LogDeliveryWrite ACL, which bucket-owner-enforced buckets refuse);
        written here so the result does not depend on the app's S3 feature flags."""
        log_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[log_bucket.arn_for_objects(f"{ACCESS_LOG_PREFIX}*")],
                conditions={
                    "ArnLike": {"aws:SourceArn": source_arn},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
            destination_bucket_name=log_bucket.bucket_name, log_file_prefix=ACCESS_LOG_PREFIX
        )

    # ---- what the runtime may do ---------------------------------------------
    def grant_members(self, function: iam.IGrantable) -> None:
        """What ``function`` needs to serve ``upload``, ``send`` and ``download``.

        A presigned POST or GET is signed with the function's credentials, so the function
        itself needs s3:PutObject (slots) and s3:GetObject (HeadObject on a referenced or
        requested object, the presigned GET), only under ``rooms/``; s3:ListBucket on this
        bucket makes a missing object a 404 rather than a 403; s3:GetObject on the other
        regions' buckets signs a download from the origin while replication is behind.
        """
        own = f"{self.bucket.bucket_arn}/{ATTACHMENT_PREFIX}*"
        others = [
            f"arn:{Aws.PARTITION}:s3:::{name}/{ATTACHMENT_PREFIX}*"
            for r, name in self.bucket_names.items()
            if r != self.region
        ]
        statements = [
            iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject"], resources=[own]),
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]),
        ]
        if others:
            statements.append(iam.PolicyStatement(actions=["s3:GetObject"], resources=others))
        for statement in statements:
            function.grant_principal.add_to_principal_policy(statement)

    # ---- metrics -----------------------------------------------------------
    def replication_metric(
        self, name: str, destination_region: str, statistic: str = "Sum"
    ) -> cloudwatch.Metric:
        """S3's replication metric ``name`` of the rule to ``destination_region``."""
        return cloudwatch.Metric(
            namespace="AWS/S3",
            metric_name=name,
            dimensions_map={
                "SourceBucket": self.bucket_names[self.region],
                "DestinationBucket": self.bucket_names[destination_region],
                "RuleId": f"to-{destination_region}",
            },
            statistic=statistic,
            period=_PERIOD,
        )

    def _replication_graph_metric(
        self, name: str, destination_region: str, statistic: str = "Sum", label: str = ""
    ) -> cloudwatch.Metric:
        # Labelled for graphs only: a labelled metric turns an alarm into a metric-math one.
        metric = self.replication_metric(name, destination_region, statistic)
        return metric.with_(label=f"{destination_region} {label}".rstrip())

    def dashboard_widgets(
        self, metrics_namespace: str, service_name: str, width: int = 8, height: int = 6
    ) -> list[cloudwatch.IWidget]:
        """Uploads (the runtime's counts) and replication (S3's, per destination region)."""

        def runtime(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=metrics_namespace,
                metric_name=name,
                dimensions_map={"service": service_name},
                statistic="Sum",
                period=_PERIOD,
                label=name,
            )

        others = [r for r in self.bucket_names if r != self.region]
        return [
            cloudwatch.GraphWidget(
                title="Attachments",
                left=[runtime(n) for n in ATTACHMENT_RUNTIME_METRICS],
                width=width,
                height=height,
            ),
            cloudwatch.GraphWidget(
                # S3 publishes ReplicationLatency once a minute as the most seconds the
                # destination is behind; Maximum is its only valid statistic (a p99 line
                # was a percentile of those maxima, not of the objects' latencies).
                title="Attachment replication latency (s): max",
                left=[
                    self._replication_graph_metric("ReplicationLatency", r, "Maximum", "max")
                    for r in others
                ],
                width=width,
                height=height,
            ),
            cloudwatch.GraphWidget(
                title="Attachment replication: failed / pending operations",
                left=[
                    self._replication_graph_metric("OperationsFailedReplication", r) for r in others
                ],
                right=[
                    self._replication_graph_metric("OperationsPendingReplication", r, "Maximum")
                    for r in others
                ],
                width=width,
                height=height,
            ),
        ]
