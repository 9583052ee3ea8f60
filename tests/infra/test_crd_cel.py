"""The CEL rules (`x-kubernetes-validations`) of the vendored CRDs, evaluated with cel-python on
every custom resource the program creates. The API server enforces these rules; JSON Schema
validation (test_crd_schema.py) does not see them."""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
from celpy import celtypes
from celpy.adapter import json_to_cel
from pulumi_harness import ENVIRONMENTS, Recorded, manifest

SCHEMAS = Path(__file__).parent / "crd_schemas"
ENV = celpy.Environment()


def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in SCHEMAS.glob("*.json"):
        body = json.loads(path.read_text())
        out[(body["apiVersion"], body["kind"])] = body["schema"]
    return out


SCHEMA_BY_KIND = _schemas()


def _nodes(
    schema: dict[str, Any], value: Any, path: str
) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every (path, schema node, value) pair where the object has a value."""
    yield path, schema, value
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                yield from _nodes(schema["properties"][key], child, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from _nodes(schema["additionalProperties"], child, f"{path}[{key}]")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield from _nodes(schema["items"], child, f"{path}[{index}]")


def defaulted(schema: dict[str, Any], value: Any) -> Any:
    """The object as the API server validates it: structural-schema defaults applied first."""
    if isinstance(value, dict):
        out = dict(value)
        for key, child in schema.get("properties", {}).items():
            if key not in out and "default" in child:
                out[key] = copy.deepcopy(child["default"])
            if key in out:
                out[key] = defaulted(child, out[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in set(out) - set(schema.get("properties", {})):
                out[key] = defaulted(extra, out[key])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [defaulted(schema["items"], child) for child in value]
    return value


def violations(obj: dict[str, Any]) -> tuple[list[str], int]:
    """(failed rules, rules evaluated). Transition rules (oldSelf) need an update: skipped."""
    schema = SCHEMA_BY_KIND[(obj["apiVersion"], obj["kind"])]
    failed, evaluated = [], 0
    for path, node, value in _nodes(schema, defaulted(schema, obj), obj["kind"]):
        for validation in node.get("x-kubernetes-validations", []):
            rule = validation["rule"]
            if "oldSelf" in rule:
                continue
            program = ENV.program(ENV.compile(rule))
            result = program.evaluate({"self": json_to_cel(value)})
            evaluated += 1
            if not (isinstance(result, celtypes.BoolType) and bool(result)):
                failed.append(f"{path}: {validation.get('message', rule)}")
    return failed, evaluated


def _custom(resources: list[Recorded]) -> list[dict[str, Any]]:
    objects = [manifest(r) for r in resources if r.is_kubernetes_object]
    return [o for o in objects if (o["apiVersion"], o["kind"]) in SCHEMA_BY_KIND]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_custom_resources_pass_their_crds_cel_rules(
    recorded: dict[str, list[Recorded]], env: str
) -> None:
    total = 0
    for obj in _custom(recorded[env]):
        failed, evaluated = violations(obj)
        assert failed == [], (obj["kind"], obj["metadata"]["name"])
        total += evaluated
    assert total >= 20, "the Gateway API CRDs carry dozens of rules; few ran"


def test_a_rule_breaking_route_is_caught(recorded: dict[str, list[Recorded]]) -> None:
    route = next(
        o for o in _custom(recorded["prod"]) if o["kind"] == "HTTPRoute" and o["spec"].get("rules")
    )
    broken = copy.deepcopy(route)
    # Gateway API: a path match's value must start with '/'.
    broken["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "images"}}]
    failed, _ = violations(broken)
    assert failed, "a CEL rule of HTTPRoute should refuse a relative path"
