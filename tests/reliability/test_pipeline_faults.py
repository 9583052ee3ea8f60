"""Pipeline faults, at the seams the delivery package exposes: never promote unsafely.

- The metrics backend down, slow, failing, lying (empty, one track missing) or skewed by ±2 min
  relative to the deliverer's clock: a fake Prometheus HTTP API on 127.0.0.1 serves the window,
  `delivery.metrics.PrometheusSource` reads it, and `delivery.judge.judge` with the local
  environment's own policy decides. When the source raises, the observation is the package's
  `empty_observation` (what the delivery flow substitutes). An unsafe promotion is a `pass` in any
  fault case; controls prove the same rig does pass a healthy canary and fail a bad one.
- The ledger truncated mid-line, and two writers at once.
- Two deliverers at once, and a deliverer killed while holding the lock.
- Secrets of the real local environment (if it has run here) never reach its ledger or logs.
Full deliveries under these faults are the pipeline's own e2e suite (tests/e2e/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from delivery import lock
from delivery.config import load
from delivery.judge import JudgePolicy, judge
from delivery.ledger import SCHEMA_VERSION, FileLedger
from delivery.metrics import MetricsUnavailableError, PrometheusSource, Window, empty_observation
from reliability_kit import free_port, record

ROOT = Path(__file__).resolve().parents[2]
BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "+Inf")
TENANTS = ("acme", "globex")
INTERVAL = 2.0
BAKE = 36.0


@dataclass
class Fake:
    """What the fake Prometheus does; its data exists in [data_start, data_end] of its own clock."""

    data_start: float = 0.0
    data_end: float = 0.0
    mode: str = "ok"  # ok | slow | http500 | garbage | error | empty | no-canary
    canary_error_ratio: float = 0.0


def series(fake: Fake, query: str, start: float, end: float, step: float) -> list[object]:
    track = "canary" if 'track="canary"' in query else "baseline"
    if fake.mode == "empty" or (fake.mode == "no-canary" and track == "canary"):
        return []
    stamps = []
    t = start
    while t <= end + 1e-9:
        if fake.data_start < t <= fake.data_end:
            stamps.append(t)
        t += step
    requests = 50.0
    errors = requests * (fake.canary_error_ratio if track == "canary" else 0.0)
    out: list[object] = []
    for tenant in TENANTS:
        if "_bucket" in query:
            for i, le in enumerate(BOUNDS):
                cumulative = requests * min(1.0, (i + 1) / 4)
                values = [[ts, str(cumulative)] for ts in stamps]
                out.append({"metric": {"tenant": tenant, "le": le}, "values": values})
        else:
            value = errors if "code=~" in query else requests
            out.append(
                {"metric": {"tenant": tenant}, "values": [[ts, str(value)] for ts in stamps]}
            )
    return out


@pytest.fixture
def prometheus() -> Iterator[tuple[str, Fake]]:
    fake = Fake()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if fake.mode == "slow":
                time.sleep(3)
            if fake.mode == "http500":
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"internal error")
                return
            if fake.mode == "garbage":
                body = b"<html>proxy error</html>"
            elif fake.mode == "error":
                body = json.dumps({"status": "error", "error": "query timed out"}).encode()
            else:
                result = series(
                    fake, q["query"], float(q["start"]), float(q["end"]), float(q["step"])
                )
                body = json.dumps(
                    {"status": "success", "data": {"resultType": "matrix", "result": result}}
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def policy() -> JudgePolicy:
    return JudgePolicy.from_mapping(load("local", ROOT / "environments").judge)


def verdict(url: str, skew: float, now: float) -> tuple[str, str]:
    """The deliverer's clock is `skew` seconds off the backend's; returns (outcome, error)."""
    source = PrometheusSource(url, timeout=1.0)
    window = Window(now - BAKE + skew, now + skew, INTERVAL, "canaryv", "stablev")
    try:
        observation, error = source.observe(window), ""
    except MetricsUnavailableError as exc:
        observation, error = empty_observation(INTERVAL), str(exc)
    return judge(observation, policy()).outcome, error


CASES = {
    # name: (mode, canary error ratio, skew seconds)
    "backend down": ("down", 0.0, 0.0),
    "backend slow (3 s > 1 s timeout)": ("slow", 0.0, 0.0),
    "backend http 500": ("http500", 0.0, 0.0),
    "backend returns html": ("garbage", 0.0, 0.0),
    "backend query error": ("error", 0.0, 0.0),
    "backend returns no series": ("empty", 0.0, 0.0),
    "canary series missing": ("no-canary", 0.0, 0.0),
    "clock +2 min, healthy canary": ("ok", 0.0, 120.0),
    "clock -2 min, healthy canary": ("ok", 0.0, -120.0),
    "clock +2 min, bad canary": ("ok", 0.3, 120.0),
    "clock -2 min, bad canary": ("ok", 0.3, -120.0),
    "clock +10 s, bad canary": ("ok", 0.3, 10.0),
    "clock -10 s, bad canary": ("ok", 0.3, -10.0),
}


def test_metrics_faults_never_promote(prometheus: tuple[str, Fake]) -> None:
    url, fake = prometheus
    now = time.time()
    fake.data_start, fake.data_end = now - BAKE, now
    # Controls: the rig can pass a healthy canary and fail a bad one.
    assert verdict(url, 0.0, now)[0] == "pass"
    fake.canary_error_ratio = 0.3
    assert verdict(url, 0.0, now)[0] == "fail"
    unsafe: list[str] = []
    outcomes: dict[str, str] = {}
    for name, (mode, ratio, skew) in CASES.items():
        fake.mode, fake.canary_error_ratio = mode, ratio
        target = f"http://127.0.0.1:{free_port()}" if mode == "down" else url
        started = time.monotonic()
        outcome, _ = verdict(target, skew, now)
        assert time.monotonic() - started < 30, name  # a slow backend cannot stall the step
        outcomes[name] = outcome
        if outcome == "pass":
            unsafe.append(name)
    record(
        "pipeline: metrics faults",
        cases=len(CASES),
        unsafe_promotions=len(unsafe),
        outcomes=outcomes,
    )
    assert unsafe == []


def ledger_record(n: int) -> dict[str, object]:
    return {"schema_version": SCHEMA_VERSION, "event": "finished", "n": n, "env": "local"}


def test_truncated_ledger_line_is_skipped_and_appends_stay_clean(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = FileLedger(path)
    for n in range(5):
        ledger.append(ledger_record(n))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 17])  # a crash mid-write of the fifth record
    damaged = ledger.read()
    assert [r["n"] for r in damaged.records] == [0, 1, 2, 3]
    assert len(damaged.skipped) == 1
    assert damaged.skipped[0].where.endswith(":5")
    ledger.append(ledger_record(5))
    ledger.append(ledger_record(6))
    healed = ledger.read()
    record(
        "pipeline: truncated ledger",
        skipped=len(healed.skipped),
        records_after_append=len(healed.records),
    )
    assert [r["n"] for r in healed.records] == [0, 1, 2, 3, 5, 6]
    assert len(healed.skipped) == 1
    assert path.read_bytes().startswith(whole[: whole.index(b'"n":4')].rsplit(b"\n", 1)[0])


def test_two_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    writer = (
        "import sys; from pathlib import Path; from delivery.ledger import FileLedger\n"
        "ledger = FileLedger(Path(sys.argv[1]))\n"
        "for n in range(300):\n"
        "    ledger.append({'schema_version': 1, 'event': 'step', 'w': sys.argv[2], 'n': n,"
        " 'pad': 'x' * 3000})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(path), name]) for name in ("a", "b")
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    read = FileLedger(path).read()
    record("pipeline: two ledger writers", records=len(read.records), skipped=len(read.skipped))
    assert read.skipped == ()
    for name in ("a", "b"):
        assert [r["n"] for r in read.records if r["w"] == name] == list(range(300))


HOLDER = (
    "import sys, time; from pathlib import Path; from delivery.lock import delivery_lock\n"
    "with delivery_lock(Path(sys.argv[1]), 'local'):\n"
    "    print('held', flush=True); time.sleep(60)\n"
)


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start a deliverer stand-in that holds the env's lock; returns once it says it holds it."""
    started: list[subprocess.Popen[str]] = []

    def hold(path: Path) -> subprocess.Popen[str]:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
        )
        started.append(holder)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        return holder

    yield hold
    for holder in started:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_second_deliverer_is_refused_and_a_killed_one_frees_the_lock(
    tmp_path: Path, lock_holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    path = tmp_path / "locks" / "deliver-local.lock"
    holder = lock_holder(path)
    with pytest.raises(lock.BusyError) as busy, lock.delivery_lock(path, "local"):
        pass
    assert busy.value.pid == holder.pid
    holder.kill()  # kill -9 of the running deliverer
    holder.wait(timeout=10)
    with lock.delivery_lock(path, "local"):
        acquired = True
    record("pipeline: two deliverers", second_refused=True, lock_free_after_kill=acquired)


def deliver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The `deliver` console script of this environment (same venv as the tests)."""
    script = Path(sys.executable).parent / "deliver"
    return subprocess.run(
        [str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def scratch_repo(tmp_path: Path) -> Path:
    """A repository root the CLI accepts (Pulumi.yaml + environments/), so no state is shared."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "environments", repo / "environments")
    shutil.copy(ROOT / "Pulumi.yaml", repo / "Pulumi.yaml")
    return repo


def test_cli_refuses_a_second_deliverer(
    tmp_path: Path, lock_holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    repo = scratch_repo(tmp_path)
    holder = lock_holder(repo / ".state" / "locks" / "deliver-local.lock")
    second = deliver("run", "--env", "local", "--version", "HEAD", "--repo", str(repo), cwd=repo)
    record("pipeline: second deliverer via CLI", exit_code=second.returncode)
    assert second.returncode == 5, second.stderr
    assert f"pid {holder.pid}" in second.stderr
    assert not (repo / ".state" / "local").exists()  # refused before touching the environment


def test_cli_reports_a_truncated_ledger_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = FileLedger(path)
    for n in range(3):
        ledger.append({**ledger_record(n), "version": f"v{n}", "outcome": "promoted"})
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    shown = deliver("ledger", "--ledger", str(path), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"skipped {path}:3" in shown.stderr
    assert [json.loads(line)["n"] for line in shown.stdout.splitlines()] == [0, 1]
