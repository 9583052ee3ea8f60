"""Every Kubernetes object the program creates directly, validated in strict mode against the
schemas of the cluster's configured Kubernetes version (kubernetes-validate)."""

import copy
from typing import Any

import kubernetes_validate
import pytest
from pulumi_harness import ENVIRONMENTS, Recorded, manifest

# API groups served by Kubernetes itself; everything else is a custom resource of a chart's CRD.
BUILTIN_GROUPS = {
    "v1", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "storage.k8s.io",
    "rbac.authorization.k8s.io", "admissionregistration.k8s.io", "scheduling.k8s.io",
}  # fmt: skip


def is_builtin(obj: dict[str, Any]) -> bool:
    api = obj["apiVersion"]
    return (api.split("/")[0] if "/" in api else api) in BUILTIN_GROUPS


def kube_version(resources: list[Recorded]) -> str:
    return str(next(r.inputs["version"] for r in resources if r.type == "aws:eks/cluster:Cluster"))


def validate(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, f"{version}.0", strict=True)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_builtin_objects_validate_strictly(recorded: dict[str, list[Recorded]], env: str) -> None:
    version = kube_version(recorded[env])
    objects = [manifest(r) for r in recorded[env] if r.is_kubernetes_object]
    builtin = [o for o in objects if is_builtin(o)]
    assert len(builtin) >= 20, "the program creates namespaces, workloads, policies..."
    failures = []
    for obj in builtin:
        try:
            validate(obj, version)
        except kubernetes_validate.ValidationError as exc:
            failures.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
    assert failures == []


def test_every_object_is_builtin_or_a_known_custom_resource(
    recorded: dict[str, list[Recorded]],
) -> None:
    custom = {
        (o["apiVersion"], o["kind"])
        for r in recorded["prod"]
        if r.is_kubernetes_object and not is_builtin(o := manifest(r))
    }
    # These are validated against their CRDs' schemas in test_crd_schema.py.
    assert custom == {
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("gateway.networking.k8s.io/v1", "GatewayClass"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),
        ("gateway.envoyproxy.io/v1alpha1", "ClientTrafficPolicy"),
        ("cert-manager.io/v1", "ClusterIssuer"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }


def _deployment(recorded: dict[str, list[Recorded]]) -> dict[str, Any]:
    return copy.deepcopy(
        next(
            manifest(r)
            for r in recorded["prod"]
            if r.is_kubernetes_object and r.inputs.get("kind") == "Deployment"
        )
    )


def test_strict_mode_rejects_an_unknown_field(recorded: dict[str, list[Recorded]]) -> None:
    obj = _deployment(recorded)
    obj["spec"]["replicass"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(obj, kube_version(recorded["prod"]))


def test_schema_rejects_a_wrong_type(recorded: dict[str, list[Recorded]]) -> None:
    obj = _deployment(recorded)
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(obj, kube_version(recorded["prod"]))


def test_prestop_sleep_needs_a_version_that_has_it(recorded: dict[str, list[Recorded]]) -> None:
    # The sleep action arrived in 1.29 (beta, on by default in 1.30): older schemas refuse it.
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(_deployment(recorded), "1.28")
