"""Every layer accepts exactly the same versions, and that set obeys the world's rules.

The expected answer comes from the rules a version must satisfy outside this project, written
here from their sources rather than from the contract's own pattern:
- Kubernetes label values (apimachinery `IsValidLabelValue`): empty or at most 63 characters,
  `(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?`;
- OCI distribution-spec tags: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`;
- and our own promise: a version is never empty and never a moving name like `latest`.
"""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from image_contracts.versions import is_version
from image_service.config import settings_from_env
from image_service.errors import ConfigError
from infra.config import ConfigError as PlatformConfigError
from infra.config import parse_tenants  # noqa: F401  (import proves the platform loads)
from infra.service_deployment import GatewayRef, ServiceSpec

K8S_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
OCI_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MOVING = {"latest", "stable", "main", "master", "head"}


def world_accepts(value: str) -> bool:
    label_ok = len(value) <= 63 and K8S_LABEL_VALUE.fullmatch(value) is not None
    return (
        bool(value) and label_ok and bool(OCI_TAG.fullmatch(value)) and value.lower() not in MOVING
    )


def service_accepts(value: str) -> bool:
    try:
        settings_from_env({"IMAGE_SERVICE_VERSION": value})
    except ConfigError:
        return False
    return True


def platform_spec_accepts(value: str) -> bool:
    try:
        ServiceSpec(
            name="svc",
            namespace="ns",
            image_repository="123.dkr.ecr.eu-west-1.amazonaws.com/svc",
            stable_version=value,
            canary_version="",
            weights=(100, 0, 0),
            stable_replicas=2,
            stable_max_replicas=4,
            canary_replicas=1,
            hostname="img.example.com",
            gateway=GatewayRef(name="gw", namespace="gw", section="https"),
            prometheus_namespace="monitoring",
        )
    except ValueError:
        return False
    return True


def platform_config_accepts(value: str) -> bool:
    from infra.config import _image_ref  # the stack-config reader's own check

    try:
        _image_ref("stableVersion", value, optional=False)
    except PlatformConfigError:
        return False
    return True


CURATED = [
    "0" * 40,  # a full commit SHA
    "a1b2c3d",
    "1.2.3",
    "v1.2.3-rc.1",
    "abc1234-wt20261129T1112",  # the local environment's worktree label
    "x" * 63,
    "x" * 64,  # one over the label limit
    "x" * 128,  # a valid OCI tag, not a label value
    "sha256:" + "a" * 64,  # a digest
    "-leading",
    "trailing-",
    "_under",
    "latest",
    "Main",
    "",
    "has space",
    "dev",
]


@pytest.mark.parametrize("value", CURATED)
def test_every_layer_agrees_with_the_world_on_curated_versions(value: str) -> None:
    expected = world_accepts(value)
    answers = {
        "contract": is_version(value),
        "service": service_accepts(value) if value else False,
        "platform spec": platform_spec_accepts(value),
        "platform config": platform_config_accepts(value),
    }
    assert answers == dict.fromkeys(answers, expected), value


@given(st.text(alphabet="aZ09-_.:/@ ", min_size=1, max_size=80))
def test_every_layer_agrees_with_the_world_on_generated_versions(value: str) -> None:
    expected = world_accepts(value)
    assert is_version(value) == expected
    assert service_accepts(value) == expected
    assert platform_spec_accepts(value) == expected
