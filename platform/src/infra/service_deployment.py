"""A canary-ready deployment of one HTTP service: stable, baseline and canary tracks behind one
weighted HTTPRoute, with IRSA, HPA, PDB, NetworkPolicy, ServiceMonitor and a restricted pod.

Reusable for any service: the image service is its first user (see program.py). Manifests are
built by the pure `manifests()`; the component only registers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from image_contracts.tracks import TRACKS
from image_contracts.versions import version_error

from infra import k8s_objects, tenant_routes
from infra.k8s_objects import Manifest

RUN_AS = 10001  # a high UID, distinct from any host user


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "500m"
    memory_request: str = "512Mi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"


@dataclass(frozen=True)
class GatewayRef:
    name: str
    namespace: str
    section: str = "https"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    namespace: str
    image_repository: pulumi.Input[str]
    stable_version: str
    canary_version: str
    weights: tuple[int, int, int]  # stable, baseline, canary; sums to 100
    stable_replicas: int
    stable_max_replicas: int
    canary_replicas: int
    hostname: pulumi.Input[str]
    gateway: GatewayRef
    prometheus_namespace: str
    role_arn: pulumi.Input[str] | None = None
    # Only these pods may connect: Envoy Gateway's proxies and the operator's Prometheus.
    gateway_pods: tuple[tuple[str, str], ...] = (
        ("app.kubernetes.io/name", "envoy"),
        ("app.kubernetes.io/component", "proxy"),
    )
    prometheus_pods: tuple[tuple[str, str], ...] = (("app.kubernetes.io/name", "prometheus"),)
    env: tuple[tuple[str, pulumi.Input[str]], ...] = ()
    # (path under /etc/<name>/, content), from one Secret; paths may have one directory level.
    secret_files: tuple[tuple[str, pulumi.Input[str]], ...] = ()
    port: int = 8080
    liveness_path: str = "/healthz"
    readiness_path: str = "/readyz"
    metrics_path: str = "/metrics"
    env_prefix: str = "SERVICE"
    resources: Resources = field(default_factory=Resources)
    termination_grace_seconds: int = 30
    pre_stop_sleep_seconds: int = 5
    # A cell (ADR 136): its objects' names and labels carry it, and its route takes only its
    # tenants' paths (ADR 137). Empty: the environment's one service, routed at "/".
    cell: str = ""
    tenants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if sum(self.weights) != 100 or min(self.weights) < 0:
            raise ValueError(f"{self.name}: weights {self.weights} must be >= 0 and sum to 100")
        # Stable always runs; an empty canary version means "no canary".
        for version in (self.stable_version, self.canary_version or self.stable_version):
            if problem := version_error(version):
                raise ValueError(f"{self.name}: {problem}")
        if self.pre_stop_sleep_seconds >= self.termination_grace_seconds:
            raise ValueError(f"{self.name}: preStop sleep must end before the grace period")

    @property
    def canary_active(self) -> bool:
        return bool(self.canary_version) and self.weights[2] > 0

    @property
    def base(self) -> str:
        """Prefix of the per-track objects' names: `<name>-<cell>` in a cell."""
        return f"{self.name}-{self.cell}" if self.cell else self.name

    @property
    def app_labels(self) -> dict[str, str]:
        cell = {"cell": self.cell} if self.cell else {}
        return {"app.kubernetes.io/name": self.name, **cell}


def image_ref(repository: pulumi.Input[str], version: str) -> pulumi.Input[str]:
    """repo:version: versions are immutable tags (image_contracts.versions), never digests."""
    if isinstance(repository, str):
        return f"{repository}:{version}"
    return pulumi.Output.concat(repository, ":", version)


def _secret_key(path: str) -> str:
    # Secret keys cannot hold "/": the volume's items map each key back to its path.
    return path.replace("/", "--")


def _labels(spec: ServiceSpec, track: str) -> dict[str, str]:
    return {**spec.app_labels, "track": track}


def _track_version(spec: ServiceSpec, track: str) -> str:
    # Baseline runs the stable version on fresh pods, so it compares like for like with the canary.
    return spec.canary_version if track == "canary" and spec.canary_version else spec.stable_version


def _replicas(spec: ServiceSpec, track: str) -> int | None:
    if track == "stable":
        return None  # owned by the HPA; setting it here would fight the autoscaler
    # Canary and baseline run while a canary version is set, weight 0 included: the first step
    # starts them with no traffic (Pulumi waits for their rollout), and only the next `up`
    # shifts weight to pods that are already Ready. Likewise on the way out (ADR 077).
    return spec.canary_replicas if spec.canary_version else 0


def _container(spec: ServiceSpec, track: str) -> dict[str, Any]:
    version = _track_version(spec, track)
    p = spec.env_prefix
    env: list[dict[str, Any]] = [
        {"name": f"{p}_TRACK", "value": track},
        {"name": f"{p}_VERSION", "value": version},
        *({"name": k, "value": v} for k, v in spec.env),
    ]
    # A writable /tmp on an emptyDir: the root filesystem is read-only.
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    if spec.secret_files:
        mounts.append({"name": "secrets", "mountPath": f"/etc/{spec.name}", "readOnly": True})
    probe = {"httpGet": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2}
    return {
        "name": spec.name,
        "image": image_ref(spec.image_repository, version),
        "imagePullPolicy": "Always",
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "requests": {
                "cpu": spec.resources.cpu_request,
                "memory": spec.resources.memory_request,
            },
            "limits": {"cpu": spec.resources.cpu_limit, "memory": spec.resources.memory_limit},
        },
        "readinessProbe": {
            **probe,
            "httpGet": {"path": spec.readiness_path, "port": "http"},
            "failureThreshold": 2,
        },
        "livenessProbe": {
            **probe,
            "httpGet": {"path": spec.liveness_path, "port": "http"},
            "initialDelaySeconds": 10,
            "failureThreshold": 3,
        },
        # Keep serving while the endpoint is removed from the gateway, then drain.
        "lifecycle": {"preStop": {"sleep": {"seconds": spec.pre_stop_sleep_seconds}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }


def _deployment(spec: ServiceSpec, track: str) -> Manifest:
    labels = _labels(spec, track)
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    if spec.secret_files:
        volumes.append(
            {
                "name": "secrets",
                "secret": {
                    "secretName": f"{spec.name}-files",
                    "defaultMode": 0o440,
                    "items": [{"key": _secret_key(p), "path": p} for p, _ in spec.secret_files],
                },
            }
        )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.name,
        # The service never calls the Kubernetes API; IRSA uses its own projected token.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": spec.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": labels},
            }
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ],
        "containers": [_container(spec, track)],
        "volumes": volumes,
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "revisionHistoryLimit": 5,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {"labels": {**labels, "version": _track_version(spec, track)}},
            "spec": pod_spec,
        },
    }
    replicas = _replicas(spec, track)
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{spec.base}-{track}",
            "namespace": spec.namespace,
            "labels": {**labels, "version": _track_version(spec, track)},
        },
        "spec": deployment_spec,
    }


def _service(spec: ServiceSpec, track: str) -> Manifest:
    labels = _labels(spec, track)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{spec.base}-{track}",
            "namespace": spec.namespace,
            "labels": {**labels, "metrics": "enabled"},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def manifests(spec: ServiceSpec) -> list[Manifest]:
    """Every Kubernetes object of the service, in apply order."""
    ns = spec.namespace
    app = spec.app_labels
    sa_meta: dict[str, Any] = {"name": spec.name, "namespace": ns, "labels": app}
    if spec.role_arn is not None:
        sa_meta["annotations"] = {"eks.amazonaws.com/role-arn": spec.role_arn}
    out: list[Manifest] = [
        k8s_objects.namespace(ns, labels={"image-platform/gateway-routes": "true"}),
        k8s_objects.default_deny_ingress(ns),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"{spec.name}-ingress", "namespace": ns},
            "spec": {
                "podSelector": {"matchLabels": app},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": peer}
                                },
                                "podSelector": {"matchLabels": dict(pods)},
                            }
                            for peer, pods in (
                                (spec.gateway.namespace, spec.gateway_pods),
                                (spec.prometheus_namespace, spec.prometheus_pods),
                            )
                        ],
                        "ports": [{"protocol": "TCP", "port": spec.port}],
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": sa_meta,
            "automountServiceAccountToken": False,
        },
    ]
    if spec.secret_files:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{spec.name}-files", "namespace": ns, "labels": app},
                "type": "Opaque",
                "stringData": {_secret_key(p): v for p, v in spec.secret_files},
            }
        )
    for track in TRACKS:
        out += [_deployment(spec, track), _service(spec, track)]
    stable = _labels(spec, "stable")
    out += [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": f"{spec.base}-stable", "namespace": ns, "labels": stable},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": f"{spec.base}-stable",
                },
                "minReplicas": spec.stable_replicas,
                "maxReplicas": spec.stable_max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": f"{spec.base}-stable", "namespace": ns, "labels": stable},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": stable}},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": spec.name, "namespace": ns, "labels": app},
            "spec": {
                "selector": {"matchLabels": {**app, "metrics": "enabled"}},
                "namespaceSelector": {"matchNames": [ns]},
                "endpoints": [
                    {
                        "port": "http",
                        "path": spec.metrics_path,
                        "interval": "15s",
                        # The service labels its own series with track/version/tenant: keep them
                        # as exported rather than renaming them exported_*. Every series also
                        # carries its pod's cell (absent outside cells), ADR 138.
                        "honorLabels": True,
                        "relabelings": [
                            {
                                "sourceLabels": [f"__meta_kubernetes_pod_label_{label}"],
                                "targetLabel": label,
                                "action": "replace",
                            }
                            for label in ("track", "version", "cell")
                        ],
                    }
                ],
            },
        },
    ]
    return out + http_routes(spec)


def http_routes(spec: ServiceSpec) -> list[Manifest]:
    """Weighted stable/baseline/canary backends: each canary step changes only the weights. In a
    cell the paths are its tenants' (the placement table, ADR 137), else everything ("/")."""
    if spec.cell and not spec.tenants:
        return []  # an empty cell serves nobody; never a catch-all
    paths = [tenant_routes.tenant_path(t) for t in spec.tenants] if spec.cell else []
    return tenant_routes.routes(
        spec.name,
        spec.namespace,
        paths or [tenant_routes.CATCH_ALL],
        [
            tenant_routes.Backend(f"{spec.base}-{track}", spec.port, weight)
            for track, weight in zip(TRACKS, spec.weights, strict=True)
        ],
        parent={
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": spec.gateway.name,
            "namespace": spec.gateway.namespace,
            "sectionName": spec.gateway.section,
        },
        hostname=spec.hostname,
        labels=spec.app_labels if spec.cell else None,
    )


class ServiceDeployment(pulumi.ComponentResource):
    """Registers `manifests(spec)` in order with one Kubernetes provider."""

    def __init__(
        self,
        name: str,
        spec: ServiceSpec,
        *,
        provider: pulumi.ProviderResource,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:apps:ServiceDeployment", name, None, opts)
        created: list[pulumi.Resource] = []
        namespace_resource: pulumi.Resource | None = None
        for manifest in manifests(spec):
            deps = [*depends_on] + ([namespace_resource] if namespace_resource else [])
            resource = k8s_objects.register(
                name, manifest, parent=self, provider=provider, depends_on=deps
            )
            if manifest["kind"] == "Namespace":
                namespace_resource = resource
            created.append(resource)
        self.resources = created
        self.register_outputs(
            {"namespace": spec.namespace, "url": pulumi.Output.concat("https://", spec.hostname)}
        )
