"""Pinned Helm charts: one place to read and bump every third-party version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    repo: str | None  # None for OCI charts, whose `name` is the full oci:// reference


KUBE_PROMETHEUS_STACK = Chart(
    "kube-prometheus-stack", "67.8.0", "https://prometheus-community.github.io/helm-charts"
)
# Bitnami publishes its charts as OCI artifacts now; values checked against this exact version.
THANOS = Chart("oci://registry-1.docker.io/bitnamicharts/thanos", "17.6.0", None)
GRAFANA = Chart("grafana", "8.8.2", "https://grafana.github.io/helm-charts")
ENVOY_GATEWAY = Chart("oci://docker.io/envoyproxy/gateway-helm", "v1.3.0", None)
CERT_MANAGER = Chart("cert-manager", "v1.16.2", "https://charts.jetstack.io")

# Thanos itself from its upstream image: Bitnami's free images are no longer published.
THANOS_IMAGE = {"registry": "quay.io", "repository": "thanos/thanos", "tag": "v0.39.2"}

ALL = (KUBE_PROMETHEUS_STACK, THANOS, GRAFANA, ENVOY_GATEWAY, CERT_MANAGER)
