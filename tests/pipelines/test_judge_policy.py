"""JudgePolicy: safe defaults, a strict parser, clear errors."""

from pathlib import Path

import pytest
import yaml
from delivery.judge_policy import JudgePolicy, MetricPolicy, PolicyError


def test_defaults_are_valid_and_spend_the_budget_across_looks() -> None:
    policy = JudgePolicy()
    assert policy.alpha == pytest.approx(0.01)
    assert any(m.critical and m.kind == "error_ratio" for m in policy.metrics)
    interim = policy.look_alpha(interim=True) * policy.interim_looks
    assert interim + policy.look_alpha(interim=False) == pytest.approx(policy.alpha)
    assert policy.planned_alpha() == pytest.approx(policy.alpha)
    no_interim = policy.with_overrides(interim_looks=0)
    assert no_interim.look_alpha(interim=False) == pytest.approx(policy.alpha)
    assert no_interim.look_alpha(interim=True) == 0.0


def test_from_mapping_parses_every_key() -> None:
    policy = JudgePolicy.from_mapping(
        {
            "confidence": 0.95,
            "min_requests": 50,
            "min_tenant_requests": 10,
            "correction": "bh",
            "pass_score": 90,
            "power": 0.8,
            "split_tolerance": 0.3,
            "interim_looks": 4,
            "interim_alpha_share": 0.5,
            "metrics": [
                {"name": "errors", "kind": "error_ratio", "critical": True, "per_tenant": True},
                {"name": "p95", "kind": "latency_tail", "quantile": 0.95, "tolerance": 0.1},
                {"name": "rate", "kind": "request_rate", "direction": "decrease", "weight": 2},
            ],
        }
    )
    assert policy.confidence == 0.95
    assert policy.correction == "bh"
    assert policy.metrics[1] == MetricPolicy(
        name="p95", kind="latency_tail", quantile=0.95, tolerance=0.1
    )
    assert policy.metrics[2].direction == "decrease"
    assert policy.metrics[2].weight == 2.0


def test_from_mapping_of_nothing_is_the_default() -> None:
    assert JudgePolicy.from_mapping(None) == JudgePolicy()
    assert JudgePolicy.from_mapping({}) == JudgePolicy()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"confidance": 0.9}, "unknown keys ['confidance']"),
        ({"confidence": 1.5}, "confidence must be within"),
        ({"confidence": "high"}, "judge.confidence must be a number"),
        ({"min_requests": 2.5}, "judge.min_requests must be an integer"),
        ({"min_requests": True}, "judge.min_requests must be an integer"),
        ({"correction": "fdr"}, "correction must be one of"),
        ({"marginal_score": 70}, "unknown keys ['marginal_score']"),
        ({"steps": 4}, "unknown keys ['steps']"),
        (
            {"metrics": [{"name": "e", "kind": "error_ratio", "min_effect": 0.0}]},
            "min_effect must be within",
        ),
        (
            {
                "metrics": [
                    {"name": "e", "kind": "error_ratio", "tolerance": 0.02, "min_effect": 0.01}
                ]
            },
            "min_effect (0.01) must exceed the tolerance (0.02)",
        ),
        (
            {"metrics": [{"name": "l", "kind": "latency", "critical_effect": 1.0}]},
            "critical_effect needs critical: true",
        ),
        ({"metrics": []}, "at least one metric"),
        ({"metrics": {"name": "x"}}, "judge.metrics must be a list"),
        ({"metrics": [{"kind": "latency"}]}, "judge.metrics[0]: missing required key 'name'"),
        ({"metrics": [{"name": "x", "kind": "cpu"}]}, "judge.metrics[0]: metric 'x': kind"),
        (
            {"metrics": [{"name": "x", "kind": "latency", "critical": "yes"}]},
            "judge.metrics[0].critical must be true or false",
        ),
        (
            {"metrics": [{"name": "x", "kind": "latency", "colour": "red"}]},
            "judge.metrics[0]: unknown keys ['colour']",
        ),
        (
            {"metrics": [{"name": "x", "kind": "latency"}, {"name": "x", "kind": "latency"}]},
            "duplicate names ['x']",
        ),
        ("strict", "judge policy must be a mapping"),
    ],
)
def test_from_mapping_rejects_bad_input_clearly(data: object, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        JudgePolicy.from_mapping(data)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_every_environment_judge_section_parses(repo_root: Path) -> None:
    files = sorted((repo_root / "environments").glob("delivery.*.yaml"))
    assert files, "no delivery policies found"
    for path in files:
        section = yaml.safe_load(path.read_text()).get("judge")
        policy = JudgePolicy.from_mapping(section)
        assert 0.5 <= policy.confidence < 1, path
