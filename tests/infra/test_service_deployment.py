"""The service deployment component is generic: any HTTP service gets the same three tracks,
guard rails and weighted route. Pure manifests, no Pulumi engine needed."""

from typing import Any

import pytest
from infra.service_deployment import GatewayRef, ServiceSpec, manifests


def spec(**overrides: object) -> ServiceSpec:
    base: dict[str, object] = {
        "name": "thumbs",
        "namespace": "thumbs",
        "image_repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/thumbs",
        "stable_version": "1111111",
        "canary_version": "2222222",
        "weights": (90, 5, 5),
        "stable_replicas": 2,
        "stable_max_replicas": 4,
        "canary_replicas": 1,
        "hostname": "thumbs.example.com",
        "gateway": GatewayRef("public", "gw", "https-thumbs"),
        "prometheus_namespace": "monitoring",
    }
    return ServiceSpec(**(base | overrides))  # type: ignore[arg-type]


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_a_second_service_gets_three_tracks_and_a_weighted_route() -> None:
    objs = manifests(spec())
    deployments = by_kind(objs, "Deployment")
    assert set(deployments) == {"thumbs-stable", "thumbs-baseline", "thumbs-canary"}
    assert deployments["thumbs-canary"]["spec"]["replicas"] == 1
    assert deployments["thumbs-baseline"]["metadata"]["labels"]["version"] == "1111111"
    env = {
        e["name"]: e["value"]
        for e in deployments["thumbs-canary"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env == {"SERVICE_TRACK": "canary", "SERVICE_VERSION": "2222222"}
    route = by_kind(objs, "HTTPRoute")["thumbs"]
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [90, 5, 5]
    assert route["spec"]["parentRefs"][0]["sectionName"] == "https-thumbs"
    assert {
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
    } <= {o["kind"] for o in objs}


def test_no_role_and_no_files_means_no_annotation_and_no_secret() -> None:
    objs = manifests(spec())
    sa = by_kind(objs, "ServiceAccount")["thumbs"]
    assert "annotations" not in sa["metadata"]
    assert by_kind(objs, "Secret") == {}


def test_digest_versions_are_refused() -> None:
    # A digest cannot be a Kubernetes label value (":" and 71 characters), and the service
    # refuses it at start, so the spec refuses it before any manifest exists.
    digest = "sha256:" + "a" * 64
    with pytest.raises(ValueError, match="digests are not versions"):
        spec(stable_version=digest, canary_version="", weights=(100, 0, 0))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weights": (90, 10, 10)}, "sum to 100"),
        ({"weights": (110, -5, -5)}, "sum to 100"),
        ({"pre_stop_sleep_seconds": 30}, "preStop"),
    ],
)
def test_bad_specs_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**overrides)
