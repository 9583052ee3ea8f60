"""Custom resources (Gateway API, Envoy Gateway, prometheus-operator, cert-manager) validated
against their CRDs' schemas at the pinned chart versions, strictly: unknown fields are errors,
as they are for built-in kinds in test_k8s_schema.py."""

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pulumi_harness import ENVIRONMENTS, Recorded, manifest

SCHEMAS = Path(__file__).parent / "crd_schemas"


def strict(schema: Any) -> Any:
    """Close every object that lists its properties, unless it opts into unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in SCHEMAS.glob("*.json"):
        body = json.loads(path.read_text())
        schema = strict(body["schema"])
        # apiVersion, kind and metadata are the API server's; the CRD schema covers the rest.
        schema.setdefault("properties", {}).update(
            {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
            }
        )
        out[(body["apiVersion"], body["kind"])] = schema
    return out


SCHEMA_BY_KIND = load_schemas()


def errors(obj: dict[str, Any]) -> list[str]:
    schema = SCHEMA_BY_KIND[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


def custom_resources(resources: list[Recorded]) -> list[dict[str, Any]]:
    objects = [manifest(r) for r in resources if r.is_kubernetes_object]
    return [o for o in objects if (o["apiVersion"], o["kind"]) in SCHEMA_BY_KIND]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_custom_resources_match_their_crds(recorded: dict[str, list[Recorded]], env: str) -> None:
    objects = custom_resources(recorded[env])
    kinds = {o["kind"] for o in objects}
    assert kinds == {
        "Gateway", "GatewayClass", "HTTPRoute", "EnvoyProxy", "ClientTrafficPolicy",
        "ServiceMonitor", "PrometheusRule", "ClusterIssuer",
    }  # fmt: skip
    failures = {f"{o['kind']}/{o['metadata']['name']}": errors(o) for o in objects}
    assert {k: v for k, v in failures.items() if v} == {}


def _route(recorded: dict[str, list[Recorded]]) -> dict[str, Any]:
    return copy.deepcopy(
        next(
            o
            for o in custom_resources(recorded["prod"])
            if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "image-service"
        )
    )


def test_unknown_field_is_an_error(recorded: dict[str, list[Recorded]]) -> None:
    route = _route(recorded)
    route["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 5
    assert any("wieght" in e for e in errors(route))


def test_out_of_range_weight_is_an_error(recorded: dict[str, list[Recorded]]) -> None:
    route = _route(recorded)
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1_000_001  # the CRD caps at 1e6
    assert errors(route) != []


def test_servicemonitor_typo_is_an_error(recorded: dict[str, list[Recorded]]) -> None:
    monitor = copy.deepcopy(
        next(o for o in custom_resources(recorded["prod"]) if o["kind"] == "ServiceMonitor")
    )
    monitor["spec"]["endpoints"][0]["honourLabels"] = True
    assert errors(monitor) != []
