"""Local processes: found again by pid and start time, stopped for sure, and a dead start seen."""

import sys
import time
from pathlib import Path

import pytest
from delivery import procs

# Processes are spawned detached, to outlive `deliver`: their Popen handle is dropped on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:subprocess [0-9]+ is still running:ResourceWarning")


def test_a_process_is_known_by_pid_and_start_time(tmp_path: Path) -> None:
    proc = procs.spawn("sleeper", ["sleep", "30"], port=0, log=tmp_path / "s.log")
    try:
        assert procs.alive(proc)
        recycled = procs.Proc(proc.name, proc.pid, proc.started + 1, 0, proc.log)
        assert not procs.alive(recycled)  # same pid, another start: not ours
    finally:
        procs.stop(proc)
    assert not procs.alive(proc)


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
        "print('ready', flush=True); time.sleep(60)"  # fmt: skip
    proc = procs.spawn("stubborn", [sys.executable, "-c", stubborn], port=0, log=tmp_path / "l")
    log = Path(proc.log)
    while "ready" not in log.read_text():  # the handler is set once it says so
        assert procs.alive(proc)
        time.sleep(0.01)  # a polling interval, not a wait for something to happen
    procs.stop(proc, timeout=0.5)
    assert not procs.alive(proc)


def test_waiting_for_a_process_that_dies_fails_early_with_its_log(tmp_path: Path) -> None:
    dying = "import time; time.sleep(0.3); print('config error: no such port'); raise SystemExit(3)"
    proc = procs.spawn("dying", [sys.executable, "-c", dying], port=0, log=tmp_path / "d.log")
    url = f"http://127.0.0.1:{procs.free_port()}/ready"
    with pytest.raises(procs.ProcessError, match="exited while starting") as failed:
        procs.wait_http(proc, url, timeout=60)
    assert "config error: no such port" in str(failed.value)
