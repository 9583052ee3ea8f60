"""The service layer: one service's tracks and route. A canary step changes only this stack's
config (versions, weight) and runs `pulumi up` on it alone (ADR 070). A cell is another stack of
this layer in the same environment, with its own namespace."""

from __future__ import annotations

import pulumi
import pulumi_random as random

from infra import iam
from infra.buckets import IMAGE_PREFIX
from infra.cluster import irsa_role
from infra.config import ServiceLayerConfig
from infra.gateway import GATEWAY_NAME
from infra.gateway import NAMESPACE as GATEWAY_NAMESPACE
from infra.layers import Layer, StackId
from infra.observability.stack import NAMESPACE as MONITORING_NAMESPACE
from infra.service_deployment import GatewayRef, ServiceDeployment, ServiceSpec
from infra.stacks.platform import SERVICE_LISTENER, cluster_access
from infra.stacks.refs import Exports, Lower

SERVICE = "image-service"
TENANTS_PATH = f"/etc/{SERVICE}/tenants.toml"
# ADR 131: a cell's objects live under their own prefix (cells.<env>.yaml `storage.prefix`).
CELL_PREFIX = "cells/{cell}"


def storage_prefix(stack: StackId) -> str:
    """The one prefix the stack's role may touch and its service stores under."""
    return CELL_PREFIX.format(cell=stack.cell) if stack.cell else IMAGE_PREFIX


def namespace(stack: StackId) -> str:
    return f"{SERVICE}-{stack.cell}" if stack.cell else SERVICE


def build(stack: StackId, cfg: ServiceLayerConfig) -> Exports:
    name = f"{cfg.name}-{stack.cell}" if stack.cell else cfg.name
    ns = namespace(stack)
    cluster, env = cluster_access(stack, name)
    platform = Lower(stack, Layer.PLATFORM)
    account = Lower(stack, Layer.ACCOUNT)
    bucket_arn, key_arn = env.get("imagesBucketArn"), env.get("bucketKeyArn")
    storage = storage_prefix(stack)
    role = irsa_role(
        f"{name}-{SERVICE}",
        cluster=cluster,
        namespace=ns,
        service_accounts=[SERVICE],
        policy=pulumi.Output.all(bucket_arn, key_arn).apply(
            lambda a: iam.object_access(a[0], [storage], a[1])
        ),
    )
    svc = cfg.service
    # Tenants' URL-signing secrets: generated here, mounted as files, exported (secret) so tenant
    # onboarding can hand them over. Rotation: add a new name to the tenant, then drop the old.
    secrets = {
        n: random.RandomPassword(f"{name}-signing-{n}", length=48, special=False).result
        for n in svc.signing_secret_names
    }
    host = platform.get("serviceHost")
    ServiceDeployment(
        f"{name}-{SERVICE}" if stack.cell else SERVICE,
        ServiceSpec(
            name=SERVICE,
            namespace=ns,
            image_repository=account.get("imageRepositoryUrl"),
            stable_version=svc.stable_version,
            canary_version=svc.canary_version,
            weights=svc.weights,
            stable_replicas=svc.stable_replicas,
            stable_max_replicas=svc.stable_max_replicas,
            canary_replicas=svc.canary_replicas,
            hostname=host,
            # Names fixed in code that both layers share; the host is the platform's listener.
            gateway=GatewayRef(GATEWAY_NAME, GATEWAY_NAMESPACE, SERVICE_LISTENER),
            prometheus_namespace=MONITORING_NAMESPACE,
            role_arn=role.arn,
            env_prefix="IMAGE_SERVICE",
            cell=cfg.cell,
            tenants=svc.tenant_ids,
            env=(
                # The one prefix the role allows: <prefix>/<tenant>/{originals,renditions}/.
                (
                    "IMAGE_SERVICE_STORAGE",
                    pulumi.Output.concat("s3://", env.get("imagesBucket"), f"/{storage}"),
                ),
                ("IMAGE_SERVICE_TENANTS_FILE", TENANTS_PATH),
                ("IMAGE_SERVICE_ENVIRONMENT", cfg.environment),
                ("AWS_REGION", cfg.region),
            ),
            secret_files=(
                ("tenants.toml", pulumi.Output.secret(svc.tenants_toml)),
                *((f"signing/{n}", secrets[n]) for n in svc.signing_secret_names),
            ),
        ),
        provider=cluster.provider,
    )
    return {
        # The delivery keys, kept in state: deliver reads them back before each step, so a
        # fresh checkout (whose stack file pins no version) never rolls a version back.
        "stableVersion": svc.stable_version,
        "canaryVersion": svc.canary_version,
        "canaryWeight": svc.canary_weight,
        "namespace": ns,
        "cell": cfg.cell,
        "tenants": list(svc.tenant_ids),
        "serviceUrl": pulumi.Output.concat("https://", host),
        "stableImage": pulumi.Output.concat(
            account.get("imageRepositoryUrl"), ":", svc.stable_version
        ),
        "signingSecrets": pulumi.Output.secret(secrets),
    }
