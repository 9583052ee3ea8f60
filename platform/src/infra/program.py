"""The composition root: typed config in, the whole estate out. `platform/__main__.py` calls main().

Order of construction follows the data: buckets and the registry (no dependencies), CI identity
(needs the registry), network (needs the log bucket), cluster (network, CI role as admin), then
everything inside the cluster through its provider.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from image_contracts.stacks import PROJECT

from infra import iam
from infra.buckets import IMAGE_PREFIX, Buckets
from infra.ci_identity import CiIdentity
from infra.cluster import Cluster, irsa_role
from infra.config import KEYS, PlatformConfig, parse
from infra.gateway import GATEWAY_NAME, Gateway, Listener
from infra.gateway import NAMESPACE as GATEWAY_NAMESPACE
from infra.network import Network
from infra.observability.stack import NAMESPACE as MONITORING_NAMESPACE
from infra.observability.stack import Monitoring, MonitoringInputs
from infra.registry import Registry
from infra.service_deployment import GatewayRef, ServiceDeployment, ServiceSpec

SERVICE = "image-service"
TENANTS_PATH = f"/etc/{SERVICE}/tenants.toml"


def load_config() -> PlatformConfig:
    """Read every declared key from the stack; parsing (pure) validates them."""
    cfg = pulumi.Config(PROJECT)
    raw = {key: value for key in KEYS if (value := cfg.get(key)) is not None}
    return parse(raw, environment=pulumi.get_stack(), region=pulumi.Config("aws").require("region"))


def main() -> None:
    cfg = load_config()
    name = cfg.name
    account_id = aws.get_caller_identity_output().account_id

    buckets = Buckets(name, cfg.storage, tenants=cfg.service.tenant_ids, account_id=account_id)
    registry = Registry(f"{name}-{SERVICE}", kms_key_arn=buckets.key.arn)
    ci = CiIdentity(
        f"{name}-ci",
        cfg.ci,
        project=PROJECT,
        account_id=account_id,
        region=cfg.region,
        repository_arn=registry.repository.arn,
    )
    network = Network(
        name,
        cfg.network,
        region=cfg.region,
        cluster_name=name,
        flow_log_bucket_arn=buckets.logs.bucket.arn,
    )
    cluster = Cluster(
        name,
        cfg.cluster,
        account_id=account_id,
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        public_subnet_ids=network.public_subnet_ids,
        admin_role_arn=ci.role.arn,
    )
    service_listener = Listener("https-service", cfg.service.host)
    grafana_listener = Listener("https-grafana", cfg.observability.grafana_host)
    gateway = Gateway(
        f"{name}-gateway",
        hosts=[service_listener, grafana_listener],
        acme_email=cfg.acme_email,
        vpc_cidr=cfg.network.cidr,
        provider=cluster.provider,
        depends_on=[cluster.node_group],
    )
    monitoring = Monitoring(
        f"{name}-monitoring",
        cfg.observability,
        MonitoringInputs(
            cluster_name=name,
            environment=cfg.environment,
            region=cfg.region,
            storage_class="gp3-encrypted",
            vpc_cidr=cfg.network.cidr,
            runbook_base_url=(
                f"https://github.com/{cfg.ci.github_repository}/blob/"
                f"{cfg.ci.github_branch}/docs/runbooks"
            ),
            grafana_host=cfg.observability.grafana_host,
            gateway_name=GATEWAY_NAME,
            gateway_namespace=GATEWAY_NAMESPACE,
            gateway_section=grafana_listener.section,
        ),
        cluster=cluster,
        bucket_name=buckets.thanos.bucket.bucket,
        bucket_arn=buckets.thanos.bucket.arn,
        kms_key_arn=buckets.key.arn,
        depends_on=[gateway, cluster.storage_class],
    )

    service_role = irsa_role(
        f"{name}-{SERVICE}",
        cluster=cluster,
        namespace=SERVICE,
        service_accounts=[SERVICE],
        policy=pulumi.Output.all(buckets.images.bucket.arn, buckets.key.arn).apply(
            lambda a: iam.object_access(a[0], [IMAGE_PREFIX], a[1])
        ),
        parent=cluster,
    )
    svc = cfg.service
    # Tenants' URL-signing secrets: generated here, mounted as files, exported (secret) so tenant
    # onboarding can hand them over. Rotation: add a new name to the tenant, then drop the old.
    secrets = {
        n: random.RandomPassword(
            f"{name}-signing-{n}",
            length=48,
            special=False,
            opts=pulumi.ResourceOptions(parent=cluster),
        ).result
        for n in svc.signing_secret_names
    }
    ServiceDeployment(
        SERVICE,
        ServiceSpec(
            name=SERVICE,
            namespace=SERVICE,
            image_repository=registry.repository.repository_url,
            stable_version=svc.stable_version,
            canary_version=svc.canary_version,
            weights=svc.weights,
            stable_replicas=svc.stable_replicas,
            stable_max_replicas=svc.stable_max_replicas,
            canary_replicas=svc.canary_replicas,
            hostname=svc.host,
            gateway=GatewayRef(GATEWAY_NAME, GATEWAY_NAMESPACE, service_listener.section),
            prometheus_namespace=MONITORING_NAMESPACE,
            role_arn=service_role.arn,
            env_prefix="IMAGE_SERVICE",
            env=(
                # The one prefix the role allows: <prefix>/<tenant>/{originals,renditions}/.
                (
                    "IMAGE_SERVICE_STORAGE",
                    pulumi.Output.concat("s3://", buckets.images.bucket.bucket, f"/{IMAGE_PREFIX}"),
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
        depends_on=[gateway, monitoring],
    )

    pulumi.export("clusterName", name)
    pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
    pulumi.export("imagesBucket", buckets.images.bucket.bucket)
    pulumi.export("thanosBucket", buckets.thanos.bucket.bucket)
    pulumi.export("accessLogsBucket", buckets.logs.bucket.bucket)
    pulumi.export("grafanaUrl", f"https://{cfg.observability.grafana_host}")
    pulumi.export("serviceUrl", f"https://{svc.host}")
    pulumi.export("ecrRepository", registry.repository.repository_url)
    pulumi.export("deployRoleArn", ci.role.arn)
    pulumi.export("signingSecrets", pulumi.Output.secret(secrets))
