"""The `deliver` CLI surface: complete help, exit codes for bad input, ledger/dora output, the
CI job summary + chart, signals, and read-only commands that start nothing (observed: processes
left behind, files written)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from delivery import chart, cli, procs, rundir
from delivery.flow import Stopped
from delivery.ledger import SCHEMA_VERSION, FileLedger, Finished, from_json
from delivery.local_state import EnvState, StateFile, TrackRun
from delivery.versions import Launch

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
    assert cli.main(["dora", "--ledger", str(path)]) == 0
    text = capsys.readouterr().out
    assert "per day" not in text  # two deliveries in an hour are not a daily rate (ADR 112)
    assert "lead time: median 5 min" in text or "lead time: median 5m" in text, text


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
    cli.write_summary(summary, rec, [FakeVerdict()])  # type: ignore[list-item]
    text = summary.read_text()
    assert "**ABORTED**" in text
    assert "### Step 1: 10%" in text
    assert "| metric |" in text


# --- read-only commands on a stopped local environment -------------------------------------

# Runs a command as a child subreaper: whatever the command leaves running (a detached Prometheus,
# HAProxy, traffic generator or service) is re-parented here and listed, then killed.
OBSERVER = r"""
import ctypes, json, os, signal, subprocess, sys
from pathlib import Path
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
left = []
for stat in Path("/proc").glob("[0-9]*/stat"):
    try:
        text = stat.read_text()
    except OSError:
        continue
    if int(text[text.rindex(")") + 2 :].split()[1]) == os.getpid():
        pid = int(stat.parent.name)
        left.append((Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()))
        os.kill(pid, signal.SIGKILL)
print(json.dumps({"code": done.returncode, "out": done.stdout, "err": done.stderr, "left": left}))
"""


def observed(repo: Path, *args: str) -> dict[str, Any]:
    deliver = [sys.executable, "-m", "delivery.cli", *args, "--env", "local", "--repo", str(repo)]
    done = subprocess.run(
        [sys.executable, "-c", OBSERVER, *deliver],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=repo,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if not p.is_symlink()
    }


@pytest.fixture
def scratch_repo(tmp_path: Path, repo_root: Path) -> Path:
    """A repository root the CLI accepts, with the real local policy and nothing running."""
    repo = tmp_path / "repo"
    shutil.copytree(repo_root / "environments", repo / "environments")
    shutil.copy(repo_root / "Pulumi.yaml", repo / "Pulumi.yaml")
    return repo


def dead_proc(name: str, tmp_path: Path) -> procs.Proc:
    """A process that ran and exited, as the state file recorded it."""
    with subprocess.Popen(["true"]) as child:
        child.wait()
    proc = procs.Proc(name, child.pid, 0, procs.free_port(), str(tmp_path / f"{name}.log"))
    assert not procs.alive(proc)
    return proc


@pytest.mark.parametrize("command", ["status", "abort"])
@pytest.mark.parametrize("history", ["never started", "stopped after running"])
def test_read_only_commands_on_a_stopped_environment_start_nothing(
    scratch_repo: Path, tmp_path: Path, command: str, history: str
) -> None:
    state_dir = scratch_repo / ".state" / "local"
    if history == "stopped after running":
        # What a machine reboot leaves: a state file whose processes are all gone, and a ledger.
        launch = Launch("v1", ("python", "-m", "image_service"))
        stopped = EnvState(
            tracks={"stable": TrackRun("v1", launch, dead_proc("service-stable", tmp_path))},
            haproxy=dead_proc("haproxy", tmp_path),
            prometheus=dead_proc("prometheus", tmp_path),
        )
        StateFile(state_dir).update(lambda _: stopped)
        ledger = FileLedger(scratch_repo / ".state" / "ledger" / "local.jsonl")
        ledger.append(
            record("v1", "promoted", "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00")
        )
    before = tree(scratch_repo)
    shown = observed(scratch_repo, command)
    assert shown["code"] == 0, shown["err"]
    assert shown["left"] == []  # no process outlived the command
    assert "stopped" in shown["out"]
    assert tree(scratch_repo) == before  # no state, lock, ledger, version or worktree written
    assert not rundir.path_for(state_dir).exists()  # no socket directory either
    if command == "status" and history == "stopped after running":
        assert "stable:  v1" in shown["out"]
        assert "last:    v1 promoted" in shown["out"]


def test_signals_stop_a_delivery_only_inside_the_stoppable_block() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(Stopped, match="stopped by signal SIGTERM"), cli.stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored


def test_a_library_value_error_mid_command_is_an_error_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: object) -> int:
        raise ValueError("bad value deep in a library\nwith a second line")

    monkeypatch.setattr(cli, "cmd_dora", broken)
    assert cli.main(["dora", "--ledger", "x.jsonl"]) == 1
    err = capsys.readouterr().err
    assert err == "deliver: error: ValueError: bad value deep in a library\n"


MISSING_HAPROXY = "haproxy is not installed: run scripts/setup.sh (Debian: apt-get install)"


def test_a_missing_tool_is_one_line_with_the_fix_and_debug_adds_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: object) -> int:
        raise FileNotFoundError(2, "No such file or directory", "haproxy")

    monkeypatch.setattr(cli, "cmd_dora", broken)
    monkeypatch.delenv("DELIVER_DEBUG", raising=False)
    assert cli.main(["dora", "--ledger", "x.jsonl"]) == 1
    err = capsys.readouterr().err
    assert err == f"deliver: error: {MISSING_HAPROXY}\n"
    monkeypatch.setenv("DELIVER_DEBUG", "1")
    assert cli.main(["dora", "--ledger", "x.jsonl"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith(f"deliver: error: {MISSING_HAPROXY}\n")


def test_allow_backward_needs_a_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def nothing_may_start(*args: object) -> None:
        raise AssertionError("a bad override must fail before anything starts")

    monkeypatch.setattr(cli, "Context", nothing_may_start)
    code = cli.main(["run", "--env", "local", "--version", "x", "--allow-backward", " "])
    assert code == 2
    assert "--allow-backward: an override needs a reason" in capsys.readouterr().err
