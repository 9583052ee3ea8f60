"""The environment layer: network, buckets, cluster and the runner that reaches its private API.
Only AWS resources: it applies from anywhere with AWS credentials (ADR 073)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.buckets import Buckets
from infra.cluster import Cluster
from infra.config import EnvironmentConfig
from infra.layers import Layer, StackId
from infra.network import Network
from infra.runner import Runner
from infra.stacks.refs import Exports, Lower


def build(stack: StackId, cfg: EnvironmentConfig) -> Exports:
    name = cfg.name
    account = Lower(stack, Layer.ACCOUNT)
    account_id = aws.get_caller_identity_output().account_id
    buckets = Buckets(name, cfg.storage, tenants=cfg.tenant_ids, account_id=account_id)
    network = Network(
        name,
        cfg.network,
        region=cfg.region,
        cluster_name=name,
        flow_log_bucket_arn=buckets.logs.bucket.arn,
    )
    # Who administers the cluster: this environment's delivery role (if a workflow job
    # delivers here) and the break-glass roles in config. Nobody else, creator included.
    admins: list[pulumi.Input[str]] = [
        account.item("deliverRoleArns", cfg.environment),
        *cfg.cluster.admin_role_arns,
    ]
    cluster = Cluster(
        name,
        cfg.cluster,
        region=cfg.region,
        account_id=account_id,
        private_subnet_ids=network.private_subnet_ids,
        admin_role_arns=admins,
    )
    runner = Runner(
        f"{name}-runner",
        environment=cfg.environment,
        region=cfg.region,
        repository=account.get("githubRepository"),
        instance_type=cfg.cluster.runner_instance_type,
        account_id=account_id,
        vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids,
        cluster_security_group_id=cluster.security_group_id,
    )
    return {
        "clusterName": cluster.eks.name,
        "kubeconfig": pulumi.Output.secret(cluster.kubeconfig),
        "oidcProviderArn": cluster.oidc_provider_arn,
        "oidcIssuer": cluster.oidc_issuer,
        "clusterKeyArn": cluster.key.arn,
        "bucketKeyArn": buckets.key.arn,
        "imagesBucket": buckets.images.bucket.bucket,
        "imagesBucketArn": buckets.images.bucket.arn,
        "thanosBucket": buckets.thanos.bucket.bucket,
        "thanosBucketArn": buckets.thanos.bucket.arn,
        "accessLogsBucket": buckets.logs.bucket.bucket,
        "vpcCidr": cfg.network.cidr,
        "tenantIds": list(cfg.tenant_ids),
        "runnerInstanceId": runner.instance.id,
    }
