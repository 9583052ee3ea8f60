"""Each cell is a service stack (ADR 136): under mocks, every cell declared in
`environments/cells.<env>.yaml` evaluates from its own stack file, registers only service-layer
resources, only its own, and a canary step in one cell changes that cell's stack only."""

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from image_contracts.stacks import PROJECT
from infra.layers import Layer, StackId
from pulumi_harness import (
    ENVIRONMENTS,
    PUSHED_VERSION,
    Evaluation,
    Recorded,
    evaluate,
    manifest,
    stack_config,
    stack_file,
)


def _cells_file(repo_root: Path, env: str) -> dict[str, Any]:
    path = repo_root / "environments" / f"cells.{env}.yaml"
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def _cells(repo_root: Path, env: str) -> list[str]:
    return [c["name"] for c in _cells_file(repo_root, env)["cells"]]


def _cell_stack(env: str, cell: str) -> StackId:
    return StackId(Layer.SERVICE, env, cell)


def _placed(repo_root: Path, env: str, cell: str) -> set[str]:
    """The tenants whose `cell` is this cell, read from the stack's tenants file."""
    config = stack_config(stack_file(repo_root / "environments", _cell_stack(env, cell)))
    tenants = tomllib.loads(config[f"{PROJECT}:tenants"])["tenants"]
    return {tid for tid, table in tenants.items() if table.get("cell") == cell}


def _mentions(resource: Recorded, word: str) -> bool:
    text = json.dumps(resource.inputs, sort_keys=True) + resource.name
    return re.search(rf"(?<![a-z0-9-]){re.escape(word)}(?![a-z0-9])", text) is not None


def _all_cells() -> list[tuple[str, str]]:
    root = Path(__file__).resolve().parents[2]
    return [(env, cell) for env in ENVIRONMENTS for cell in _cells(root, env)]


@pytest.mark.parametrize(("env", "cell"), _all_cells())
def test_every_cell_is_a_service_stack_of_its_own(
    estate: dict[str, Evaluation], repo_root: Path, env: str, cell: str
) -> None:
    evaluation = estate[_cell_stack(env, cell).name]
    service = estate[StackId(Layer.SERVICE, env).name]
    # Only service-layer resources: no type another layer owns (cluster, buckets, charts, CI).
    assert {r.type for r in evaluation.resources} <= {r.type for r in service.resources}
    assert evaluation.exports["cell"] == cell
    # Only this cell's: every Kubernetes object sits in the cell's namespace, and no other
    # cell of the fleet is named anywhere in the stack's inputs.
    namespace = evaluation.exports["namespace"]
    assert cell in namespace
    for resource in evaluation.resources:
        if resource.is_kubernetes_object:
            body = manifest(resource)
            assert namespace in (body["metadata"].get("namespace"), body["metadata"]["name"])
        for other in set(_all_cells()) - {(env, cell)}:
            assert not _mentions(resource, other[1]), (resource.type, resource.name, other)
    tenants = _placed(repo_root, env, cell)
    assert tenants
    assert set(evaluation.exports["tenants"]) == tenants


@pytest.mark.parametrize(("env", "cell"), _all_cells())
def test_cell_objects_carry_the_cell_and_its_storage_scope(
    estate: dict[str, Evaluation], repo_root: Path, env: str, cell: str
) -> None:
    evaluation = estate[_cell_stack(env, cell).name]
    objects = [manifest(r) for r in evaluation.resources if r.is_kubernetes_object]
    tracked = [o for o in objects if o["kind"] in ("Deployment", "Service")]
    assert len(tracked) == 6  # stable, baseline and canary: a Deployment and a Service each
    for obj in tracked:
        assert obj["metadata"]["labels"]["cell"] == cell
        assert cell in obj["metadata"]["name"]
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        assert deployment["spec"]["template"]["metadata"]["labels"]["cell"] == cell
    # Prometheus exposes a pod label `cell` as __meta_kubernetes_pod_label_cell; the monitor
    # copies it onto every series (ADR 138).
    (monitor,) = (o for o in objects if o["kind"] == "ServiceMonitor")
    relabelings = monitor["spec"]["endpoints"][0]["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_cell"],
        "targetLabel": "cell",
        "action": "replace",
    } in relabelings
    # ADR 131: the role reaches only the cell's prefix, as cells.<env>.yaml spells it.
    prefix = _cells_file(repo_root, env)["storage"]["prefix"].format(cell=cell)
    policies = [r for r in evaluation.resources if r.type == "aws:iam/rolePolicy:RolePolicy"]
    assert len(policies) == 1
    statements = json.loads(policies[0].inputs["policy"])["Statement"]
    objects_stmt = next(s for s in statements if s["Sid"] == "Objects")
    assert [r.split(":::", 1)[1].split("/", 1)[1] for r in objects_stmt["Resource"]] == [
        f"{prefix}*"
    ]
    listing = next(s for s in statements if s["Sid"] == "ListOwnPrefixes")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"{prefix}*"]
    env_vars = {
        e["name"]: e.get("value")
        for o in objects
        if o["kind"] == "Deployment"
        for e in o["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env_vars["IMAGE_SERVICE_STORAGE"].endswith("/" + prefix.rstrip("/"))


def _by_resource(evaluation: Evaluation) -> dict[str, str]:
    return {
        f"{r.type}::{r.name}": json.dumps(r.inputs, sort_keys=True) for r in evaluation.resources
    }


def test_a_canary_step_in_one_cell_changes_only_that_cells_stack(
    estate: dict[str, Evaluation], repo_root: Path
) -> None:
    env = "dev"
    stepped, *others = _cells(repo_root, env)
    refs = {
        name: e.exports
        for name, e in estate.items()
        if e.stack.layer is not Layer.SERVICE and e.stack.environment in ("", env)
    }
    changed: dict[str, set[str]] = {}
    for cell in [stepped, *others]:
        stack = _cell_stack(env, cell)
        config = stack_config(stack_file(repo_root / "environments", stack))
        config[f"{PROJECT}:stableVersion"] = PUSHED_VERSION
        if cell == stepped:
            config[f"{PROJECT}:canaryVersion"] = "9a8b7c6d5e4f"
            config[f"{PROJECT}:canaryWeight"] = "10"
        before, after = (
            _by_resource(estate[stack.name]),
            _by_resource(evaluate(stack.name, config, references=refs)),
        )
        assert before.keys() == after.keys()
        changed[cell] = {key for key in before if before[key] != after[key]}
    assert all(changed[cell] == set() for cell in others)
    # In the stepped cell: the canary and baseline tracks and the route's weights, nothing else.
    kinds = {key.split("::")[0] for key in changed[stepped]}
    assert kinds == {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
    }
    assert all("stable" not in key for key in changed[stepped] if "Deployment" in key)
