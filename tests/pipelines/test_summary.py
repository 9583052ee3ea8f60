"""The end-of-run summary and one-line errors, over ledger-shaped records and real failures."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from delivery.summary import MAX_LINES, WIDTH, one_line_error, render_run, summarize

DID = "staging-20261129T101500-a1b2c3"


def verdict(
    outcome: str, failing: tuple[str, ...] = (), reasons: tuple[str, ...] = ()
) -> dict[str, Any]:
    metrics = [
        {"name": m, "status": "fail" if m in failing else "pass", "critical": m == "error_ratio"}
        for m in ("error_ratio", "latency", "latency_p99")
    ]
    return {
        "outcome": outcome,
        "score": 100.0 if outcome == "pass" else 66.66666666666667,
        "interim": False,
        "alpha": 0.0075,
        "reasons": list(reasons or ("score 100.0 >= 95: no significant regression",)),
        "metrics": metrics,
        "evidence": [{"metric": "error_ratio", "scope": f"tenant-{i}"} for i in range(50)],
    }


def step(n: int, weight: int, v: dict[str, Any], seconds: float = 62.5) -> dict[str, Any]:
    return {
        "step": n,
        "weight": weight,
        "started_at": "2026-11-29T10:15:00+00:00",
        "ended_at": "2026-11-29T10:16:02+00:00",
        "duration_seconds": seconds,
        "bake_seconds": 60,
        "extensions": 0,
        "verdict": v,
        "metrics_error": "",
    }


def subject(version: str = "4f3e2d1c0b9a") -> dict[str, Any]:
    return {
        "version": version,
        "commit": version * 3,
        "commit_time": "2026-11-29T09:00:00+00:00",
        "stable_version": "0a1b2c3d4e5f",
        "target": "pulumi",
        "change": "service",
        "started_at": "2026-11-29T10:15:00+00:00",
        "delta": {"allowed": True, "summary": {"update": 2}},
        "planned": [{"weight": 10, "bake_seconds": 60}, {"weight": 50, "bake_seconds": 60}],
    }


def started(did: str = DID) -> dict[str, Any]:
    return {
        "kind": "started",
        "delivery_id": did,
        "env": "staging",
        "schema_version": 1,
        **subject(),
    }


def finished(
    outcome: str,
    reason: str,
    steps: list[dict[str, Any]],
    did: str = DID,
    checks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "finished",
        "delivery_id": did,
        "env": "staging",
        "schema_version": 1,
        **subject(),
        "ended_at": "2026-11-29T10:20:00+00:00",
        "outcome": outcome,
        "reason": reason,
        "error": "",
        "checks": checks or [{"name": "runs as non-root", "passed": True, "detail": "uid 10001"}],
        "steps": steps,
    }


def check_shape(text: str) -> list[str]:
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, text
    assert all(len(line) <= WIDTH for line in lines), text
    assert "{" not in text  # no JSON on the last screen
    return lines


def test_a_promoted_run() -> None:
    steps = [step(0, 10, verdict("pass")), step(1, 50, verdict("pass"))]
    records = [
        started(),
        *(dict(s, kind="step", delivery_id=DID) for s in steps),
        finished("promoted", "every step passed", steps),
    ]
    text = render_run(records, files={"chart": "/tmp/run/chart.png", "summary": None})
    lines = check_shape(text)
    assert lines[0].startswith("PROMOTED: 4f3e2d1c0b9a over 0a1b2c3d4e5f in staging")
    assert "why: every step passed" in text
    assert any(" 10%  pass score 100" in line for line in lines)
    assert any(" 50%  pass score 100" in line for line in lines)
    assert f"ledger id: {DID}" in text
    assert "chart: /tmp/run/chart.png" in text
    assert "summary:" not in text  # not written, not shown


def test_an_aborted_run_says_which_metric_and_why() -> None:
    reasons = (
        "critical metric(s) failed: error_ratio",
        "error_ratio (critical) [aggregate]: effect +20.00pp beyond tolerance 0.00pp, "
        "p=2.9e-98 (holm-adjusted 1.2e-97 <= 0.0025); canary n=1500, baseline n=1500",
    )
    bad = step(0, 10, verdict("fail", ("error_ratio",), reasons))
    reason = (
        "the judge failed the canary at 10%: "
        + "; ".join(reasons)
        + "; "
        + "; ".join(f"error_ratio (critical) [tenant-{i}]: effect +20.00pp" for i in range(30))
    )
    failed_check = {"name": "golden probes", "passed": False, "detail": "3 of 141 differ"}
    text = render_run([started(), finished("aborted", reason, [bad], checks=[failed_check])])
    lines = check_shape(text)
    assert lines[0].startswith("ABORTED: 4f3e2d1c0b9a")
    assert any("FAIL" in line and "(error_ratio)" in line and "10%" in line for line in lines)
    assert "why: the judge failed the canary at 10%" in text
    why = [line for line in lines if line.startswith(("why:", "     "))]
    assert why[-1].endswith("...")  # the long reason is cut, the ledger has it all
    assert any(line.strip().startswith("- error_ratio (critical) [aggregate]") for line in lines)
    assert "check failed: golden probes: 3 of 141 differ" in text


def test_many_steps_stay_on_one_screen() -> None:
    steps = [step(i, min(100, 2 * (i + 1)), verdict("pass")) for i in range(40)]
    text = render_run(
        [finished("promoted", "every step passed", steps)],
        files={"chart": "c.png", "summary": "s.md"},
    )
    lines = check_shape(text)
    assert "steps (40):" in text
    assert "steps not shown" in text
    assert lines[-2:] == ["chart: c.png", "summary: s.md"]


def test_an_interrupted_run_is_unfinished_with_the_steps_so_far() -> None:
    records = [started(), dict(step(0, 10, verdict("pass")), kind="step", delivery_id=DID)]
    summary = summarize(records)
    assert summary.outcome == "unfinished"
    assert len(summary.steps) == 1
    assert render_run(records).startswith("UNFINISHED: 4f3e2d1c0b9a")


def test_the_last_delivery_unless_one_is_named() -> None:
    other = "staging-20261129T090000-ffffff"
    records = [
        started(other),
        finished("aborted", "stopped by a person", [], did=other),
        started(),
        finished("promoted", "every step passed", []),
    ]
    assert summarize(records).delivery_id == DID
    assert summarize(records, other).outcome == "aborted"
    with pytest.raises(ValueError, match="no ledger records for delivery"):
        summarize(records, "nope")


# --- one-line errors, from the real failures ---------------------------------------------------
def one_line(text: str) -> str:
    assert "\n" not in text
    assert len(text) <= 200
    return text


def test_missing_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import boto3
    from botocore.exceptions import NoCredentialsError

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client("s3", region_name="eu-west-1")
    with pytest.raises(NoCredentialsError) as caught:
        client.list_objects_v2(Bucket="ledger")
    text = one_line(one_line_error(caught.value, context="reading the staging ledger"))
    assert text.startswith("no AWS credentials (reading the staging ledger)")
    assert "AWS_PROFILE" in text


def test_prometheus_unreachable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}, timeout=2)
    text = one_line(one_line_error(caught.value))
    assert f"unreachable at http://127.0.0.1:{port}" in text
    assert "deliver env up" in text


def test_git_outside_a_repository(tmp_path: Path) -> None:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    with pytest.raises(subprocess.CalledProcessError) as caught:
        subprocess.run(
            ["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
    text = one_line(one_line_error(caught.value))
    assert text.startswith("git rev-parse HEAD failed: fatal: not a git repository")
    assert "--repo" in text


def test_git_unknown_commit(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(subprocess.CalledProcessError) as caught:
        subprocess.run(
            ["git", "-C", str(tmp_path), "rev-parse", "--verify", "deadbeef^{commit}"],
            check=True,
            capture_output=True,
            text=True,
        )
    text = one_line(one_line_error(caught.value))
    assert "git fetch" in text


def test_a_missing_tool() -> None:
    with pytest.raises(FileNotFoundError) as caught:
        subprocess.run(["no-such-tool-for-deliver"], check=True)
    text = one_line(one_line_error(caught.value))
    assert text.startswith("no-such-tool-for-deliver is not installed: run scripts/setup.sh")


def test_anything_else_is_still_one_line() -> None:
    text = one_line(one_line_error(RuntimeError("first line\nsecond line\nthird")))
    assert text == "RuntimeError: first line"


def test_every_delivery_of_a_real_ledger_fits_a_screen(repo_root: Path) -> None:
    """The ledger fixture written by the pipeline's own record types (all outcomes)."""
    import json

    path = repo_root / "tests" / "pipelines" / "fixtures" / "ledger_v1.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ids = list(dict.fromkeys(str(r["delivery_id"]) for r in records))
    assert len(ids) >= 5
    for did in ids:
        finished_record = next(
            r for r in records if r["delivery_id"] == did and r["kind"] == "finished"
        )
        lines = check_shape(render_run(records, did, files={"chart": "/tmp/c.png"}))
        assert lines[0].startswith(finished_record["outcome"].upper() + ": ")
        assert f"ledger id: {did}" in lines[-2]
        assert lines[-1] == "chart: /tmp/c.png"
