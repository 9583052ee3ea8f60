"""S3: the images, Thanos and access-log buckets, each with every FSBP S3 control applied."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.config import StorageConfig

# The service stores <prefix>/<tenant>/originals/... and <prefix>/<tenant>/renditions/...
IMAGE_PREFIX = "images"
LifecycleRule = aws.s3.BucketLifecycleConfigurationRuleArgsDict
SseDefault = (
    aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgsDict
)


@dataclass(frozen=True)
class BucketSpec:
    """What differs between buckets; everything else is the same secure baseline."""

    purpose: str
    lifecycle_rules: tuple[LifecycleRule, ...]
    kms: bool = True  # S3 server access log targets only accept SSE-S3.
    log_target: bool = False


def lifecycle_rules(
    purpose: str, storage: StorageConfig, tenants: tuple[str, ...] = ()
) -> tuple[LifecycleRule, ...]:
    """Lifecycle per bucket purpose (FSBP S3.13); pure so the rules are testable."""
    base: list[LifecycleRule] = [
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        },
        {
            "id": "expire-noncurrent",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": storage.noncurrent_expire_days},
        },
    ]
    if purpose == "images":
        # Renditions are derived data, re-rendered from the originals on demand. S3 filters match
        # a key prefix only, and renditions sit under each tenant: one rule per tenant.
        base += [
            {
                "id": f"expire-renditions-{tenant}",
                "status": "Enabled",
                "filter": {"prefix": f"{IMAGE_PREFIX}/{tenant}/renditions/"},
                "expiration": {"days": storage.renditions_expire_days},
            }
            for tenant in tenants
        ]
    if purpose == "access-logs":
        base.append(
            {
                "id": "expire-logs",
                "status": "Enabled",
                "filter": {},
                "expiration": {"days": storage.access_logs_expire_days},
            }
        )
    return tuple(base)


class SecureBucket(pulumi.ComponentResource):
    """One bucket: Block Public Access x4, SSE (KMS + bucket key), BucketOwnerEnforced, TLS-only
    policy, versioning, lifecycle, and server access logging into the log bucket."""

    def __init__(
        self,
        name: str,
        spec: BucketSpec,
        *,
        kms_key_arn: pulumi.Input[str],
        log_bucket: pulumi.Input[str] | None,
        log_delivery_account: pulumi.Input[str] | None = None,
        bucket_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:storage:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            name,
            bucket=bucket_name,  # None: autonamed; a name when other tools must know it
            force_destroy=False,
            tags={"purpose": spec.purpose},
            opts=child,
        )
        after_bucket = pulumi.ResourceOptions(parent=self, depends_on=[self.bucket])
        pab = aws.s3.BucketPublicAccessBlock(
            name,
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=after_bucket,
        )
        aws.s3.BucketOwnershipControls(
            name,
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        default: SseDefault = (
            {"sse_algorithm": "aws:kms", "kms_master_key_id": kms_key_arn}
            if spec.kms
            else {"sse_algorithm": "AES256"}
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=self.bucket.id,
            rules=[
                {"apply_server_side_encryption_by_default": default, "bucket_key_enabled": spec.kms}
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            name, bucket=self.bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
        )
        aws.s3.BucketLifecycleConfiguration(
            name,
            bucket=self.bucket.id,
            rules=list(spec.lifecycle_rules),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        if log_bucket is not None:
            aws.s3.BucketLogging(
                name,
                bucket=self.bucket.id,
                target_bucket=log_bucket,
                target_prefix=f"s3-access/{spec.purpose}/",
                opts=child,
            )
        policy = pulumi.Output.all(self.bucket.arn, log_delivery_account or "").apply(
            lambda a: iam.tls_only_bucket_policy(
                a[0], iam.log_delivery_grants(a[0], a[1]) if a[1] else ()
            )
        )
        aws.s3.BucketPolicy(
            name,
            bucket=self.bucket.id,
            policy=iam.to_json(policy),
            # Block Public Access first, so a policy can never be public even for a moment.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[pab]),
        )
        self.register_outputs({"bucket": self.bucket.bucket})


def log_bucket(
    name: str,
    storage: StorageConfig,
    *,
    kms_key_arn: pulumi.Input[str],
    account_id: pulumi.Input[str],
    parent: pulumi.Resource,
) -> SecureBucket:
    """The access-log target of a layer's buckets; it does not log into itself (log loops)."""
    return SecureBucket(
        f"{name}-access-logs",
        BucketSpec("access-logs", lifecycle_rules("access-logs", storage), kms=False),
        kms_key_arn=kms_key_arn,
        log_bucket=None,
        log_delivery_account=account_id,
        opts=pulumi.ResourceOptions(parent=parent),
    )


class Buckets(pulumi.ComponentResource):
    """An environment's buckets: images, Thanos blocks, and their access logs."""

    def __init__(
        self,
        name: str,
        storage: StorageConfig,
        *,
        tenants: tuple[str, ...],
        account_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:storage:Buckets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            f"{name}-s3",
            description=f"{name}: S3 objects (images, Thanos blocks)",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        self.logs = log_bucket(
            name, storage, kms_key_arn=self.key.arn, account_id=account_id, parent=self
        )
        self.images = SecureBucket(
            f"{name}-images",
            BucketSpec("images", lifecycle_rules("images", storage, tenants)),
            kms_key_arn=self.key.arn,
            log_bucket=self.logs.bucket.id,
            opts=child,
        )
        self.thanos = SecureBucket(
            f"{name}-thanos",
            BucketSpec("thanos", lifecycle_rules("thanos", storage)),
            kms_key_arn=self.key.arn,
            log_bucket=self.logs.bucket.id,
            opts=child,
        )
        self.register_outputs(
            {
                "images": self.images.bucket.bucket,
                "thanos": self.thanos.bucket.bucket,
                "accessLogs": self.logs.bucket.bucket,
            }
        )


class AccountBuckets(pulumi.ComponentResource):
    """The account's buckets with fixed names (the Pulumi backend and the delivery ledgers are
    named in config files before any stack exists), and the account-wide Block Public Access
    (FSBP S3.1): one account setting, so exactly one stack manages it."""

    def __init__(
        self,
        name: str,
        storage: StorageConfig,
        *,
        state_bucket: str,
        ledger_buckets: tuple[str, ...],
        kms_key_arn: pulumi.Input[str],
        account_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:storage:AccountBuckets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        aws.s3.AccountPublicAccessBlock(
            name,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.logs = log_bucket(
            name, storage, kms_key_arn=kms_key_arn, account_id=account_id, parent=self
        )
        self.state = SecureBucket(
            f"{name}-state",
            BucketSpec("pulumi-state", lifecycle_rules("pulumi-state", storage)),
            kms_key_arn=kms_key_arn,
            log_bucket=self.logs.bucket.id,
            bucket_name=state_bucket,
            opts=child,
        )
        self.ledgers = {
            bucket: SecureBucket(
                f"{name}-{bucket}",
                BucketSpec("delivery-ledger", lifecycle_rules("delivery-ledger", storage)),
                kms_key_arn=kms_key_arn,
                log_bucket=self.logs.bucket.id,
                bucket_name=bucket,
                opts=child,
            )
            for bucket in ledger_buckets
        }
        self.register_outputs({"state": self.state.bucket.bucket})
