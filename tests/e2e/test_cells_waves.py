"""Issue 15 end to end: a local environment of two cells behind one HAProxy, a version delivered
wave by wave through the `deliver` CLI, and what the processes, the gateway and Prometheus saw.

Its own environment (`e2ecells`, torn down at the end of the module), not the shared one of
conftest.py: cells need a cells file, a placement and their own gateway. Each test delivers its
own named version, so they hold in any order.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from delivery.config import load
from delivery.local_cells import CellsLocal, load_catalog

# A rollout over two cells takes minutes on a loaded machine: more than the suite's default.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

ENV = "e2ecells"
CELLS = ("cell-a", "cell-b")
PLACEMENT = {"acme": "cell-a", "globex": "cell-a", "initech": "cell-b", "umbrella": "cell-b"}
VERSIONS: dict[str, dict[str, str]] = {
    "w0": {},
    "clean-1": {},
    "resumed-1": {},
    # Breaks one tenant of wave 0's cell: 30% of acme's requests answer 500.
    "bad-acme": {"IMAGE_SERVICE_FAULT_ERROR_RATE": "0.3", "IMAGE_SERVICE_FAULT_TENANT": "acme"},
}
BAKE_BETWEEN_WAVES = 12  # long enough to kill the deliverer in it


def cells_file() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "environment": ENV,
        "default_tenant_rps": 20,
        "cells": [
            {"name": "cell-a", "risk": "low", "max_tenants": 2, "max_rps": 200},
            {"name": "cell-b", "risk": "medium", "max_tenants": 2, "max_rps": 200},
        ],
        "placement": PLACEMENT,
        "canary_steps": [
            {"weight": 25, "bake_seconds": 10},
            {"weight": 50, "bake_seconds": 10},
        ],
        "waves": {
            "default": "a-then-b",
            "plans": {
                "a-then-b": [
                    {"cells": ["cell-a"], "bake_seconds": BAKE_BETWEEN_WAVES},
                    {"rest": True, "bake_seconds": 0},
                ]
            },
        },
    }


def e2e_helpers() -> Any:
    """tests/e2e/conftest.py as a module, for its helpers (`policy`, `wait_for_line`): under
    --import-mode=importlib its folder is not on sys.path, and `conftest` is tests/infra's."""
    spec = importlib.util.spec_from_file_location(
        "e2e_conftest_helpers", Path(__file__).with_name("conftest.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HELPERS = e2e_helpers()


def delivery_policy(state: Path, ledger: Path) -> dict[str, Any]:
    """The e2e policy (short bakes, the judge's metrics, the delta budget) for the cells' env."""
    doc: dict[str, Any] = HELPERS.policy(state, ledger)
    doc["environment"] = ENV
    doc["target"]["local"].update(
        # 30 req/s per cell: more overloads a cell's stable on a busy two-core machine
        # (fair-share 503s), and the golden probes then cannot judge.
        traffic_rps=60,
        tenants=list(PLACEMENT),
        initial_stable="w0",
        versions={n: {"source": "worktree", "env": e} for n, e in VERSIONS.items()},
    )
    doc["judge"]["min_requests"] = 60  # each cell's canary sees its cell's share of traffic
    return doc


def read_until(proc: subprocess.Popen[str], needle: str) -> str:
    """The child's output up to the first line holding `needle` (bounded)."""
    seen: list[str] = HELPERS.wait_for_line(proc, needle, 5000)
    return "".join(seen)


@dataclass
class Cells:
    repo: Path
    envs: Path
    ledger: Path
    env: CellsLocal
    runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "delivery.cli",
            *args,
            "--env",
            ENV,
            "--repo",
            str(self.repo),
            "--environments",
            str(self.envs),
        ]

    def deliver(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, cwd=self.repo
        )

    def deliver_once(self, version: str) -> subprocess.CompletedProcess[str]:
        if version not in self.runs:
            self.runs[version] = self.deliver("run", "--version", version)
        return self.runs[version]

    def records(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def finished(self, version: str) -> dict[str, Any]:
        found = [r for r in self.records() if r["kind"] == "finished" and r["version"] == version]
        assert len(found) == 1, f"{len(found)} finished records for {version}"
        return found[0]

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = httpx.get(
            f"{self.env.shared.prometheus_url()}/api/v1/query", params={"query": expr}, timeout=10
        )
        body = reply.json()
        assert body.get("status") == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def served(self, cell: str, version: str, window: str = "1h") -> float:
        """Samples Prometheus scraped from the cell's processes of `version` (their memory gauge,
        there from the process's start): zero when no process of it ever ran in the cell."""
        expr = (
            "sum(count_over_time(image_service_process_resident_memory_bytes"
            f'{{cell="{cell}",version="{version}"}}[{window}]))'
        )
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def routed(self, tenant: str, window: str = "20s") -> dict[tuple[str, str], float]:
        """Where the gateway sent the tenant's requests lately: (cell, version) -> requests."""
        expr = (
            "sum by (cell, version) (increase(image_service_http_requests_total"
            f'{{tenant="{tenant}",route=~"/v1/.*"}}[{window}]))'
        )
        return {
            (r["metric"].get("cell", ""), r["metric"].get("version", "")): float(r["value"][1])
            for r in self.query(expr)
            if float(r["value"][1]) > 0
        }

    def stable_of(self, cell: str) -> str:
        """What the cell's stable process says it is (its own /metrics), not the state file."""
        run = self.env.cells[cell].track("stable")
        assert run is not None
        text = httpx.get(f"http://127.0.0.1:{run.proc.port}/metrics", timeout=5).text
        found = {
            part.split('version="')[1].split('"')[0]
            for part in text.splitlines()
            if part.startswith("image_service_http_requests_total") and 'track="stable"' in part
        }
        assert len(found) == 1, found
        return found.pop()

    def logs_naming(self, cell: str, version: str) -> list[str]:
        logs = self.env.cells[cell].logs
        return sorted(p.name for p in logs.glob("*.log") if version in p.name)

    @staticmethod
    def dump(result: subprocess.CompletedProcess[str]) -> str:
        return f"exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def cells(repo_root: Path) -> Iterator[Cells]:
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
    missing = [t for t in ("prometheus", "haproxy") if not shutil.which(t)]
    if missing:
        pytest.fail(f"e2e needs {missing} (run scripts/setup.sh)")
    base = repo_root / ".state" / "e2e-cells" / uuid.uuid4().hex[:10]
    envs = base / "environments"
    envs.mkdir(parents=True)
    state, ledger = base / "state", base / "ledger.jsonl"
    (envs / f"delivery.{ENV}.yaml").write_text(yaml.safe_dump(delivery_policy(state, ledger)))
    (envs / f"cells.{ENV}.yaml").write_text(yaml.safe_dump(cells_file()))
    cfg = load(ENV, envs)
    catalog = load_catalog(envs, ENV)
    assert cfg.local is not None
    assert catalog is not None
    handle = Cells(repo_root, envs, ledger, CellsLocal(repo_root, cfg.local, ENV, catalog))
    try:
        up = handle.deliver("env", "up", timeout=180)
        assert up.returncode == 0, handle.dump(up)
        time.sleep(8)  # the generator has seeded every tenant and Prometheus has samples
        yield handle
    finally:
        handle.env.down()
        shutil.rmtree(base, ignore_errors=True)


def test_the_gateway_routes_each_tenant_to_its_cell_and_every_series_has_a_cell(
    cells: Cells,
) -> None:
    for tenant, cell in PLACEMENT.items():
        routed = cells.routed(tenant)
        assert routed, f"no traffic of {tenant} reached any cell"
        assert {c for c, _ in routed} == {cell}, routed
    unplaced = httpx.get(f"{cells.env.shared.gateway_url()}/v1/nobody/images/x", timeout=5)
    assert unplaced.status_code == 404
    assert cells.query('count({__name__=~".+", job!="", cell=""})') == []


def test_bad_version_stops_at_its_first_wave_and_later_cells_never_run_it(cells: Cells) -> None:
    stable_b = cells.stable_of("cell-b")
    before = cells.env.shared.traffic_stats()["counts"]
    result = cells.deliver_once("bad-acme")
    assert result.returncode == 3, cells.dump(result)
    assert "[cell-a]" in result.stdout
    assert "[cell-b]" not in result.stdout
    record = cells.finished("bad-acme")
    assert record["outcome"] == "aborted"
    rollout = record["cells"]
    outcomes = {c["cell"]: c["outcome"] for c in rollout["cells"]}
    assert outcomes == {"cell-a": "aborted", "cell-b": "skipped"}, rollout
    assert rollout["stop"]["kind"] == "cell_failed"
    assert rollout["stop"]["wave"] == 0
    assert rollout["quarantined"] is True
    assert "no further cell starts" in rollout["stop"]["rule"]
    # The world: cell-a's canary ran the version and failed acme's requests; cell-b never ran
    # a process of it (no log, no scraped series) and its stable is what it was.
    assert cells.served("cell-a", "bad-acme") > 0
    assert cells.served("cell-b", "bad-acme") == 0
    assert cells.logs_naming("cell-a", "bad-acme")
    assert cells.logs_naming("cell-b", "bad-acme") == []
    assert cells.stable_of("cell-b") == stable_b
    assert cells.stable_of("cell-a") != "bad-acme"
    # cell-b's users saw no failure while cell-a's canary failed.
    after = cells.env.shared.traffic_stats()["counts"]
    for tenant in ("initech", "umbrella"):
        seen = {k: n - before.get(tenant, {}).get(k, 0) for k, n in after[tenant].items()}
        assert sum(seen.values()) > 50, seen
        assert not any(n for k, n in seen.items() if k.startswith(("5", "t"))), seen
    # The version is quarantined: a later rollout refuses it.
    again = cells.deliver("run", "--version", "bad-acme")
    assert again.returncode == 4, cells.dump(again)


def test_clean_version_reaches_every_cell_wave_by_wave(cells: Cells) -> None:
    result = cells.deliver_once("clean-1")
    assert result.returncode == 0, cells.dump(result)
    record = cells.finished("clean-1")
    assert record["outcome"] == "promoted"
    by_cell = {c["cell"]: c for c in record["cells"]["cells"]}
    assert {c: v["outcome"] for c, v in by_cell.items()} == dict.fromkeys(CELLS, "promoted")
    # Waves: cell-b started only after cell-a promoted and the bake passed.
    assert by_cell["cell-b"]["started_at"] >= by_cell["cell-a"]["finished_at"]
    assert record["cells"]["experiments"]
    assert not record["cells"]["experiments"][0]["worse"]
    assert {s["cell"] for s in record["steps"]} == set(CELLS)
    # The summary shows a verdict per cell.
    table = result.stdout.split("rollout of clean-1 over 2 cell(s)")[-1]
    for wave, cell in enumerate(CELLS):
        assert any(
            line.split()[:2] == [str(wave), cell] and "PROMOTED" in line
            for line in table.splitlines()
        ), table
    for cell in CELLS:
        assert cells.stable_of(cell) == "clean-1"
    time.sleep(7)  # the replaced stables' last samples leave the window
    for tenant, cell in PLACEMENT.items():
        routed = cells.routed(tenant, "5s")
        assert set(routed) == {(cell, "clean-1")}, (tenant, routed)
    status = cells.deliver("status")
    assert status.returncode == 0, cells.dump(status)
    if "resumed-1" not in cells.runs:  # (random order: a later test may have moved on)
        assert "lagging: none" in status.stdout, status.stdout


def test_a_deliverer_killed_between_waves_resumes(cells: Cells) -> None:
    proc = subprocess.Popen(
        cells.argv("run", "--version", "resumed-1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cells.repo,
    )
    try:
        seen = read_until(proc, "[bake after wave 0]")
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: nothing gets to run on the way out
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert "[cell-a] PROMOTED resumed-1" in seen
    assert cells.stable_of("cell-a") == "resumed-1"
    assert cells.stable_of("cell-b") != "resumed-1"
    status = cells.deliver("status")
    # Running the same command again resumes the rollout where it stood: cell-a is not run
    # again, cell-b gets the version after the rest of the bake.
    result = cells.deliver("run", "--version", "resumed-1")
    assert result.returncode == 0, cells.dump(result)
    assert "unfinished: rollout" in status.stdout, status.stdout
    lagging = status.stdout.split("lagging:")[1].splitlines()[0]
    assert lagging.split("(")[0].strip() == "cell-b", status.stdout
    assert "resuming rollout" in result.stdout
    assert "[cell-a] starting canary" not in result.stdout
    record = cells.finished("resumed-1")
    events = [
        r
        for r in cells.records()
        if r["kind"] == "cells_event" and r["delivery_id"] == record["delivery_id"]
    ]
    started = [e["cell"] for e in events if e["event"] == "CellStarted"]
    assert started == ["cell-a", "cell-b"], started
    assert {c["cell"]: c["outcome"] for c in record["cells"]["cells"]} == dict.fromkeys(
        CELLS, "promoted"
    )
    for cell in CELLS:
        assert cells.stable_of(cell) == "resumed-1"
