"""Local processes the pipeline starts itself: spawn detached, find again by pid, stop.

A process is identified by pid *and* its start time (from /proc), so a recycled pid is never
mistaken for ours after a crash. Everything binds 127.0.0.1 on a free port.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx


class ProcessError(RuntimeError):
    pass


@dataclass(frozen=True)
class Proc:
    name: str
    pid: int
    started: int  # /proc/<pid>/stat start time in clock ticks
    port: int
    log: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Proc":
        return cls(**{k: data[k] for k in ("name", "pid", "started", "port", "log")})


# The processes this `deliver` spawned, by pid: holding the Popen keeps the exit status for
# `exit_status` (a dropped Popen is reaped by subprocess's own cleanup, and the status is lost).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def exit_status(proc: Proc) -> int | None:
    """How a process this `deliver` started ended (negative: killed by that signal); None while
    it runs or when another process started it (then only `alive` can tell)."""
    child = _CHILDREN.get(proc.pid)
    return None if child is None else child.poll()


def describe_exit(status: int | None) -> str:
    """'exited with status 1', 'was killed by SIGKILL', or 'exited' when the status is unknown."""
    if status is None:
        return "exited"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Bindable the way servers bind (SO_REUSEADDR: TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[0] not in {"Z", "X"} and stat[1] == proc.started


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user,
            start_new_session=True,  # outlives `deliver`: crash recovery finds it by pid
        )
    _CHILDREN[child.pid] = child
    stat = _stat(child.pid)
    if stat is None:
        raise ProcessError(f"{name} exited at once; see {log}")
    return Proc(name=name, pid=child.pid, started=stat[1], port=port, log=str(log))


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()  # reaps and keeps the status
        return
    # Not our child (started by an earlier `deliver`): init reaps it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM (graceful drain), then SIGKILL after `timeout`."""
    if not alive(proc):
        _reap(proc.pid)
        return
    os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    for _ in range(100):
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.05)
    raise ProcessError(f"{proc.name} (pid {proc.pid}) did not stop")


def log_tail(proc: Proc, lines: int = 15) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_http(proc: Proc, url: str, timeout: float = 30.0) -> None:
    """Poll until `url` answers 200; fail early, with the log's tail, if the process dies."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not alive(proc):
            raise ProcessError(f"{proc.name} exited while starting:\n{log_tail(proc)}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ProcessError(
        f"{proc.name} not ready at {url} after {timeout}s ({last}):\n{log_tail(proc)}"
    )
