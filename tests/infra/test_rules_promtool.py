"""Alert and recording rules under promtool: `check rules`, and `test rules` with one firing and
one silent unit test for every alert. Expected annotations are the rules' templates, expanded."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.observability import rules

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="setup installs promtool")

RUNBOOKS = "https://github.com/example-org/image-delivery/blob/main/docs/runbooks"
# Every service series carries its cell (the ServiceMonitor's relabeling, ADR 138).
SVC = 'route="/i/{key}", method="GET", track="stable", version="v1", cell="prod-a"'


def series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def requests(code: str, values: str) -> dict[str, str]:
    return series(
        "image_service_http_requests_total", f'tenant="acme", code="{code}", {SVC}', values
    )


def canary(code: str, values: str) -> dict[str, str]:
    labels = f'tenant="acme", code="{code}", route="/i/{{key}}", method="GET", cell="prod-a"'
    return series(
        "image_service_http_requests_total", f'{labels}, track="canary", version="v2"', values
    )


def latency(le_values: str, count_values: str) -> list[dict[str, str]]:
    base = f'tenant="acme", {SVC}'
    return [
        series(
            "image_service_http_request_duration_seconds_bucket", f'{base}, le="0.5"', le_values
        ),
        series(
            "image_service_http_request_duration_seconds_bucket", f'{base}, le="+Inf"', count_values
        ),
        series("image_service_http_request_duration_seconds_count", base, count_values),
    ]


POD = 'namespace="monitoring", pod="prometheus-kps-0"'
TRACK = 'instance="10.0.0.1:8080", track="stable", version="v1", cell="prod-a"'
STORAGE = f'{TRACK}, backend="s3", operation="get"'

# alert -> (file group, eval time, firing input, silent input, labels the alert carries)
Scenario = tuple[str, str, list[dict[str, str]], list[dict[str, str]], dict[str, str]]
SCENARIOS: dict[str, Scenario] = {
    "ImageServiceAvailabilityBudgetBurnPage": (
        "1m", "70m",
        [requests("200", "0+60x100"), requests("500", "0+60x100")],
        [requests("200", "0+60x100")],
        {"tenant": "acme", "cell": "prod-a", "slo": "availability"},
    ),
    "ImageServiceAvailabilityBudgetBurnTicket": (
        "15m", "74h",
        [requests("200", "0+891x300"), requests("500", "0+9x300")],
        [requests("200", "0+5997x300"), requests("500", "0+3x300")],
        {"tenant": "acme", "cell": "prod-a", "slo": "availability"},
    ),
    "ImageServiceLatencyBudgetBurnPage": (
        "1m", "70m",
        latency("0+30x100", "0+60x100"),
        latency("0+60x100", "0+60x100"),
        {"tenant": "acme", "cell": "prod-a", "slo": "latency"},
    ),
    "ImageServiceLatencyBudgetBurnTicket": (
        "15m", "74h",
        latency("0+855x300", "0+900x300"),
        latency("0+2985x300", "0+3000x300"),
        {"tenant": "acme", "cell": "prod-a", "slo": "latency"},
    ),
    "ImageServiceTransformQueueBacklog": (
        "1m", "15m",
        [series("image_service_transform_queue_depth", TRACK, "20x30"),
         series("image_service_transform_workers", TRACK, "4x30")],
        [series("image_service_transform_queue_depth", TRACK, "4x30"),
         series("image_service_transform_workers", TRACK, "4x30")],
        {"instance": "10.0.0.1:8080", "track": "stable", "version": "v1", "cell": "prod-a"},
    ),
    "ImageServiceVipsMemoryHigh": (
        "1m", "15m",
        [series("image_service_vips_memory_bytes", TRACK, "2000000000x30")],
        [series("image_service_vips_memory_bytes", TRACK, "100000000x30")],
        {"instance": "10.0.0.1:8080", "track": "stable", "version": "v1", "cell": "prod-a"},
    ),
    "ImageServiceStorageErrors": (
        "1m", "15m",
        [series("image_service_storage_errors_total", STORAGE, "0+60x30")],
        [series("image_service_storage_errors_total", STORAGE, "0x30")],
        {"track": "stable", "version": "v1", "cell": "prod-a", "backend": "s3", "operation": "get"},
    ),
    # 30 of 60 canary requests a minute fail for acme: 50% > 5%. Silent: 1 of 60 (1.7%).
    "ImageServiceCanaryErrors": (
        "1m", "10m",
        [canary("200", "0+30x20"), canary("500", "0+30x20")],
        [canary("200", "0+59x20"), canary("500", "0+1x20")],
        {"tenant": "acme", "cell": "prod-a", "version": "v2"},
    ),
    "ThanosSidecarUploadFailing": (
        "1m", "30m",
        [series("thanos_shipper_upload_failures_total", POD, "0+1x40")],
        [series("thanos_shipper_upload_failures_total", POD, "0x40")],
        {"namespace": "monitoring", "pod": "prometheus-kps-0"},
    ),
    "ThanosCompactHalted": (
        "1m", "10m",
        [series("thanos_compact_halted", 'namespace="monitoring", job="thanos-compactor"', "1x20")],
        [series("thanos_compact_halted", 'namespace="monitoring", job="thanos-compactor"', "0x20")],
        {"namespace": "monitoring", "job": "thanos-compactor"},
    ),
    "PrometheusRuleEvaluationFailing": (
        "1m", "30m",
        [series("prometheus_rule_evaluation_failures_total", POD, "0+1x40")],
        [series("prometheus_rule_evaluation_failures_total", POD, "0x40")],
        {"namespace": "monitoring", "pod": "prometheus-kps-0"},
    ),
    "PrometheusTsdbCompactionsFailing": (
        "1m", "60m",
        [series("prometheus_tsdb_compactions_failed_total", POD, "0+1x100")],
        [series("prometheus_tsdb_compactions_failed_total", POD, "0x100")],
        {"namespace": "monitoring", "pod": "prometheus-kps-0"},
    ),
}  # fmt: skip


def _expand(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


def _unit_tests(groups: tuple[rules.RuleGroup, ...], interval: str) -> dict[str, Any]:
    alerts = {a.name: a for a in rules.all_alerts(groups)}
    tests = []
    for name, (group, eval_time, firing, silent, labels) in SCENARIOS.items():
        if group != interval:
            continue
        alert = alerts[name]
        all_labels = {**labels, "severity": alert.severity, **dict(alert.labels)}
        expected = {
            "exp_labels": all_labels,
            "exp_annotations": {
                "summary": _expand(alert.summary, all_labels),
                "description": _expand(alert.description, all_labels),
                "runbook_url": f"{RUNBOOKS}/{alert.runbook}.md",
            },
        }
        for inputs, exp in ((firing, [expected]), (silent, [])):
            tests.append(
                {
                    "name": f"{name} {'fires' if exp else 'stays silent'}",
                    "interval": interval,
                    "input_series": inputs,
                    "alert_rule_test": [
                        {"eval_time": eval_time, "alertname": name, "exp_alerts": exp}
                    ],
                }
            )
    return {"rule_files": ["rules.yaml"], "evaluation_interval": interval, "tests": tests}


def _write(tmp_path: Path, groups: tuple[rules.RuleGroup, ...]) -> list[Path]:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules.render(groups, RUNBOOKS)))
    files = []
    for interval in ("1m", "15m"):
        path = tmp_path / f"tests-{interval}.yaml"
        path.write_text(yaml.safe_dump(_unit_tests(groups, interval)))
        files.append(path)
    return files


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


def test_every_alert_has_a_scenario() -> None:
    assert {a.name for a in rules.all_alerts(rules.all_groups())} == set(SCENARIOS)


def test_promtool_check_rules(tmp_path: Path) -> None:
    _write(tmp_path, rules.all_groups())
    result = _promtool("check", "rules", tmp_path / "rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fire_and_stay_silent(tmp_path: Path) -> None:
    files = _write(tmp_path, rules.all_groups())
    # One promtool per file, side by side: the long-window (15m) file dominates the time.
    procs = [
        subprocess.Popen(
            ["promtool", "test", "rules", str(f)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for f in files
    ]
    try:
        outputs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output


def test_unit_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    # A 51% objective leaves a budget so large no burn rate can exceed it: "fires" must fail.
    broken = rules.all_groups(rules.SloTargets(availability=0.51))
    files = _write(tmp_path, broken)
    result = _promtool("test", "rules", files[0])
    assert result.returncode != 0
    assert "ImageServiceAvailabilityBudgetBurnPage fires" in result.stdout + result.stderr


def test_every_alert_links_an_existing_runbook(repo_root: Path) -> None:
    for alert in rules.all_alerts(rules.all_groups()):
        runbook = repo_root / "docs" / "runbooks" / f"{alert.runbook}.md"
        assert runbook.is_file(), f"{alert.name}: {runbook} missing"
        text = runbook.read_text()
        assert alert.name in text, f"{runbook.name} does not name its alert"


def test_slo_targets_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="objective"):
        rules.SloTargets(availability=1.0)
    with pytest.raises(ValueError, match="could not convert"):
        rules.SloTargets(latency_le="half a second")


def _cell_requests(cell: str, code: str, per_minute: int) -> dict[str, str]:
    labels = f'tenant="t-{cell}", code="{code}", cell="{cell}", track="stable", version="v1"'
    return series("image_service_http_requests_total", labels, f"0+{per_minute}x30")


def test_cell_records_and_their_fleet_sums(tmp_path: Path) -> None:
    # Two cells: a fails 1 request in 4, b none. Per cell the ratios differ; the fleet sums the
    # cells' rates without `cell` (2 req/s + 2 req/s, 0.5 of them 5xx: 0.125 of 4).
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump(rules.render((rules.cells_group(),), RUNBOOKS))
    )
    inputs = [
        _cell_requests("a", "200", 90),
        _cell_requests("a", "500", 30),
        _cell_requests("b", "200", 120),
    ]
    expected = {
        f'{rules.CELL_ERRORS}{{cell="a"}}': 0.25,
        f'{rules.CELL_ERRORS}{{cell="b"}}': 0,
        rules.FLEET_ERRORS: 0.125,
        f'{rules.FLEET_REQUESTS}{{code="200"}}': 3.5,
        f'{rules.FLEET_REQUESTS}{{code="500"}}': 0.5,
    }
    tests = [
        {
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [
                {
                    "expr": expr,
                    "eval_time": "20m",
                    "exp_samples": [{"labels": expr if "{" in expr else f"{expr}{{}}", "value": v}],
                }
                for expr, v in expected.items()
            ],
        }
    ]
    path = tmp_path / "cells.yaml"
    path.write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = _promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_rule_groups_by_cell() -> None:
    # A rule over the service's series that drops `cell` would merge cells into one alert.
    for group in rules.all_groups():
        for rule in group.rules:
            if "image_service_" in rule.expr:
                for by in re.findall(r"by \(([^)]*)\)", rule.expr):
                    assert "cell" in by, (rule.name, rule.expr)
