"""Stack config parsing: pure functions from raw strings to frozen dataclasses, one per layer,
with clear errors that name the key."""

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from image_contracts.stacks import PROJECT
from infra import config
from infra.config import LAYER_KEYS, ConfigError
from infra.layers import Layer, StackId
from pulumi_harness import ENVIRONMENTS, stack_config, stack_ids

TENANTS = f"""
[tenants.shop-1]
api_key_sha256 = ["{"a" * 64}"]
signing_secrets = ["file:/etc/image-service/signing/shop-1-a"]
[tenants.blog]
api_key_sha256 = ["{"b" * 64}"]
allow_unsigned_reads = true
"""
BASE = {
    "stableVersion": "4f2c1a9",
    "kubernetesVersion": "1.33",
    "serviceHost": "images.example.com",
    "grafanaHost": "grafana.example.com",
    "tenants": TENANTS,
    "imageTenants": '["shop-1", "blog"]',
    "githubRepository": "example-org/image-delivery",
    "acmeEmail": "ops@example.com",
    "alertEmail": "oncall@example.com",
    "stateBucket": "image-platform-state-test",
}


def raw(**overrides: str) -> dict[str, str]:
    return {f"{PROJECT}:{k}": v for k, v in (BASE | overrides).items()}


def parse(layer: Layer, values: dict[str, str], environment: str = "dev") -> Any:
    mine = {k: v for k, v in values.items() if k.split(":", 1)[1] in LAYER_KEYS[layer]}
    if layer is Layer.ACCOUNT:
        return config.parse_account(mine, region="us-east-1")
    parser = {
        Layer.ENVIRONMENT: config.parse_environment,
        Layer.PLATFORM: config.parse_platform,
        Layer.SERVICE: config.parse_service,
    }[layer]
    return parser(mine, environment=environment, region="us-east-1")


def parse_all(values: dict[str, str], environment: str = "dev") -> list[Any]:
    return [parse(layer, values, environment) for layer in Layer]


def test_minimal_config_gets_safe_defaults() -> None:
    account, env, platform, service = parse_all(raw())
    assert env.name == "image-platform-dev"
    assert env.network.availability_zones == 3
    assert service.service.weights == (100, 0, 0)
    assert platform.observability.prometheus_retention_hours >= 6
    assert platform.observability.thanos_retention_days > 10
    assert account.image_repository == "image-service"
    assert account.deliver_session_seconds == config.MAX_ROLE_SESSION_SECONDS


def test_config_is_frozen() -> None:
    service = parse(Layer.SERVICE, raw())
    with pytest.raises(dataclasses.FrozenInstanceError):
        service.service.canary_weight = 50


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_stack_file_parses(repo_root: Path, env: str) -> None:
    for stack in stack_ids(env):
        values = stack_config(repo_root / "environments" / f"Pulumi.{stack.name}.yaml")
        if stack.layer is Layer.SERVICE:
            values[f"{PROJECT}:stableVersion"] = "4f2c1a9"
        assert parse(stack.layer, values, env).environment == env
    account = StackId(Layer.ACCOUNT).name
    assert parse(Layer.ACCOUNT, stack_config(repo_root / "environments" / f"Pulumi.{account}.yaml"))


@pytest.mark.parametrize(
    ("weight", "version", "expected"),
    [("10", "abc1234", (80, 10, 10)), ("50", "abc1234", (0, 50, 50)), ("25", "", (100, 0, 0))],
)
def test_weights_mirror_the_canary_on_the_baseline(
    weight: str, version: str, expected: tuple[int, int, int]
) -> None:
    service = parse(Layer.SERVICE, raw(canaryWeight=weight, canaryVersion=version)).service
    assert service.weights == expected
    assert sum(service.weights) == 100


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"canaryWeight": "51"}, "canaryWeight"),
        ({"canaryWeight": "ten"}, "canaryWeight must be an integer"),
        ({"stableVersion": "latest"}, "moving name"),
        ({"canaryVersion": "main"}, "moving name"),
        # A digest is no label value, and the service refuses it as IMAGE_SERVICE_VERSION.
        ({"stableVersion": "sha256:" + "a" * 64}, "digests are not versions"),
        ({"stableVersion": "a" * 64}, "1-63 characters"),
        ({"kubernetesVersion": "1.24"}, "standard support"),
        ({"clusterAdminRoleArns": '["arn:aws:iam::1:user/me"]'}, "not an IAM role ARN"),
        ({"availabilityZones": "1"}, "availabilityZones"),
        ({"natStrategy": "none"}, "natStrategy"),
        ({"prometheusRetentionHours": "2"}, "prometheusRetentionHours"),
        ({"thanosRetentionDays": "10"}, "thanosRetentionDays"),
        ({"nodeMinSize": "5", "nodeMaxSize": "3"}, "nodeMinSize"),
        ({"serviceHost": "Images_Example"}, "serviceHost"),
        ({"githubRepository": "no-slash"}, "owner/name"),
        ({"acmeEmail": "nobody"}, "e-mail"),
        ({"alertEmail": "nobody@"}, "e-mail"),
        ({"nodeInstanceTypes": "m6i.large"}, "list of strings"),
        ({"stateBucket": "Not_A_Bucket"}, "bucket name"),
        ({"imageRepository": "Image Service"}, "ECR repository"),
        ({"deliverSessionSeconds": "50000"}, "deliverSessionSeconds"),
        ({"imageTenants": '["Bad_Id"]'}, "imageTenants"),
    ],
)
def test_bad_input_gets_a_clear_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_all(raw(**overrides))


def test_a_version_is_a_valid_label_value() -> None:
    longest = "a" * 63
    assert parse(Layer.SERVICE, raw(stableVersion=longest)).service.stable_version == longest


def test_environment_specific_guards() -> None:
    with pytest.raises(ConfigError, match="only dev"):
        parse(Layer.ENVIRONMENT, raw(availabilityZones="2"), "staging")
    assert parse(Layer.ENVIRONMENT, raw(availabilityZones="2"), "dev")


def test_missing_required_key_is_named() -> None:
    values = raw()
    del values[f"{PROJECT}:serviceHost"]
    with pytest.raises(ConfigError, match="serviceHost is required"):
        parse(Layer.PLATFORM, values)


def test_a_layer_reads_only_its_keys() -> None:
    reader = config._Reader(raw(), Layer.SERVICE)
    with pytest.raises(KeyError, match="vpcCidr"):
        reader.string("vpcCidr")


def test_bad_environment_and_region_are_refused() -> None:
    with pytest.raises(ConfigError, match="environment"):
        parse(Layer.ENVIRONMENT, raw(), "Prod!")
    with pytest.raises(ConfigError, match="region"):
        config.parse_account(raw(), region="mars-1")


def test_tenants_give_ids_and_generated_secret_names() -> None:
    service = parse(Layer.SERVICE, raw()).service
    assert service.tenant_ids == ("shop-1", "blog")
    assert service.signing_secret_names == ("shop-1-a",)


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
        parse(Layer.SERVICE, raw(tenants=tenants))


def test_delivery_keys_belong_to_the_service_layer() -> None:
    assert LAYER_KEYS[Layer.SERVICE][:3] == ("stableVersion", "canaryVersion", "canaryWeight")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_tenants_match_the_service_tenants_file(repo_root: Path, env: str) -> None:
    # The environment layer expires each tenant's renditions; the service layer's tenants file
    # is the list of tenants. They must name the same tenants.
    envs = repo_root / "environments"
    env_ids = parse(Layer.ENVIRONMENT, stack_config(envs / f"Pulumi.{env}-environment.yaml"), env)
    values = stack_config(envs / f"Pulumi.{env}-service.yaml") | {
        f"{PROJECT}:stableVersion": "4f2c1a9"
    }
    assert set(env_ids.tenant_ids) == set(parse(Layer.SERVICE, values, env).service.tenant_ids)
