"""The local environment from a checkout whose path is deeper than a Unix socket path may be.

A socket kept under the checkout breaks there (HAProxy: "socket path ... too long (max 97)"); the
environment must come up anyway, with its gateway's runtime API answering. The checkout is a real
clone in a private temporary directory, as CI makes one.
"""

import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MIN_DEPTH = 120
ENV = "deep"
# Relative paths: the state (and the socket that used to live in it) sits under the checkout.
POLICY = {
    "schema_version": 1,
    "environment": ENV,
    "target": {
        "kind": "local",
        "local": {
            "state_dir": ".state/local",
            "traffic_rps": 20,
            "initial_stable": "v0",
            "versions": {"v0": {"source": "worktree"}},
        },
    },
    "ledger": ".state/ledger.jsonl",
    "canary": {
        "steps": [{"weight": 50, "bake_seconds": 10}],
        "interval_seconds": 2,
        "extension_seconds": 4,
    },
    "delta": {"max_changes": 5, "max_risk": 10, "service_types": ["local:process:ImageService"]},
}


@pytest.fixture
def deep_checkout(repo_root: Path) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="e2e-deep-"))
    repo = base.joinpath(
        "a-checkout-path-deeper-than-any-unix-socket-path-can-be",
        "because-ci-runners-nest-workspaces-inside-workspaces",
        "image-delivery",
    )
    try:
        subprocess.run(
            ["git", "clone", "--quiet", str(repo_root), str(repo)], check=True, timeout=120
        )
        # The clone shares the test environment's interpreter; the path itself has no symlink.
        (repo / ".venv").symlink_to(repo_root / ".venv")
        (repo / "environments" / f"delivery.{ENV}.yaml").write_text(yaml.safe_dump(POLICY))
        yield repo
    finally:
        run(repo, "env", "down")  # whatever the test got to
        shutil.rmtree(base, ignore_errors=True)


def run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "delivery.cli", *args, "--env", ENV, "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=repo)


def admin(socket_path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_the_local_environment_runs_from_a_deep_checkout(deep_checkout: Path) -> None:
    state = deep_checkout / ".state" / "local"
    assert len(str(state / "haproxy.sock")) > 100  # where the socket used to live: too long
    assert len(str(deep_checkout)) >= MIN_DEPTH
    up = run(deep_checkout, "env", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    # HAProxy took its admin socket somewhere short, outside the checkout.
    config = (state / "haproxy.cfg").read_text()
    match = re.search(r"stats socket (\S+)", config)
    assert match is not None, config
    socket_path = match.group(1)
    assert len(socket_path) <= 97
    assert not socket_path.startswith(str(deep_checkout))
    # Its runtime API answers, and routes to the stable process the state file names.
    servers = admin(socket_path, "show servers state image")
    stable_port = re.search(r"stable 127\.0\.0\.1:(\d+)", (state / "haproxy.cfg").read_text())
    assert stable_port is not None
    assert f" {stable_port.group(1)} " in servers, servers
    status = run(deep_checkout, "status")
    assert status.returncode == 0, status.stderr
    gateway = re.search(r"gateway: (\S+)", status.stdout)
    assert gateway is not None, status.stdout
    assert httpx.get(f"{gateway.group(1)}/healthz", timeout=5).status_code == 200
    down = run(deep_checkout, "env", "down")
    assert down.returncode == 0, down.stderr
    assert not Path(socket_path).parent.exists()  # the runtime directory went with it
