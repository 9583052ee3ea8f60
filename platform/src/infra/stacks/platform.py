"""The in-cluster platform layer: what every service in an environment shares (storage class,
gateway, observability). Applied from the environment's runner: it talks to the API server."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from infra.cluster import ClusterAccess, storage_class
from infra.config import PlatformConfig
from infra.gateway import GATEWAY_NAME, Gateway, Listener
from infra.gateway import NAMESPACE as GATEWAY_NAMESPACE
from infra.layers import Layer, StackId
from infra.observability.stack import NAMESPACE as MONITORING_NAMESPACE
from infra.observability.stack import THANOS_QUERY_URL, Monitoring, MonitoringInputs
from infra.stacks.refs import Exports, Lower

SERVICE_LISTENER = "https-service"


def cluster_access(stack: StackId, name: str) -> tuple[ClusterAccess, Lower]:
    env = Lower(stack, Layer.ENVIRONMENT)
    provider = k8s.Provider(
        f"{name}-k8s", kubeconfig=env.get("kubeconfig"), enable_server_side_apply=True
    )
    access = ClusterAccess(
        name=name,
        provider=provider,
        oidc_provider_arn=env.get("oidcProviderArn"),
        oidc_issuer=env.get("oidcIssuer"),
    )
    return access, env


def build(stack: StackId, cfg: PlatformConfig) -> Exports:
    name = cfg.name
    cluster, env = cluster_access(stack, name)
    vpc_cidr = env.get("vpcCidr")
    gp3 = storage_class(name, env.get("clusterKeyArn"), cluster)
    service_listener = Listener(SERVICE_LISTENER, cfg.service_host)
    grafana_listener = Listener("https-grafana", cfg.observability.grafana_host)
    gateway = Gateway(
        f"{name}-gateway",
        hosts=[service_listener, grafana_listener],
        acme_email=cfg.acme_email,
        vpc_cidr=vpc_cidr,
        provider=cluster.provider,
    )
    Monitoring(
        f"{name}-monitoring",
        cfg.observability,
        MonitoringInputs(
            cluster_name=name,
            environment=cfg.environment,
            region=cfg.region,
            storage_class="gp3-encrypted",
            vpc_cidr=vpc_cidr,
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
        bucket_name=env.get("thanosBucket"),
        bucket_arn=env.get("thanosBucketArn"),
        kms_key_arn=env.get("bucketKeyArn"),
        depends_on=[gateway, gp3],
    )
    return {
        "gatewayName": GATEWAY_NAME,
        "gatewayNamespace": GATEWAY_NAMESPACE,
        "serviceListener": SERVICE_LISTENER,
        "serviceHost": cfg.service_host,
        "prometheusNamespace": MONITORING_NAMESPACE,
        "prometheusUrl": THANOS_QUERY_URL,
        "grafanaUrl": f"https://{cfg.observability.grafana_host}",
    }
