"""The account layer: everything there is one of per AWS account (ADR 070)."""

from __future__ import annotations

from functools import partial

import pulumi
import pulumi_aws as aws
from image_contracts.stacks import PROJECT

from infra import iam
from infra.buckets import AccountBuckets
from infra.ci_identity import PREVIEW_VARIABLE, CiIdentity, role_specs
from infra.config import AccountConfig, StorageConfig
from infra.registry import Registry
from infra.stacks.refs import Exports

SECRETS_ALIAS = f"alias/{PROJECT}-secrets"
READ_ONLY_POLICY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
# State and ledgers: old versions are the undo history of deliveries; keep them a quarter.
ACCOUNT_STORAGE = StorageConfig(
    renditions_expire_days=30, noncurrent_expire_days=90, access_logs_expire_days=365
)


def secrets_provider(region: str) -> str:
    """The `--secrets-provider` of every stack above the account (stack files record it)."""
    return f"awskms://{SECRETS_ALIAS}?region={region}"


def ledger_bucket_for(cfg: AccountConfig, environment: str) -> str:
    matches = [b for b in cfg.ledger_buckets if f"-{environment}-" in f"-{b}-"]
    if len(matches) != 1:
        raise ValueError(f"ledgerBuckets: expected one bucket naming {environment!r}")
    return matches[0]


def _deliver_policy(cfg: AccountConfig, environment: str, arns: list[str]) -> iam.Document:
    account_id, key_arn, repository_arn = arns
    return iam.deliver_policy(
        account_id=account_id,
        region=cfg.region,
        environment=environment,
        state_bucket=cfg.state_bucket,
        ledger_bucket=ledger_bucket_for(cfg, environment),
        secrets_key_arn=key_arn,
        repository_arn=repository_arn,
    )


def build(cfg: AccountConfig) -> Exports:
    name = f"{PROJECT}-account"
    account_id = aws.get_caller_identity_output().account_id
    linked = {
        service: aws.iam.ServiceLinkedRole(
            f"{name}-{service.split('.')[0]}", aws_service_name=service
        )
        for service in cfg.service_linked_roles
    }
    key = aws.kms.Key(
        f"{name}-secrets",
        description=f"{name}: Pulumi secrets provider, state, ledgers and images",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=iam.to_json(account_id.apply(iam.account_key_policy)),
    )
    aws.kms.Alias(f"{name}-secrets", name=SECRETS_ALIAS, target_key_id=key.key_id)
    buckets = AccountBuckets(
        name,
        ACCOUNT_STORAGE,
        state_bucket=cfg.state_bucket,
        ledger_buckets=cfg.ledger_buckets,
        kms_key_arn=key.arn,
        account_id=account_id,
    )
    registry = Registry(cfg.image_repository, kms_key_arn=key.arn)
    arn = registry.repository.arn
    policies: dict[str, pulumi.Input[iam.Document]] = {
        "build": arn.apply(iam.build_policy),
        "preview": key.arn.apply(lambda k: iam.preview_policy(cfg.state_bucket, k)),
    }
    for env in cfg.delivery_environments:
        policies[f"deliver-{env}"] = pulumi.Output.all(account_id, key.arn, arn).apply(
            partial(_deliver_policy, cfg, env)
        )
    ci = CiIdentity(
        f"{PROJECT}-ci", cfg, policies=policies, managed_policies={"preview": (READ_ONLY_POLICY,)}
    )
    specs = role_specs(cfg)
    return {
        "githubOidcProviderArn": ci.provider.arn,
        "githubRepository": cfg.ci.github_repository,
        "deliverRoleArns": {s.environment: ci.roles[s.name].arn for s in specs if s.environment},
        "githubVariables": {
            "repository": {s.variable: ci.roles[s.name].arn for s in specs if not s.environment},
            "environments": {
                s.environment: {s.variable: ci.roles[s.name].arn} for s in specs if s.environment
            },
        },
        "previewVariable": PREVIEW_VARIABLE,
        "imageRepositoryUrl": registry.repository.repository_url,
        "imageRepositoryArn": arn,
        "stateBucket": buckets.state.bucket.bucket,
        "backendUrl": pulumi.Output.concat("s3://", buckets.state.bucket.bucket),
        "ledgerBuckets": [b.bucket.bucket for b in buckets.ledgers.values()],
        "secretsKeyArn": key.arn,
        "secretsProvider": secrets_provider(cfg.region),
        "serviceLinkedRoleArns": {s: r.arn for s, r in linked.items()},
    }
