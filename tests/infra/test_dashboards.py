"""Dashboards: valid JSON of Grafana's dashboard model, generated from code, shipped as
ConfigMaps the Grafana sidecar loads."""

import json
from typing import Any

import pytest
from infra.observability import dashboards, grafana_model
from infra.observability.stack import DASHBOARD_LABEL, dashboard_configmaps

PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "text", "row", "bargauge", "heatmap"}


def validate(model: dict[str, Any]) -> list[str]:  # noqa: C901  a checklist of Grafana rules
    """Structural rules of Grafana's dashboard model that a loader rejects or silently breaks on."""
    errors = []
    for key, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(model.get(key), kind):
            errors.append(f"{key} missing or not {kind.__name__}")
    if len(model.get("uid", "")) > 40:
        errors.append("uid longer than 40 characters")
    ids = [p.get("id") for p in model.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append("duplicate panel ids")
    occupied: set[tuple[int, int]] = set()
    for panel in model.get("panels", []):
        where = f"panel {panel.get('title')!r}"
        if panel.get("type") not in PANEL_TYPES:
            errors.append(f"{where}: unknown type {panel.get('type')}")
        pos = panel.get("gridPos", {})
        if not all(isinstance(pos.get(k), int) for k in "hwxy"):
            errors.append(f"{where}: gridPos needs integer h, w, x, y")
            continue
        if pos["x"] + pos["w"] > 24:
            errors.append(f"{where}: wider than the 24-column grid")
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        if cells & occupied:
            errors.append(f"{where}: overlaps another panel")
        occupied |= cells
        refs = [t.get("refId") for t in panel.get("targets", [])]
        if not refs or len(refs) != len(set(refs)):
            errors.append(f"{where}: targets need unique refIds")
        for target in panel.get("targets", []):
            if not target.get("expr"):
                errors.append(f"{where}: empty expression")
            if target.get("datasource", {}).get("uid") != grafana_model.DATASOURCE_UID:
                errors.append(f"{where}: not on the Thanos datasource")
    names = [v["name"] for v in model.get("templating", {}).get("list", [])]
    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            for name in ("tenant", "track", "version"):
                if f"${name}" in target.get("expr", "") and name not in names:
                    errors.append(
                        f"panel {panel['title']!r} uses ${name} but the variable is missing"
                    )
    return errors


@pytest.mark.parametrize("board", dashboards.all_dashboards(), ids=lambda b: b.uid)
def test_dashboard_is_a_valid_grafana_model(board: grafana_model.Dashboard) -> None:
    model = json.loads(json.dumps(grafana_model.render(board)))  # round-trips as JSON
    assert validate(model) == []


def test_the_four_dashboards_exist() -> None:
    titles = {b.title for b in dashboards.all_dashboards()}
    assert titles == {
        "Image service - golden signals per tenant",
        "Image service - canary vs baseline",
        "Image service - saturation",
        "Image service - deploy markers",
    }


def test_validator_catches_broken_models() -> None:
    model = grafana_model.render(dashboards.saturation())
    model["panels"][1]["gridPos"] = dict(model["panels"][0]["gridPos"])  # overlap
    model["panels"][2]["targets"][0]["datasource"] = {"uid": "other"}
    del model["schemaVersion"]
    errors = validate(model)
    assert any("overlaps" in e for e in errors)
    assert any("Thanos datasource" in e for e in errors)
    assert any("schemaVersion" in e for e in errors)
    model = grafana_model.render(dashboards.golden_signals())
    model["templating"]["list"] = []
    assert any("$tenant" in e for e in validate(model))


def test_panel_wider_than_grid_is_refused() -> None:
    board = grafana_model.Dashboard(
        "u", "t", (grafana_model.Panel("p", (grafana_model.Target("up"),), width=30),)
    )
    with pytest.raises(ValueError, match="width"):
        grafana_model.render(board)


def test_configmaps_carry_the_sidecar_label_and_the_json() -> None:
    maps = dashboard_configmaps()
    assert len(maps) == len(dashboards.all_dashboards())
    for cm in maps:
        assert cm["metadata"]["labels"] == {DASHBOARD_LABEL: "1"}
        (body,) = cm["data"].values()
        assert validate(json.loads(body)) == []


def test_deploy_markers_are_annotations() -> None:
    model = grafana_model.render(dashboards.deploys())
    assert model["annotations"]["list"][0]["expr"].startswith("count by (cell, track, version)")
