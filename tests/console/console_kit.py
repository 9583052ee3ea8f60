"""Helpers for the console tests (imported by name: conftest puts this folder on sys.path).

A synthetic exporter speaks the service's metric contract with a known fault (the canary
`bad-globex` fails 30% of globex's requests), a real Prometheus scrapes it, and the ledger's own
typed records are written with verdicts from the real judge over that real data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from delivery import prometheus_local
from delivery.judge import JudgePolicy, judge
from delivery.ledger import (
    FileLedger,
    Finished,
    Outcome,
    PlannedStep,
    Record,
    Started,
    StepRecord,
    StepResult,
    Subject,
)
from delivery.metrics import PrometheusSource, Window
from delivery.target import Check
from image_contracts.metrics import LATENCY_BUCKETS, REQUEST_DURATION, REQUESTS

REPO = Path(__file__).resolve().parents[2]
ENV = "console-e2e"
STABLE = "good-1"
# Requests per second per series, per tenant: different, so their lines are told apart.
RATE = {"acme": 12.0, "globex": 9.0, "initech": 7.0, "umbrella": 5.0}
# (track, version) -> {tenant: error ratio}; latency is the same everywhere (20 ms).
SERIES: dict[tuple[str, str], dict[str, float]] = {
    ("stable", STABLE): {},
    ("baseline", STABLE): {},
    ("canary", "bad-globex"): {"globex": 0.3},
    ("canary", "good-2"): {},
}
PLANTED_SECRET = "sk-PLANTED-tenant-key-9f8e7d6c5b4a"  # must never reach a page
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Stack:
    """What the session's `stack` fixture started and wrote."""

    prometheus: str
    console: str
    ledger: Path
    environments: Path
    aborted_id: str
    promoted_id: str
    refused_id: str
    window: tuple[float, float]  # where the exporter's data is


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `check` until true; fail with `what` after `timeout` seconds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this kit started (by its own handle, never by name)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the synthetic exporter -------------------------------------------------------------------
def exposition(elapsed: float) -> str:
    """The service's metrics after `elapsed` seconds at constant rates. Pure."""
    out: list[str] = []
    for (track, version), faults in SERIES.items():
        for tenant in RATE:
            labels = f'track="{track}",version="{version}",tenant="{tenant}",route="/v1/render"'
            total = RATE[tenant] * elapsed
            errors = total * faults.get(tenant, 0.0)
            out.append(f'{REQUESTS}{{{labels},code="200"}} {total - errors:.3f}')
            out.append(f'{REQUESTS}{{{labels},code="500"}} {errors:.3f}')
            for le in LATENCY_BUCKETS:
                count = total if le >= 0.025 else 0.0
                out.append(f'{REQUEST_DURATION}_bucket{{{labels},le="{le}"}} {count:.3f}')
            out.append(f'{REQUEST_DURATION}_bucket{{{labels},le="+Inf"}} {total:.3f}')
            out.append(f"{REQUEST_DURATION}_count{{{labels}}} {total:.3f}")
            out.append(f"{REQUEST_DURATION}_sum{{{labels}}} {0.02 * total:.3f}")
            base = f'track="{track}",version="{version}",tenant="{tenant}"'
            out.append(f"image_service_bytes_sent_total{{{base}}} {20000 * total:.1f}")
            out.append(
                f'image_service_rendition_cache_total{{{base},result="hit"}} {0.8 * total:.2f}'
            )
            out.append(
                f'image_service_rendition_cache_total{{{base},result="miss"}} {0.2 * total:.2f}'
            )
        gauge = f'track="{track}",version="{version}"'
        out.append(f"image_service_build_info{{{gauge}}} 1")
        out.append(f"image_service_transform_queue_depth{{{gauge}}} {int(elapsed) % 3}")
        out.append(f"image_service_transform_workers{{{gauge}}} 2")
        out.append(f"image_service_inflight_requests{{{gauge}}} {1 + int(elapsed) % 4}")
    return "\n".join(out) + "\n"


@contextlib.contextmanager
def exporter() -> Iterator[int]:
    started = time.time()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition(time.time() - started).encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def prometheus(work: Path, exporter_port: int) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1, configured as the local environment configures it."""
    binary = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/sbin:/usr/bin")
    if binary is None:
        raise RuntimeError("prometheus is not installed (scripts/setup.sh installs it)")
    targets = work / "targets.json"
    prometheus_local.write_targets(targets, {"canary": exporter_port})
    config = work / "prometheus.yml"
    config.write_text(prometheus_local.render_config(targets_file=targets, scrape_interval=1.0))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("Prometheus ready", lambda: httpx.get(f"{url}/-/ready").status_code == 200)
        yield url
    finally:
        stop(proc)
        log.close()


def scraped_seconds(url: str) -> float:
    """How many seconds of the exporter's data Prometheus holds."""
    body = httpx.get(
        f"{url}/api/v1/query", params={"query": 'count_over_time(up{slot="canary"}[5m])'}
    ).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


# --- the console as a real process, through the CLI ---------------------------------------------
def write_policy(folder: Path, ledger: Path, prometheus_url: str) -> None:
    """The local environment's policy, renamed, pointing at the test ledger and Prometheus."""
    doc = yaml.safe_load((REPO / "environments" / "delivery.local.yaml").read_text())
    doc["environment"] = ENV
    doc["ledger"] = str(ledger)
    doc["metrics"]["prometheus_url"] = prometheus_url
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"delivery.{ENV}.yaml").write_text(yaml.safe_dump(doc))


def policy(folder: Path) -> JudgePolicy:
    doc = yaml.safe_load((folder / f"delivery.{ENV}.yaml").read_text())
    return JudgePolicy.from_mapping(doc["judge"])


@contextlib.contextmanager
def console(environments: Path, log: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "delivery.cli",
                "console",
                "--env",
                ENV,
                "--environments",
                str(environments),
                "--repo",
                str(REPO),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(
                f"the console at {url} (log {log})",
                lambda: proc.poll() is None and httpx.get(f"{url}/dashboards").status_code == 200,
            )
            yield url
        finally:
            stop(proc)


# --- ledger records: the ledger's own typed records ---------------------------------------------
ALLOWED = {
    "allowed": True,
    "changes": 2,
    "kind": "service",
    "overrides": [],
    "reasons": [],
    "risk": 2.0,
    "summary": {"create": 2, "same": 1},
}
PLAN = (PlannedStep(10, 6.0), PlannedStep(50, 6.0))


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def append(ledger: Path, record: Record | Mapping[str, Any]) -> None:
    FileLedger(ledger).append(record)


@dataclass(frozen=True)
class Delivery:
    """One delivery the tests write: its id, environment and subject."""

    id: str
    env: str
    subject: Subject


def delivery(
    did: str,
    version: str,
    at: float,
    *,
    stable: str = STABLE,
    env: str = ENV,
    delta: Mapping[str, Any] = ALLOWED,
) -> Delivery:
    subject = Subject(
        version=version,
        commit=hashlib.sha1(version.encode()).hexdigest(),  # noqa: S324 - a fake commit id
        commit_time=iso(at - 300),
        stable_version=stable,
        target="local",
        started_at=iso(at),
        delta=delta,
        planned=PLAN,
    )
    return Delivery(did, env, subject)


def started(d: Delivery, at: float) -> Started:
    return Started(d.id, d.env, iso(at), d.subject)


def judged_step(
    d: Delivery,
    prom_url: str,
    pol: JudgePolicy,
    index: int,
    weight: int,
    start: float,
    end: float,
    data_from: tuple[float, float, str] | None = None,
) -> StepRecord:
    """A step record whose verdict the real judge gave on the real Prometheus data (from its own
    window, or `data_from` = (start, end, canary version) for a delivery older than the data)."""
    first, last, canary = data_from or (start, end, d.subject.version)
    window = Window(first, last, 2.0, canary, STABLE)
    with httpx.Client(timeout=10) as client:
        verdict = judge(PrometheusSource(prom_url, client=client).observe(window), pol)
    result = StepResult(
        step=index,
        weight=weight,
        started_at=iso(start),
        ended_at=iso(end),
        duration_seconds=round(end - start, 2),
        bake_seconds=6.0,
        extensions=0,
        verdict=verdict.to_json(),
    )
    return StepRecord(d.id, d.env, iso(end), d.subject.version, result)


def finished(
    d: Delivery, steps: Sequence[StepRecord], outcome: Outcome, reason: str, at: float
) -> Finished:
    return Finished(
        d.id,
        d.env,
        iso(at),
        d.subject,
        ended_at=iso(at),
        outcome=outcome,
        reason=reason,
        checks=(Check("runs as non-root", True, "pid 4242 runs as 'nobody'"),),
        steps=tuple(s.result for s in steps),
    )


def failure_reason(step: StepRecord) -> str:
    reasons = step.result.verdict["reasons"]
    return f"the judge failed the canary at {step.result.weight}%: " + "; ".join(reasons[:3])
