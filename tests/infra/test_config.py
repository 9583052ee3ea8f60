"""Stack config parsing: a pure function from raw strings to frozen dataclasses, with clear
errors that name the key."""

import dataclasses
from pathlib import Path

import pytest
from infra.config import KEYS, ConfigError, parse
from infra.mock_harness import ENVIRONMENTS, stack_config

TENANTS = f"""
[tenants.shop-1]
api_key_sha256 = ["{"a" * 64}"]
signing_secrets = ["file:/etc/image-service/signing/shop-1-a"]
[tenants.blog]
api_key_sha256 = ["{"b" * 64}"]
allow_unsigned_reads = true
"""


def raw(**overrides: str) -> dict[str, str]:
    base = {
        "stableVersion": "4f2c1a9",
        "kubernetesVersion": "1.33",
        "serviceHost": "images.example.com",
        "grafanaHost": "grafana.example.com",
        "tenants": TENANTS,
        "githubRepository": "example-org/image-delivery",
        "acmeEmail": "ops@example.com",
    }
    return {f"image-platform:{k}": v for k, v in (base | overrides).items()}


def test_minimal_config_gets_safe_defaults() -> None:
    cfg = parse(raw(), environment="dev", region="us-east-1")
    assert cfg.name == "image-platform-dev"
    assert cfg.cluster.public_endpoint is False
    assert cfg.network.availability_zones == 3
    assert cfg.service.weights == (100, 0, 0)
    assert cfg.observability.prometheus_retention_hours >= 6
    assert cfg.observability.thanos_retention_days > 10


def test_config_is_frozen() -> None:
    cfg = parse(raw(), environment="dev", region="us-east-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.service.canary_weight = 50  # type: ignore[misc]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_stack_file_parses(repo_root: Path, env: str) -> None:
    config = stack_config(repo_root / "environments" / f"Pulumi.{env}.yaml")
    cfg = parse(config, environment=env, region=config["aws:region"])
    assert cfg.environment == env


def test_prod_endpoint_is_private_and_staging_is_limited(repo_root: Path) -> None:
    prod = stack_config(repo_root / "environments" / "Pulumi.prod.yaml")
    staging = stack_config(repo_root / "environments" / "Pulumi.staging.yaml")
    assert parse(prod, environment="prod", region="us-east-1").cluster.public_endpoint is False
    limited = parse(staging, environment="staging", region="us-east-1").cluster
    assert limited.public_endpoint
    assert limited.public_cidrs
    assert all(not c.endswith("/0") for c in limited.public_cidrs)


@pytest.mark.parametrize(
    ("weight", "version", "expected"),
    [("10", "abc1234", (80, 10, 10)), ("50", "abc1234", (0, 50, 50)), ("25", "", (100, 0, 0))],
)
def test_weights_mirror_the_canary_on_the_baseline(
    weight: str, version: str, expected: tuple[int, int, int]
) -> None:
    cfg = parse(
        raw(canaryWeight=weight, canaryVersion=version), environment="dev", region="us-east-1"
    )
    assert cfg.service.weights == expected
    assert sum(cfg.service.weights) == 100


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"canaryWeight": "51"}, "canaryWeight"),
        ({"canaryWeight": "ten"}, "canaryWeight must be an integer"),
        ({"stableVersion": "latest"}, "moving name"),
        ({"canaryVersion": "main"}, "moving name"),
        ({"kubernetesVersion": "1.24"}, "standard support"),
        ({"endpointPublicAccess": "true"}, "endpointPublicCidrs is required"),
        (
            {"endpointPublicAccess": "true", "endpointPublicCidrs": '["0.0.0.0/0"]'},
            "whole internet",
        ),
        ({"endpointPublicAccess": "yes"}, "true or false"),
        ({"endpointPublicCidrs": '["10.0.0.1/8"]', "endpointPublicAccess": "true"}, "not a CIDR"),
        ({"availabilityZones": "1"}, "availabilityZones"),
        ({"natStrategy": "none"}, "natStrategy"),
        ({"prometheusRetentionHours": "2"}, "prometheusRetentionHours"),
        ({"thanosRetentionDays": "10"}, "thanosRetentionDays"),
        ({"nodeMinSize": "5", "nodeMaxSize": "3"}, "nodeMinSize"),
        ({"serviceHost": "Images_Example"}, "serviceHost"),
        ({"githubRepository": "no-slash"}, "owner/name"),
        ({"acmeEmail": "nobody"}, "e-mail"),
        ({"nodeInstanceTypes": "m6i.large"}, "list of strings"),
    ],
)
def test_bad_input_gets_a_clear_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw(**overrides), environment="dev", region="us-east-1")


def test_environment_specific_guards() -> None:
    with pytest.raises(ConfigError, match="only dev"):
        parse(raw(availabilityZones="2"), environment="staging", region="us-east-1")
    assert parse(raw(availabilityZones="2"), environment="dev", region="us-east-1")
    public = raw(endpointPublicAccess="true", endpointPublicCidrs='["198.51.100.0/24"]')
    with pytest.raises(ConfigError, match="false in prod"):
        parse(public, environment="prod", region="us-east-1")
    assert parse(public, environment="staging", region="us-east-1").cluster.public_endpoint


def test_missing_required_key_is_named() -> None:
    config = raw()
    del config["image-platform:serviceHost"]
    with pytest.raises(ConfigError, match="serviceHost is required"):
        parse(config, environment="dev", region="us-east-1")


def test_bad_stack_name_and_region_are_refused() -> None:
    with pytest.raises(ConfigError, match="stack name"):
        parse(raw(), environment="Prod!", region="us-east-1")
    with pytest.raises(ConfigError, match="region"):
        parse(raw(), environment="dev", region="mars-1")


def test_tenants_give_ids_and_generated_secret_names() -> None:
    cfg = parse(raw(), environment="dev", region="us-east-1")
    assert cfg.service.tenant_ids == ("shop-1", "blog")
    assert cfg.service.signing_secret_names == ("shop-1-a",)


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ("not = [toml", "not valid TOML"),
        ("title = 'no tenants'", "at least one"),
        ('[tenants.Bad_Id]\napi_key_sha256 = ["x"]', "tenant id"),
        (
            f'[tenants.a]\napi_key_sha256 = ["{"a" * 64}"]\nsigning_secrets = ["env:SECRET"]',
            "must be file:/etc/image-service/signing",
        ),
        (
            f'[tenants.a]\napi_key_sha256 = ["{"a" * 64}"]\nsigning_secrets = ["file:/tmp/s"]',
            "must be file:",
        ),
        ('[tenants.a]\nsigning_secrets = ["file:/tmp/s"]', "api_key_sha256 must be a non-empty"),
    ],
)
def test_bad_tenants_are_refused(tenants: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw(tenants=tenants), environment="dev", region="us-east-1")


def test_delivery_keys_are_declared() -> None:
    assert KEYS[:3] == ("stableVersion", "canaryVersion", "canaryWeight")
