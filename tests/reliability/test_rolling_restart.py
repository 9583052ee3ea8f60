"""Zero-downtime rolling restarts: HAProxy with /readyz health checks in front of two processes.

Under constant wrk load, each process in turn gets SIGTERM (it turns not-ready, HAProxy's checks
take it out, it drains and exits), a new process starts on the same port, and HAProxy brings it
back. Every request during the whole run must succeed: 0 non-2xx and 0 socket errors.

The HAProxy configuration is this test's own (the promise is about the service's drain contract
with a health-checking gateway): checks every 250 ms (out after 2 failures, so the service's
2 s drain window covers detection), and a retry only for connection failures, which never reached
the application.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability_kit import (
    BRAVO_KEY,
    WRK_SCRIPT,
    Proc,
    auth,
    free_port,
    parse_wrk,
    record,
    seed_images,
    start,
    stop,
)

RESTARTS = int(os.environ.get("RELIABILITY_RESTARTS", "2"))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SERVICE_ENV = {"IMAGE_SERVICE_DRAIN_SECONDS": "2", "IMAGE_SERVICE_GRACE_SECONDS": "10"}


def haproxy_config(port: int, stats: Path, backends: list[int]) -> str:
    servers = "\n".join(
        f"  server s{i} 127.0.0.1:{p} check inter 250ms fall 2 rise 2"
        for i, p in enumerate(backends)
    )
    return f"""global
  stats socket {stats} mode 600 level admin
  maxconn 2048

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch
  retry-on conn-failure empty-response
  # Under saturating load /readyz can take longer than the check interval; a check timeout
  # shorter than that takes healthy servers out (measured: both out at once with 100 ms).
  timeout check 1s

frontend fe
  bind 127.0.0.1:{port}
  default_backend be

backend be
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
{servers}
"""


def server_states(stats: Path) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    rows = [line.split(",") for line in data.decode().splitlines() if line.startswith("be,")]
    return {row[1]: row[17] for row in rows if row[1] != "BACKEND"}


def wait_for(stats: Path, name: str, state: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_states(stats).get(name, "").startswith(state):
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not become {state}: {server_states(stats)}")


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[str, Path, list[int]]]:
    backends = [free_port(), free_port()]
    port = free_port()
    stats = tmp_path / "haproxy.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(port, stats, backends))
    subprocess.run([HAPROXY, "-c", "-f", str(cfg)], check=True, capture_output=True, timeout=30)
    log = (tmp_path / "haproxy.log").open("wb")
    process = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while not stats.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", stats, backends
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_rolling_restarts_lose_nothing(
    tmp_path: Path, haproxy: tuple[str, Path, list[int]]
) -> None:
    url, stats, ports = haproxy
    store = str(tmp_path / "shared-store")
    procs: list[Proc] = [
        start(tmp_path, f"s{i}", store, port=p, extra=SERVICE_ENV) for i, p in enumerate(ports)
    ]
    load: subprocess.Popen[str] | None = None
    try:
        for i in range(len(procs)):
            wait_for(stats, f"s{i}", "UP")
        up = httpx.post(
            f"{url}/v1/bravo/images", content=seed_images()["jpeg"], headers=auth(BRAVO_KEY)
        )
        assert up.status_code == 201
        path = f"/v1/bravo/images/{up.json()['id']}"
        assert httpx.get(f"{url}{path}?w=64").status_code == 200
        seconds = RESTARTS * 8 + 5
        load = subprocess.Popen(
            [
                "wrk",
                "-t2",
                "-c4",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(WRK_SCRIPT),
                url,
                "--",
                path,
                "fixed",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        durations: list[float] = []
        for n in range(RESTARTS):
            i = n % len(procs)
            began = time.monotonic()
            procs[i].process.send_signal(signal.SIGTERM)
            wait_for(stats, f"s{i}", "DOWN")
            assert procs[i].process.wait(timeout=30) == 0
            procs[i] = start(tmp_path, f"s{i}", store, port=ports[i], extra=SERVICE_ENV)
            wait_for(stats, f"s{i}", "UP")
            durations.append(time.monotonic() - began)
        assert load.poll() is None, "the load ended before the restarts did"
        out, _err = load.communicate(timeout=seconds + 60)
        result = parse_wrk(out)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        for proc in procs:
            stop(proc, timeout=15)
    failed = result.requests - result.ok + result.socket_errors
    record(
        "rolling restarts",
        restarts=RESTARTS,
        requests=result.requests,
        failed=failed,
        statuses=result.statuses,
        socket_errors=result.socket_errors,
        p99_ms=result.p99_ms,
        restart_seconds_max=round(max(durations), 2),
    )
    assert result.requests > 100
    assert result.statuses.keys() == {200}, (result.statuses, out[-1500:])
    assert result.socket_errors == 0
