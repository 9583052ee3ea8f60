"""Typed builders for the slice of Grafana's dashboard JSON model that the dashboards use.

Pure data in, plain dicts out, so dashboards are testable without Grafana or Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Grafana 11/12 dashboard model; panels use the Prometheus datasource by uid.
SCHEMA_VERSION = 39
DATASOURCE_UID = "thanos"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
GRID_WIDTH = 24

PanelType = Literal["timeseries", "stat"]


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: PanelType = "timeseries"
    width: int = 12
    height: int = 8


@dataclass(frozen=True)
class Variable:
    """A query variable over one label of one metric; multi-select with an `All` of `.+`."""

    name: str
    metric: str
    label: str


@dataclass(frozen=True)
class Annotation:
    name: str
    expr: str
    title_format: str


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = field(default=("image-service",))


def _layout(panels: tuple[Panel, ...]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at the grid width."""
    out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for index, panel in enumerate(panels, start=1):
        if panel.width < 1 or panel.width > GRID_WIDTH:
            raise ValueError(f"panel {panel.title!r}: width must be 1..{GRID_WIDTH}")
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        out.append(
            {
                "id": index,
                "type": panel.kind,
                "title": panel.title,
                "datasource": DATASOURCE,
                "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DATASOURCE,
                        "expr": target.expr,
                        "legendFormat": target.legend or "__auto",
                        "range": True,
                    }
                    for i, target in enumerate(panel.targets)
                ],
            }
        )
        x += panel.width
        row_height = max(row_height, panel.height)
    return out


def _variable(variable: Variable) -> dict[str, Any]:
    query = f"label_values({variable.metric}, {variable.label})"
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"var-{variable.name}"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def _annotation(annotation: Annotation) -> dict[str, Any]:
    return {
        "name": annotation.name,
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "rgba(255, 96, 96, 1)",
        "expr": annotation.expr,
        "titleFormat": annotation.title_format,
        "step": "60s",
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what the Grafana sidecar loads from a ConfigMap)."""
    if not dashboard.panels:
        raise ValueError(f"dashboard {dashboard.title!r} has no panels")
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "tags": list(dashboard.tags),
        "timezone": "utc",
        "editable": False,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [_variable(v) for v in dashboard.variables]},
        "annotations": {"list": [_annotation(a) for a in dashboard.annotations]},
        "panels": _layout(dashboard.panels),
    }
