"""Helm releases from pinned charts, always through the cluster's provider."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.charts import Chart


def release(
    name: str,
    chart: Chart,
    *,
    namespace: str,
    values: pulumi.Input[dict[str, Any]],
    provider: pulumi.ProviderResource,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.helm.v3.Release:
    return k8s.helm.v3.Release(
        name,
        name=name,  # a fixed release name keeps service names (e.g. thanos-query) predictable
        chart=chart.name,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=namespace,
        create_namespace=False,
        values=values,
        atomic=True,
        cleanup_on_fail=True,
        max_history=10,
        timeout=900,
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=list(depends_on)),
    )
