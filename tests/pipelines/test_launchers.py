"""Launchers start real processes: HAProxy, started as the local environment starts it, takes its
admin socket in a short directory and obeys the runtime API (as HAProxy itself reports)."""

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery import haproxy, launchers, procs, rundir

HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="launch-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def show_servers(socket_path: Path) -> dict[str, tuple[str, int]]:
    """`show servers state`, read straight from HAProxy: slot -> (address:port, weight)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(socket_path))
        sock.sendall(b"show servers state image\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    out = {}
    for line in reply.decode().splitlines():
        cols = line.split()
        if len(cols) > 18 and not line.startswith("#"):
            out[cols[3]] = (f"{cols[4]}:{cols[18]}", int(cols[7]))
    return out


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
# Launchers start detached processes meant to outlive `deliver`: their Popen handle is dropped.
@pytest.mark.filterwarnings("ignore:subprocess [0-9]+ is still running:ResourceWarning")
def test_the_gateway_starts_and_obeys_its_runtime_api(tmp_path: Path, socket_dir: Path) -> None:
    sock = rundir.socket_path(rundir.ensure(socket_dir / "run"), "haproxy.sock")
    started = launchers.gateway(
        config=tmp_path / "haproxy.cfg", stats_socket=sock, stable_port=9001, logs=tmp_path
    )
    try:
        procs.wait_http(started.proc, started.ready_url, timeout=started.ready_timeout)
        assert show_servers(sock)["stable"] == ("127.0.0.1:9001", 100)
        runtime = haproxy.Runtime(sock)
        runtime.point("canary", 9003)
        runtime.set_weight("canary", 10)
        runtime.set_weight("stable", 80)
        seen = show_servers(sock)
        assert seen["canary"] == ("127.0.0.1:9003", 10)
        assert seen["stable"] == ("127.0.0.1:9001", 80)
    finally:
        procs.stop(started.proc)
