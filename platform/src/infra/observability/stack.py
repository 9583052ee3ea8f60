"""The monitoring namespace: kube-prometheus-stack (Prometheus + Thanos sidecar + Alertmanager),
Thanos query/store/compactor, Grafana on Thanos Query, dashboards as ConfigMaps, PrometheusRule.

Values are built by pure functions so their contracts (retention, labels, IRSA) are testable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import yaml
from image_contracts.stacks import PROJECT

from infra import charts, helm, iam, k8s_objects
from infra.cluster import ClusterAccess, irsa_role
from infra.config import ObservabilityConfig
from infra.k8s_objects import Manifest
from infra.observability import alerting as alerting_values
from infra.observability import dashboards, grafana_model, rules

NAMESPACE = "monitoring"
OBJSTORE_SECRET = "thanos-objstore"  # noqa: S105 - a Secret name, not a secret
OBJSTORE_KEY = "objstore.yml"
PROMETHEUS_SA = "prometheus"
ALERTMANAGER_SA = "alertmanager"
STORE_SA, COMPACTOR_SA = "thanos-storegateway", "thanos-compactor"
KPS_NAME = "kps"  # fullnameOverride: the sidecar discovery service is kps-thanos-discovery
THANOS_QUERY_URL = f"http://thanos-query.{NAMESPACE}.svc:9090"
REPLICA_LABEL = "prometheus_replica"
DASHBOARD_LABEL = "grafana_dashboard"


@dataclass(frozen=True)
class MonitoringInputs:
    cluster_name: str
    environment: str
    region: str
    storage_class: str
    vpc_cidr: pulumi.Input[str]
    runbook_base_url: str
    grafana_host: str
    gateway_name: str
    gateway_namespace: str
    gateway_section: str


def objstore_config(bucket: str, region: str, kms_key_arn: str) -> str:
    """Thanos object storage config: S3 via IRSA (no static keys), SSE-KMS with our key."""
    return yaml.safe_dump(
        {
            "type": "S3",
            "config": {
                "bucket": bucket,
                "endpoint": f"s3.{region}.amazonaws.com",
                "region": region,
                "sse_config": {"type": "SSE-KMS", "kms_key_id": kms_key_arn},
            },
        },
        sort_keys=True,
    )


def _pvc(storage_class: str, gib: int) -> dict[str, Any]:
    return {
        "volumeClaimTemplate": {
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{gib}Gi"}},
            }
        }
    }


def prometheus_values(
    cfg: ObservabilityConfig,
    inp: MonitoringInputs,
    role_arn: pulumi.Input[str],
    alerting: pulumi.Input[dict[str, Any]] | None = None,
    alertmanager_role_arn: pulumi.Input[str] = "",
) -> dict[str, Any]:
    return {
        **alerting_values.control_plane_off(),
        "fullnameOverride": KPS_NAME,
        "grafana": {"enabled": False},  # Grafana is its own release, reading Thanos Query
        # node-exporter needs host namespaces, which Pod Security would rightly refuse here.
        "nodeExporter": {"enabled": False},
        "alertmanager": {
            "enabled": True,
            "serviceAccount": {
                "create": True,
                "name": ALERTMANAGER_SA,
                "annotations": {"eks.amazonaws.com/role-arn": alertmanager_role_arn},
            },
            "config": alerting or {},
            "alertmanagerSpec": {"replicas": 1, "storage": _pvc(inp.storage_class, 5)},
        },
        "prometheus": {
            "serviceAccount": {
                "create": True,
                "name": PROMETHEUS_SA,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            },
            "thanosService": {"enabled": True},
            "prometheusSpec": {
                "replicas": cfg.prometheus_replicas,
                "retention": f"{cfg.prometheus_retention_hours}h",
                "externalLabels": {
                    "cluster": inp.cluster_name,
                    "environment": inp.environment,
                    "shard": "0",
                },
                "replicaExternalLabelName": REPLICA_LABEL,
                "storageSpec": _pvc(inp.storage_class, cfg.prometheus_volume_gib),
                "thanos": {
                    "objectStorageConfig": {
                        "existingSecret": {"name": OBJSTORE_SECRET, "key": OBJSTORE_KEY}
                    }
                },
                # Pick up ServiceMonitors and PrometheusRules from every namespace, not only
                # those carrying this release's labels.
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
            },
        },
    }


@dataclass(frozen=True)
class ThanosRoles:
    """One role per Thanos job: only the compactor deletes from the bucket."""

    store: pulumi.Input[str]
    compactor: pulumi.Input[str]


def thanos_values(
    cfg: ObservabilityConfig, inp: MonitoringInputs, roles: ThanosRoles
) -> dict[str, Any]:
    retention = f"{cfg.thanos_retention_days}d"
    return {
        "image": charts.THANOS_IMAGE,
        "global": {"security": {"allowInsecureImages": True}},  # non-Bitnami image, on purpose
        "existingObjstoreSecret": OBJSTORE_SECRET,
        "existingObjstoreSecretItems": [{"key": OBJSTORE_KEY, "path": "objstore.yml"}],
        "query": {
            "enabled": True,
            "replicaLabel": [REPLICA_LABEL],
            "dnsDiscovery": {
                "enabled": True,
                "sidecarsService": f"{KPS_NAME}-thanos-discovery",
                "sidecarsNamespace": NAMESPACE,
            },
        },
        "queryFrontend": {"enabled": False},
        "storegateway": {
            "enabled": True,
            "persistence": {"enabled": True, "storageClass": inp.storage_class, "size": "20Gi"},
            "serviceAccount": {
                "create": True,
                "name": STORE_SA,
                "annotations": {"eks.amazonaws.com/role-arn": roles.store},
            },
        },
        "compactor": {
            # A Deployment of one (the chart adds --wait unless it runs as a CronJob): the
            # compactor must be a singleton per bucket. Downsampling stays on (no
            # --downsampling.disable); retention is equal at every resolution, so downsampled
            # data never outlives the raw data it summarises.
            "enabled": True,
            "cronJob": {"enabled": False},
            "retentionResolutionRaw": retention,
            "retentionResolution5m": retention,
            "retentionResolution1h": retention,
            "persistence": {"enabled": True, "storageClass": inp.storage_class, "size": "50Gi"},
            "serviceAccount": {
                "create": True,
                "name": COMPACTOR_SA,
                "annotations": {"eks.amazonaws.com/role-arn": roles.compactor},
            },
        },
        "ruler": {"enabled": False},
        "bucketweb": {"enabled": False},
        "receive": {"enabled": False},
    }


def grafana_values(inp: MonitoringInputs) -> dict[str, Any]:
    return {
        "datasources": {
            "datasources.yaml": {
                "apiVersion": 1,
                "datasources": [
                    {
                        "name": "Thanos",
                        "uid": grafana_model.DATASOURCE_UID,
                        "type": "prometheus",
                        "access": "proxy",
                        "url": THANOS_QUERY_URL,
                        "isDefault": True,
                        "jsonData": {"timeInterval": "15s"},
                    }
                ],
            }
        },
        "sidecar": {
            "dashboards": {
                "enabled": True,
                "label": DASHBOARD_LABEL,
                "labelValue": "1",
                "searchNamespace": NAMESPACE,
            }
        },
        "grafana.ini": {
            "server": {"root_url": f"https://{inp.grafana_host}"},
            "auth.anonymous": {"enabled": False},
            "security": {"cookie_secure": True, "disable_gravatar": True},
            "users": {"allow_sign_up": False},
        },
        "persistence": {"enabled": False},
    }


def dashboard_configmaps() -> list[Manifest]:
    """One ConfigMap per dashboard, labelled for the Grafana sidecar."""
    out: list[Manifest] = []
    for board in dashboards.all_dashboards():
        model = grafana_model.render(board)
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"dashboard-{board.uid}",
                    "namespace": NAMESPACE,
                    "labels": {DASHBOARD_LABEL: "1"},
                },
                "data": {f"{board.uid}.json": json.dumps(model, sort_keys=True)},
            }
        )
    return out


def prometheus_rule(runbook_base_url: str) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "image-service",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": PROJECT},
        },
        "spec": rules.render(rules.all_groups(), runbook_base_url),
    }


def grafana_route(inp: MonitoringInputs) -> Manifest:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "grafana", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": inp.gateway_name,
                    "namespace": inp.gateway_namespace,
                    "sectionName": inp.gateway_section,
                }
            ],
            "hostnames": [inp.grafana_host],
            "rules": [
                {"backendRefs": [{"group": "", "kind": "Service", "name": "grafana", "port": 80}]}
            ],
        },
    }


def namespace_manifests(inp: MonitoringInputs) -> list[Manifest]:
    return [
        # Third-party charts: enforce baseline, audit and warn on restricted (see ADR 023).
        k8s_objects.namespace(
            NAMESPACE, restricted=False, labels={"image-platform/gateway-routes": "true"}
        ),
        k8s_objects.default_deny_ingress(NAMESPACE),
        k8s_objects.allow_same_namespace(NAMESPACE, (inp.gateway_namespace,)),
        k8s_objects.allow_from_cidr(NAMESPACE, inp.vpc_cidr, "control-plane-webhooks"),
    ]


class Monitoring(pulumi.ComponentResource):
    def __init__(  # noqa: PLR0913  Pulumi component: name, its inputs, opts
        self,
        name: str,
        cfg: ObservabilityConfig,
        inp: MonitoringInputs,
        *,
        cluster: ClusterAccess,
        bucket_name: pulumi.Input[str],
        bucket_arn: pulumi.Input[str],
        kms_key_arn: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:observability:Monitoring", name, None, opts)
        provider = cluster.provider

        def role(sa: str, actions: Sequence[str]) -> aws.iam.Role:
            policy = pulumi.Output.all(bucket_arn, kms_key_arn).apply(
                lambda a: iam.bucket_access(a[0], a[1], actions)
            )
            return irsa_role(
                f"{name}-{sa}",
                cluster=cluster,
                namespace=NAMESPACE,
                service_accounts=[sa],
                policy=policy,
                parent=self,
            )

        # The sidecar uploads blocks, the store reads them; only the compactor deletes.
        self.prometheus_role = role(PROMETHEUS_SA, iam.UPLOAD)
        thanos_roles = ThanosRoles(
            store=role(STORE_SA, iam.READ).arn, compactor=role(COMPACTOR_SA, iam.COMPACT).arn
        )
        topics = {
            severity: aws.sns.Topic(
                f"{name}-{severity}",
                kms_master_key_id="alias/aws/sns",
                opts=pulumi.ResourceOptions(parent=self),
            )
            for severity in ("page", "ticket")
        }
        for severity, topic in topics.items():
            aws.sns.TopicSubscription(
                f"{name}-{severity}",
                topic=topic.arn,
                protocol="email",
                endpoint=cfg.alert_email,
                opts=pulumi.ResourceOptions(parent=self),
            )
        alertmanager_role = irsa_role(
            f"{name}-{ALERTMANAGER_SA}",
            cluster=cluster,
            namespace=NAMESPACE,
            service_accounts=[ALERTMANAGER_SA],
            policy=pulumi.Output.all(topics["page"].arn, topics["ticket"].arn).apply(iam.publish),
            parent=self,
        )
        alerting = pulumi.Output.all(topics["page"].arn, topics["ticket"].arn).apply(
            lambda a: alerting_values.alertmanager_config(a[0], a[1], inp.region)
        )

        def k8s(manifest: Manifest, deps: Sequence[pulumi.Resource]) -> pulumi.Resource:
            return k8s_objects.register(
                name, manifest, parent=self, provider=provider, depends_on=deps
            )

        ns_objects = namespace_manifests(inp)
        namespace = k8s(ns_objects[0], depends_on)
        for manifest in ns_objects[1:]:
            k8s(manifest, [namespace])
        objstore = pulumi.Output.all(bucket_name, kms_key_arn).apply(
            lambda a: objstore_config(a[0], inp.region, a[1])
        )
        secret = k8s(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": OBJSTORE_SECRET, "namespace": NAMESPACE},
                "type": "Opaque",
                "stringData": {OBJSTORE_KEY: pulumi.Output.secret(objstore)},
            },
            [namespace],
        )
        base = [namespace, secret]
        self.kps = helm.release(
            "kube-prometheus-stack",
            charts.KUBE_PROMETHEUS_STACK,
            namespace=NAMESPACE,
            values=prometheus_values(
                cfg, inp, self.prometheus_role.arn, alerting, alertmanager_role.arn
            ),
            provider=provider,
            parent=self,
            depends_on=base,
        )
        helm.release(
            "thanos",
            charts.THANOS,
            namespace=NAMESPACE,
            values=thanos_values(cfg, inp, thanos_roles),
            provider=provider,
            parent=self,
            depends_on=base,
        )
        self.grafana = helm.release(
            "grafana",
            charts.GRAFANA,
            namespace=NAMESPACE,
            values=grafana_values(inp),
            provider=provider,
            parent=self,
            depends_on=base,
        )
        for manifest in dashboard_configmaps():
            k8s(manifest, [namespace])
        k8s(prometheus_rule(inp.runbook_base_url), [self.kps])
        # depends_on carries the gateway, whose chart installs the Gateway API CRDs.
        k8s(grafana_route(inp), [*depends_on, self.grafana])
        self.register_outputs({"grafanaUrl": f"https://{inp.grafana_host}"})
