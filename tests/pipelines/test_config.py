"""Delivery policy files: every environment parses; bad input gets a clear error."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from delivery.config import ConfigError, load, parse

ENVS = ["local", "dev", "staging", "prod"]


@pytest.mark.parametrize("env", ENVS)
def test_every_environment_parses(repo_root: Path, env: str) -> None:
    cfg = load(env, repo_root / "environments")
    assert cfg.env == env
    assert cfg.steps
    assert all(1 <= s.weight <= 50 for s in cfg.steps)
    assert cfg.delta.service_types
    if env == "local":
        assert cfg.target_kind == "local"
        assert cfg.local is not None
        assert not cfg.ledger.startswith("s3://")
    else:
        assert cfg.target_kind == "pulumi"
        assert cfg.pulumi is not None
        assert cfg.pulumi.stack == f"{env}-service"  # a canary step runs the service layer only
        assert cfg.ledger.startswith("s3://")
        assert "aws:s3/bucket:Bucket" in cfg.delta.protected_types


def test_prod_is_stricter_than_staging(repo_root: Path) -> None:
    staging = load("staging", repo_root / "environments")
    prod = load("prod", repo_root / "environments")
    assert prod.steps[0].weight < staging.steps[0].weight
    assert prod.delta.max_risk < staging.delta.max_risk


def base(repo_root: Path) -> dict[str, Any]:
    data = yaml.safe_load((repo_root / "environments" / "delivery.local.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra=1), "unknown key"),
        (lambda d: d["canary"]["steps"].append({"weight": 60, "bake_seconds": 5}), "1..50"),
        (lambda d: d["canary"]["steps"].insert(1, {"weight": 5, "bake_seconds": 5}), "increase"),
        (lambda d: d["canary"].update(steps=[]), "non-empty list"),
        (lambda d: d["canary"]["steps"][0].update(bake_seconds="soon"), "expected float"),
        (lambda d: d["canary"]["steps"][0].update(bake_seconds=1), "fewer than two"),
        (lambda d: d["target"].update(kind="k8s"), "expected local or pulumi"),
        (lambda d: d["delta"].pop("service_types"), "missing required key 'service_types'"),
        (lambda d: d["delta"]["op_weights"].update(delete=-1), "cannot be negative"),
        (lambda d: d.update(schema_version=2), "reads 1"),
        (lambda d: d["target"]["local"].update(traffic_rps=10_000), "at most 500"),
    ],
)
def test_bad_policy_is_a_clear_error(repo_root: Path, mutate: Any, message: str) -> None:
    data = copy.deepcopy(base(repo_root))
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        parse(data, "delivery.local.yaml")


def test_load_names_unknown_envs(tmp_path: Path, repo_root: Path) -> None:
    with pytest.raises(ConfigError, match="no delivery policy for env 'nope'"):
        load("nope", repo_root / "environments")
    with pytest.raises(ConfigError, match="plain environment name"):
        load("../etc", repo_root / "environments")
    (tmp_path / "delivery.x.yaml").write_text("a: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load("x", tmp_path)


def test_pulumi_target_needs_a_metrics_url(repo_root: Path) -> None:
    data = yaml.safe_load((repo_root / "environments" / "delivery.dev.yaml").read_text())
    data["metrics"]["prometheus_url"] = ""
    with pytest.raises(ConfigError, match="required for the pulumi target"):
        parse(data, "delivery.dev.yaml")


@pytest.mark.parametrize("env", ENVS)
def test_every_judge_section_is_a_valid_judge_policy(repo_root: Path, env: str) -> None:
    from delivery.judge import JudgePolicy

    cfg = load(env, repo_root / "environments")
    policy = JudgePolicy.from_mapping(cfg.judge)
    assert any(m.critical and m.kind == "error_ratio" for m in policy.metrics)


def test_a_typo_in_the_judge_section_is_refused() -> None:
    from delivery.judge import JudgePolicy, PolicyError

    with pytest.raises(PolicyError, match="unknown keys"):
        JudgePolicy.from_mapping({"confidense": 0.9})
