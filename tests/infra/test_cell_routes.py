"""The thin router (ADR 137): each cell's stack routes `/v1/<tenant>/…` of its own tenants to its
own weighted tracks. Checked against the vendored HTTPRoute CRD: its schema (strict), its CEL
rules, and the limits the CRD states (matches per rule, rules per route, matches per route)."""

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from image_contracts.stacks import PROJECT
from image_contracts.tracks import TRACKS
from infra import tenant_routes
from infra.layers import Layer, StackId
from pulumi_harness import ENVIRONMENTS, Evaluation, manifest, stack_config, stack_file
from test_cells import _all_cells
from test_crd_cel import violations
from test_crd_schema import errors

CRD = Path(__file__).parent / "crd_schemas" / "gateway.networking.k8s.io_v1_HTTPRoute.json"
PARENT = {
    "group": "gateway.networking.k8s.io",
    "kind": "Gateway",
    "name": "public",
    "namespace": "envoy-gateway-system",
    "sectionName": "service",
}


def _rules_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(CRD.read_text())["schema"]
    rules: dict[str, Any] = schema["properties"]["spec"]["properties"]["rules"]
    return rules


def _routes(tenants: int) -> list[dict[str, Any]]:
    backends = [
        tenant_routes.Backend(f"svc-{t}", 8080, w)
        for t, w in zip(TRACKS, (80, 10, 10), strict=False)
    ]
    paths = [tenant_routes.tenant_path(f"tenant-{i}") for i in range(tenants)]
    return tenant_routes.routes("image-service", "ns", paths, backends, PARENT, "img.example.com")


def _cell_routes(estate: dict[str, Evaluation], env: str, cell: str) -> list[dict[str, Any]]:
    resources = estate[StackId(Layer.SERVICE, env, cell).name].resources
    objects = [manifest(r) for r in resources if r.is_kubernetes_object]
    return [o for o in objects if o["kind"] == "HTTPRoute"]


@pytest.mark.parametrize(("env", "cell"), _all_cells())
def test_a_cells_routes_hold_only_its_placement(
    estate: dict[str, Evaluation], repo_root: Path, env: str, cell: str
) -> None:
    stack = StackId(Layer.SERVICE, env, cell)
    config = stack_config(stack_file(repo_root / "environments", stack))
    placed = tomllib.loads(config[f"{PROJECT}:tenants"])["tenants"]
    services = {
        manifest(r)["metadata"]["name"]
        for r in estate[stack.name].resources
        if r.is_kubernetes_object and r.type.endswith(":Service")
    }
    paths: list[str] = []
    for route in _cell_routes(estate, env, cell):
        for rule in route["spec"]["rules"]:
            # Nothing but the placement table: path prefixes in, the cell's tracks out.
            assert set(rule) == {"matches", "backendRefs"}
            assert all(set(m) == {"path"} for m in rule["matches"])
            paths += [m["path"]["value"] for m in rule["matches"]]
            assert {b["name"] for b in rule["backendRefs"]} == services
            assert sum(b["weight"] for b in rule["backendRefs"]) == 100
    assert sorted(paths) == sorted(f"/v1/{tid}" for tid in placed)


@pytest.mark.parametrize("tenants", [1, 65, 128, 300])
def test_routes_of_any_cell_size_pass_the_crd(tenants: int) -> None:
    routes = _routes(tenants)
    rules = _rules_schema()
    for route in routes:
        assert errors(route) == []
        failed, evaluated = violations(route)
        assert failed == []
        assert evaluated > 0
        assert len(route["spec"]["rules"]) <= rules["maxItems"]
        assert all(
            len(r["matches"]) <= rules["items"]["properties"]["matches"]["maxItems"]
            for r in route["spec"]["rules"]
        )
    matched = [
        m["path"]["value"] for r in routes for rule in r["spec"]["rules"] for m in rule["matches"]
    ]
    assert sorted(matched) == sorted(f"/v1/tenant-{i}" for i in range(tenants))
    assert len({r["metadata"]["name"] for r in routes}) == len(routes)


def test_the_crd_refuses_a_route_over_its_match_budget() -> None:
    # The check above can fail: the CEL rule sums matches over the rules and refuses more than
    # 128 (its expression says `<= 128`, its message "less than 128"; 127 per route meets both).
    route = _routes(127)[0]
    assert len(_routes(128)) == 2
    for extra in ("/x", "/y"):
        route["spec"]["rules"][-1]["matches"].append(
            {"path": {"type": "PathPrefix", "value": extra}}
        )
    failed, _ = violations(route)
    assert failed


def test_an_empty_cell_routes_nothing(estate: dict[str, Evaluation]) -> None:
    # Paths are prefixes: a cell that routed "/" would take every unplaced tenant.
    for env in ENVIRONMENTS:
        for route in (
            manifest(r)
            for name, e in estate.items()
            if e.stack.cell and e.stack.environment == env
            for r in e.resources
            if r.is_kubernetes_object and r.type.endswith(":HTTPRoute")
        ):
            for rule in route["spec"]["rules"]:
                assert all(m["path"]["value"].startswith("/v1/") for m in rule["matches"])
    with pytest.raises(ValueError, match="at least one path"):
        _routes(0)
