"""Create Kubernetes objects from manifest dicts.

Components build plain manifests (pure, testable with kubernetes-validate and checkov) and hand
them here; this is the one place that maps a kind to its typed Pulumi resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

Manifest = dict[str, Any]


def namespace(
    name: str, *, restricted: bool = True, labels: dict[str, str] | None = None
) -> Manifest:
    """A namespace; Pod Security `restricted` is enforced unless a chart truly needs privilege."""
    level = "restricted" if restricted else "baseline"
    pss = {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "audit", "warn")}
    if not restricted:
        # Even where enforcement must be looser, audit and warn still report restricted violations.
        pss |= {
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**pss, **(labels or {})}},
    }


def default_deny_ingress(namespace_name: str) -> Manifest:
    """Deny all ingress in the namespace; narrower policies then admit specific peers."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny-ingress", "namespace": namespace_name},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def allow_same_namespace(namespace_name: str, from_namespaces: tuple[str, ...] = ()) -> Manifest:
    """Admit traffic from pods of the same namespace and from the listed namespaces."""
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    peers += [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in from_namespaces
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-namespace-peers", "namespace": namespace_name},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": peers}]},
    }


def resource_name(owner: str, manifest: Manifest) -> str:
    """The one formula for a manifest's Pulumi name: changing it makes Pulumi replace objects."""
    return f"{owner}-{manifest['kind'].lower()}-{manifest['metadata']['name']}"


def register(
    owner: str,
    manifest: Manifest,
    *,
    parent: pulumi.Resource,
    provider: pulumi.ProviderResource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> pulumi.CustomResource:
    """Register a manifest owned by the component `owner`, through the cluster's provider."""
    return create(
        resource_name(owner, manifest),
        manifest,
        pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=list(depends_on)),
    )


def create(name: str, manifest: Manifest, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Register one manifest as its typed resource (CRDs as CustomResource)."""
    kind = manifest["kind"]
    meta = manifest["metadata"]
    spec = manifest.get("spec")
    if kind == "Namespace":
        return k8s.core.v1.Namespace(name, metadata=meta, opts=opts)
    if kind == "ServiceAccount":
        return k8s.core.v1.ServiceAccount(
            name,
            metadata=meta,
            automount_service_account_token=manifest.get("automountServiceAccountToken"),
            opts=opts,
        )
    if kind == "Secret":
        return k8s.core.v1.Secret(
            name,
            metadata=meta,
            type=manifest.get("type", "Opaque"),
            string_data=manifest.get("stringData"),
            opts=opts,
        )
    if kind == "ConfigMap":
        return k8s.core.v1.ConfigMap(name, metadata=meta, data=manifest.get("data"), opts=opts)
    if kind == "Deployment":
        return k8s.apps.v1.Deployment(name, metadata=meta, spec=spec, opts=opts)
    if kind == "Service":
        return k8s.core.v1.Service(name, metadata=meta, spec=spec, opts=opts)
    if kind == "HorizontalPodAutoscaler":
        return k8s.autoscaling.v2.HorizontalPodAutoscaler(name, metadata=meta, spec=spec, opts=opts)
    if kind == "PodDisruptionBudget":
        return k8s.policy.v1.PodDisruptionBudget(name, metadata=meta, spec=spec, opts=opts)
    if kind == "NetworkPolicy":
        return k8s.networking.v1.NetworkPolicy(name, metadata=meta, spec=spec, opts=opts)
    if "." in manifest["apiVersion"].split("/")[0] and not manifest["apiVersion"].startswith(
        ("apps/", "networking.k8s.io/", "policy/", "autoscaling/")
    ):
        extra = {k: v for k, v in manifest.items() if k not in {"apiVersion", "kind", "metadata"}}
        return k8s.apiextensions.CustomResource(
            name, api_version=manifest["apiVersion"], kind=kind, metadata=meta, opts=opts, **extra
        )
    raise ValueError(f"no typed resource mapped for kind {kind!r} ({manifest['apiVersion']})")


def allow_from_cidr(namespace_name: str, cidr: pulumi.Input[str], name: str) -> Manifest:
    """Admit the EKS control plane (its ENIs live in the VPC) to reach admission webhooks."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace_name},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}]}],
        },
    }


def allow_all_ingress(namespace_name: str, name: str) -> Manifest:
    """The internet-facing proxies: explicit, so every namespace still has a policy."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace_name},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
