"""The whole program evaluates for every environment, and config flows into the right places."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from image_contracts.stacks import PROJECT
from infra.config import LAYER_KEYS
from infra.layers import parse_stack
from pulumi_harness import (
    ENVIRONMENTS,
    PUSHED_VERSION,
    Evaluation,
    Recorded,
    evaluate,
    manifest,
    stack_config,
    stack_ids,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
Records = dict[str, list[Recorded]]


def _of(resources: list[Recorded], type_: str) -> list[Recorded]:
    return [r for r in resources if r.type == type_]


def test_every_environment_evaluates(recorded: dict[str, list[Recorded]]) -> None:
    for env in ENVIRONMENTS:
        types = {r.type for r in recorded[env]}
        assert {"aws:eks/cluster:Cluster", "awsx:ec2:Vpc", "aws:s3/bucket:Bucket"} <= types, env
        assert len(recorded[env]) > 90, env


def test_environments_differ_in_config_not_shape(estate: dict[str, Evaluation]) -> None:
    shapes = {
        env: sorted(
            (r.type, r.name.replace(env, "ENV"))
            for stack in stack_ids(env)
            for r in estate[stack.name].resources
        )
        for env in ENVIRONMENTS
    }
    assert shapes["dev"] == shapes["staging"] == shapes["prod"]


def test_nat_and_zones_follow_config(recorded: dict[str, list[Recorded]]) -> None:
    vpcs = {env: _of(recorded[env], "awsx:ec2:Vpc")[0].inputs for env in ENVIRONMENTS}
    assert vpcs["dev"]["natGateways"]["strategy"] == "Single"
    assert vpcs["dev"]["numberOfAvailabilityZones"] == 2
    assert vpcs["prod"]["natGateways"]["strategy"] == "OnePerAz"
    assert vpcs["prod"]["numberOfAvailabilityZones"] == 3


def test_pulumi_yaml_requires_no_config(repo_root: Path) -> None:
    # A project-level key declared without a default is demanded from every stack of the
    # project, and the four layers' stacks read disjoint keys: so none is declared.
    project = yaml.safe_load((repo_root / "Pulumi.yaml").read_text())
    required = [k for k, v in (project.get("config") or {}).items() if "default" not in v]
    assert required == []
    assert project["name"] == PROJECT
    assert project["stackConfigDir"] == "environments"


LAYER_NAMES = ("environment", "platform", "service")


def _stack_files(repo_root: Path) -> list[Path]:
    return sorted((repo_root / "environments").glob("Pulumi.*.yaml"))


def _declared_cells(repo_root: Path, env: str) -> list[str]:
    cells = yaml.safe_load((repo_root / "environments" / f"cells.{env}.yaml").read_text())
    return [c["name"] for c in cells["cells"]]


def test_stack_files_hold_only_their_layers_config(repo_root: Path) -> None:
    files = _stack_files(repo_root)
    # The account, three layers per environment, and one service stack per declared cell.
    expected = {"Pulumi.account.yaml"} | {
        f"Pulumi.{env}-{layer}.yaml" for env in ENVIRONMENTS for layer in LAYER_NAMES
    }
    expected |= {
        f"Pulumi.{env}-service-{cell}.yaml"
        for env in ENVIRONMENTS
        for cell in _declared_cells(repo_root, env)
    }
    assert {f.name for f in files} == expected
    for path in files:
        stack = parse_stack(path.name.removeprefix("Pulumi.").removesuffix(".yaml"))
        document = yaml.safe_load(path.read_text())
        # What `pulumi stack init --secrets-provider awskms://...` writes, besides config.
        allowed_top = {"config", "secretsprovider", "encryptedkey", "encryptionsalt"}
        assert set(document) <= allowed_top, path.name
        keys = set(stack_config(path))
        allowed = {f"{PROJECT}:{k}" for k in LAYER_KEYS[stack.layer]}
        assert keys - {"aws:region"} <= allowed, (path.name, keys - allowed)


def test_versions_are_not_pinned_in_git(repo_root: Path) -> None:
    # The delivery keys live in the service stack's state; a version in a committed file would
    # name an image that may never have been pushed (the old 000...0).
    for path in _stack_files(repo_root):
        keys = set(stack_config(path))
        assert not keys & {f"{PROJECT}:{k}" for k in ("stableVersion", "canaryVersion")}, path


def _route(resources: list[Recorded]) -> dict[str, Any]:
    routes = [
        manifest(r) for r in _of(resources, "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")
    ]
    return next(r for r in routes if r["metadata"]["name"] == "image-service")


def _deployments(resources: list[Recorded]) -> dict[str, dict[str, Any]]:
    return {
        manifest(r)["metadata"]["name"]: manifest(r)
        for r in _of(resources, "kubernetes:apps/v1:Deployment")
    }


def test_no_canary_means_all_traffic_to_stable_and_zero_pods(
    recorded: dict[str, list[Recorded]],
) -> None:
    route = _route(recorded["prod"])
    weights = [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [100, 0, 0]
    deployments = _deployments(recorded["prod"])
    assert deployments["image-service-baseline"]["spec"]["replicas"] == 0
    assert deployments["image-service-canary"]["spec"]["replicas"] == 0
    assert "replicas" not in deployments["image-service-stable"]["spec"]  # the HPA owns it


def _service(estate: dict[str, Evaluation], env: str, **overrides: str) -> list[Recorded]:
    config = stack_config(repo_root_path() / "environments" / f"Pulumi.{env}-service.yaml")
    config |= {f"{PROJECT}:stableVersion": PUSHED_VERSION}
    config |= {f"{PROJECT}:{k}": v for k, v in overrides.items()}
    refs = {name: e.exports for name, e in estate.items()}
    return evaluate(f"{env}-service", config, references=refs).resources


def repo_root_path() -> Path:
    return Path(__file__).resolve().parents[2]


def test_canary_step_changes_weights_and_scales_tracks(estate: dict[str, Evaluation]) -> None:
    resources = _service(estate, "staging", canaryVersion="abc1234", canaryWeight="10")
    route = _route(resources)
    backends = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert backends == {
        "image-service-stable": 80,
        "image-service-baseline": 10,
        "image-service-canary": 10,
    }
    deployments = _deployments(resources)
    canary = deployments["image-service-canary"]
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["metadata"]["labels"]["version"] == "abc1234"
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":abc1234")
    baseline = deployments["image-service-baseline"]
    assert baseline["spec"]["template"]["metadata"]["labels"]["version"] == PUSHED_VERSION


def test_service_env_contract(recorded: dict[str, list[Recorded]]) -> None:
    stable = _deployments(recorded["dev"])["image-service-stable"]
    container = stable["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["IMAGE_SERVICE_TRACK"] == "stable"
    assert env["IMAGE_SERVICE_ENVIRONMENT"] == "dev"
    assert env["IMAGE_SERVICE_STORAGE"].startswith("s3://image-platform-dev-images")
    assert env["IMAGE_SERVICE_STORAGE"].endswith("/images")
    assert env["IMAGE_SERVICE_TENANTS_FILE"] == "/etc/image-service/tenants.toml"
    # The tenants file and the generated signing secret land where the tenants file says.
    spec = stable["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
    paths = {i["path"] for i in volume["secret"]["items"]}
    assert paths == {"tenants.toml", "signing/shop-1-a"}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
    assert mount["mountPath"] == "/etc/image-service"
    assert mount["readOnly"] is True
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_thanos_retention_equal_and_over_ten_days(recorded: dict[str, list[Recorded]]) -> None:
    for env in ENVIRONMENTS:
        release = next(
            r
            for r in _of(recorded[env], "kubernetes:helm.sh/v3:Release")
            if r.inputs["name"] == "thanos"
        )
        compactor = release.inputs["values"]["compactor"]
        retentions = {compactor[f"retentionResolution{k}"] for k in ("Raw", "5m", "1h")}
        assert len(retentions) == 1, env
        assert int(retentions.pop().removesuffix("d")) > 10, env
        assert compactor["cronJob"]["enabled"] is False  # a Deployment with --wait, a singleton
        assert "--downsampling.disable" not in json.dumps(release.inputs["values"])


def test_prometheus_sidecar_storage_labels_and_retention(
    recorded: dict[str, list[Recorded]],
) -> None:
    for env in ENVIRONMENTS:
        release = next(
            r
            for r in _of(recorded[env], "kubernetes:helm.sh/v3:Release")
            if r.inputs["name"] == "kube-prometheus-stack"
        )
        values = release.inputs["values"]
        spec = values["prometheus"]["prometheusSpec"]
        assert int(spec["retention"].removesuffix("h")) >= 6
        assert spec["externalLabels"] == {
            "cluster": f"image-platform-{env}",
            "environment": env,
            "shard": "0",
        }
        assert spec["thanos"]["objectStorageConfig"]["existingSecret"]["name"] == "thanos-objstore"
        assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"]
        annotations = values["prometheus"]["serviceAccount"]["annotations"]
        assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam")
        assert values["alertmanager"]["enabled"] is True


def test_every_chart_is_pinned(recorded: dict[str, list[Recorded]]) -> None:
    for release in _of(recorded["prod"], "kubernetes:helm.sh/v3:Release"):
        version = release.inputs["version"]
        assert version, release.name
        assert not any(c in version for c in "*^~x><"), release.name


def test_exports(estate: dict[str, Evaluation]) -> None:
    # What people and the pipeline read (README, deliver), per layer.
    wanted = {
        "account": {"backendUrl", "secretsProvider", "githubVariables", "imageRepositoryUrl"},
        "prod-environment": {"clusterName", "kubeconfig", "runnerInstanceId", "imagesBucket"},
        "prod-platform": {"grafanaUrl", "prometheusUrl", "serviceHost"},
        "prod-service": {"serviceUrl", "signingSecrets", "stableImage", "stableVersion"},
    }
    for stack, names in wanted.items():
        assert names <= set(estate[stack].exports), (stack, names - set(estate[stack].exports))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_k8s_object_uses_the_cluster_provider(
    recorded: dict[str, list[Recorded]], env: str
) -> None:
    for resource in recorded[env]:
        if resource.type.startswith("kubernetes:") and resource.custom:
            assert "pulumi:providers:kubernetes::" in resource.provider, resource.name
            assert "::default" not in resource.provider, resource.name


def test_only_gateway_proxies_and_prometheus_reach_the_service(
    recorded: dict[str, list[Recorded]],
) -> None:
    policies = {
        manifest(r)["metadata"]["name"]: manifest(r)
        for r in recorded["prod"]
        if r.is_kubernetes_object
        and r.inputs.get("kind") == "NetworkPolicy"
        and r.inputs["metadata"]["namespace"] == "image-service"
    }
    assert policies["default-deny-ingress"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    (rule,) = policies["image-service-ingress"]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    peers = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]: p["podSelector"][
            "matchLabels"
        ]
        for p in rule["from"]
    }
    assert peers == {
        "envoy-gateway-system": {
            "app.kubernetes.io/name": "envoy",
            "app.kubernetes.io/component": "proxy",
        },
        "monitoring": {"app.kubernetes.io/name": "prometheus"},
    }


def test_the_pulumi_entry_point_runs_the_program(
    repo_root: Path, estate: dict[str, Evaluation]
) -> None:
    import runpy

    config = stack_config(repo_root / "environments" / "Pulumi.dev-environment.yaml")
    entry = repo_root / "platform" / "__main__.py"

    def run_entry() -> None:
        runpy.run_path(str(entry))

    refs = {name: e.exports for name, e in estate.items()}
    resources = evaluate("dev-environment", config, entry=run_entry, references=refs).resources
    assert any(r.type == "aws:eks/cluster:Cluster" for r in resources)


def test_a_canary_starts_its_pods_before_it_gets_traffic(estate: dict[str, Evaluation]) -> None:
    # The first canary step is `up` at weight 0: pods start with no traffic, and Pulumi waits
    # for their rollout; the next `up` only moves weight.
    resources = _service(estate, "prod", canaryVersion="abc1234", canaryWeight="0")
    backends = [b["weight"] for b in _route(resources)["spec"]["rules"][0]["backendRefs"]]
    assert backends == [100, 0, 0]
    deployments = _deployments(resources)
    assert deployments["image-service-canary"]["spec"]["replicas"] == 2
    assert deployments["image-service-baseline"]["spec"]["replicas"] == 2
