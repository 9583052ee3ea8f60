"""The `deliver` CLI surface: complete help, exit codes for bad input, ledger/dora output, and the
CI job summary + chart (no local environment needed)."""

import json
from pathlib import Path

import pytest
from delivery import chart, cli
from delivery.ledger import SCHEMA_VERSION, FileLedger, Finished, from_json

COMMANDS = ["run", "status", "abort", "ledger", "dora", "env"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_complete_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text
    assert "--env" in text
    assert "3  aborted" in text


def test_allow_without_reason_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["run", "--env", "local", "--version", "x", "--allow", "aws:s3/bucket:Bucket:replace"]
    )
    assert code == 4
    assert "--allow needs --reason" in capsys.readouterr().err


def test_unknown_env_and_bad_allow_are_usage_errors(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--env", "nope", "--repo", str(repo_root)]) == 2
    assert "no delivery policy for env 'nope'" in capsys.readouterr().err
    code = cli.main(
        ["run", "--env", "local", "--version", "x", "--allow", "bucket", "--reason", "r"]
    )
    assert code == 2
    assert "expected TYPE:OP" in capsys.readouterr().err


def record(version: str, outcome: str, start: str, end: str) -> dict[str, object]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "finished",
        "delivery_id": f"d-{version}",
        "env": "local",
        "version": version,
        "outcome": outcome,
        "reason": "why",
        "started_at": start,
        "ended_at": end,
        "commit_time": start,
        "steps": [],
    }


def test_ledger_and_dora_read_a_given_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.jsonl"
    ledger = FileLedger(path)
    ledger.append(
        record("v1", "promoted", "2026-01-01T00:00:00+00:00", "2026-01-01T00:05:00+00:00")
    )
    ledger.append(record("v2", "aborted", "2026-01-01T01:00:00+00:00", "2026-01-01T01:01:00+00:00"))
    with path.open("a") as handle:
        handle.write("{torn")
    assert cli.main(["ledger", "--ledger", str(path)]) == 0
    out = capsys.readouterr()
    assert "v1" in out.out
    assert "promoted" in out.out
    assert "(2 deliveries" in out.out
    assert "skipped" in out.err
    assert cli.main(["ledger", "--ledger", str(path), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["version"] for x in lines] == ["v1", "v2"]
    assert cli.main(["dora", "--ledger", str(path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["change_fail_rate"] == 0.5
    assert figures["lead_time_seconds"] == 300.0


def test_summary_and_chart_from_a_record(tmp_path: Path) -> None:
    step = {
        "step": 0,
        "weight": 10,
        "extensions": 0,
        "verdict": {
            "evidence": [
                {
                    "metric": "error_ratio",
                    "scope": "aggregate",
                    "canary": {"value": 0.05},
                    "baseline": {"value": 0.0},
                },
                {
                    "metric": "latency",
                    "scope": "aggregate",
                    "canary": {"value": 0.01},
                    "baseline": {"value": 0.009},
                },
            ]
        },
    }
    rec = from_json(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "finished",
            "delivery_id": "d",
            "version": "v2",
            "env": "staging",
            "outcome": "aborted",
            "reason": "bad",
            "steps": [step],
        }
    )
    assert isinstance(rec, Finished)
    labels, canary, baseline = chart.series(rec.steps, "error_ratio")
    assert (labels, canary, baseline) == (["10%"], [0.05], [0.0])
    png = tmp_path / "c.png"
    chart.render(rec, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    class FakeVerdict:
        def render_table(self, markdown: bool = False) -> str:
            return "| metric |\n|---|\n" if markdown else "plain"

    summary = tmp_path / "summary.md"
    cli.write_summary(summary, rec, [FakeVerdict()])
    text = summary.read_text()
    assert "**ABORTED**" in text
    assert "### Step 1: 10%" in text
    assert "| metric |" in text
