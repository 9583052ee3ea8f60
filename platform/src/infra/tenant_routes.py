"""The thin router of cells (ADR 137): HTTPRoutes whose only content is the placement table.

A cell's service stack routes its own tenants, `/v1/<tenant>/…`, to its own stable, baseline and
canary Services with that cell's weights. Gateway API bounds a route (the HTTPRoute CRD): at
most 64 matches per rule and 128 across a route's rules, so a cell's tenants
are split over as many routes as they need; every rule of a cell carries the same backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

MATCHES_PER_RULE = 64  # HTTPRoute: spec.rules[].matches maxItems
# HTTPRoute CEL: total matches across rules `<= 128`, its message "less than 128": 127 meets both.
MATCHES_PER_ROUTE = 127
CATCH_ALL = "/"


@dataclass(frozen=True)
class Backend:
    service: str
    port: int
    weight: int


def tenant_path(tenant: str) -> str:
    """PathPrefix matches whole path elements: `/v1/acme` takes `/v1/acme/…`, not `/v1/acme2`."""
    return f"/v1/{tenant}"


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def routes(
    name: str,
    namespace: str,
    paths: Sequence[str],
    backends: Sequence[Backend],
    parent: dict[str, Any],
    hostname: pulumi.Input[str],
    labels: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """HTTPRoutes sending each path prefix to the weighted backends; the first is named `name`,
    the next `name-1`, … so a growing cell adds routes without renaming the first."""
    if not paths:
        raise ValueError(f"{namespace}/{name}: a route needs at least one path")
    refs = [
        {"group": "", "kind": "Service", "name": b.service, "port": b.port, "weight": b.weight}
        for b in backends
    ]
    out = []
    for index, group in enumerate(_chunks(sorted(paths), MATCHES_PER_ROUTE)):
        rules = [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": p}} for p in chunk],
                "backendRefs": refs,
            }
            for chunk in _chunks(group, MATCHES_PER_RULE)
        ]
        metadata: dict[str, Any] = {
            "name": name if index == 0 else f"{name}-{index}",
            "namespace": namespace,
        }
        if labels:
            metadata["labels"] = dict(labels)
        out.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": metadata,
                "spec": {"parentRefs": [parent], "hostnames": [hostname], "rules": rules},
            }
        )
    return out
