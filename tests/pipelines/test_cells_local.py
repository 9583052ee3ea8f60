"""The local environment with cells, piece by piece: the router (a real HAProxy in front of two
stand-in cells), the per-cell labels Prometheus gets, the cells file's local keys, and the
rollout's ledger records that a resumed deliverer replays."""

import contextlib
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from delivery import haproxy, procs, prometheus_local
from delivery.cells.records import RolloutRecord
from delivery.cells.rollout import (
    CellFailed,
    CellPhase,
    CellPromoted,
    CellStarted,
    CellStepPassed,
    Event,
    ExperimentJudged,
    Halted,
    apply,
    next_action,
)
from delivery.cells.schema import CellsError, Wave, WavePlan, parse_cells
from delivery.config import LocalSettings
from delivery.ledger import SCHEMA_VERSION, Started, StepResult, Subject, to_json
from delivery.local_cells import label_gateway_series, placement, write_cell_targets
from delivery.metrics import Window
from delivery.waves import (
    EVENT,
    CellLedger,
    CellMetrics,
    RolloutStart,
    event_from_json,
    event_to_json,
    open_rollout,
    release_order,
    render_rollout,
    rollout_records,
)

HAPROXY = next((p for p in ("/usr/sbin/haproxy", "/usr/bin/haproxy") if Path(p).exists()), None)
PLACED = {"acme": "cell-a", "globex": "cell-a", "initech": "cell-b"}


def catalog_doc(**extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "environment": "local",
        "default_tenant_rps": 20,
        "cells": [
            {"name": "cell-a", "risk": "low", "max_tenants": 2, "max_rps": 100},
            {"name": "cell-b", "risk": "medium", "max_tenants": 2, "max_rps": 100},
        ],
        "waves": {
            "default": "p",
            "plans": {
                "p": [{"cells": ["cell-a"], "bake_seconds": 5}, {"rest": True, "bake_seconds": 0}]
            },
        },
        **extra,
    }


# --- the router: a real HAProxy, two stand-in cells ----------------------------------------------


class Named(BaseHTTPRequestHandler):
    """Answers every request with the server's name: which cell (and track) served it."""

    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # a health check may hang up first
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def serve(name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Named)
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def router(tmp_path: Path) -> Iterator[tuple[str, dict[str, ThreadingHTTPServer], Path]]:
    if HAPROXY is None:
        pytest.skip("haproxy is not installed")
    servers = {n: serve(n) for n in ("cell-a/stable", "cell-b/stable", "cell-b/canary")}
    port = procs.free_port()
    sock = tmp_path / "h.sock"
    map_file = tmp_path / "tenants.map"
    map_file.write_text(haproxy.render_tenant_map(PLACED))
    cfg = tmp_path / "h.cfg"
    stable_ports = {c: servers[f"{c}/stable"].server_address[1] for c in ("cell-a", "cell-b")}
    cfg.write_text(
        haproxy.render_cells_config(
            port=port, stats_socket=sock, stable_ports=stable_ports, map_file=map_file
        )
    )
    proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + haproxy.METRICS_PATH, timeout=1)
                break
            except httpx.HTTPError:
                threading.Event().wait(0.05)
        for _ in range(100):  # the health checks put every stable in rotation
            if all(served(url, t) for t in PLACED):
                break
            threading.Event().wait(0.1)
        yield url, servers, sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for s in servers.values():
            s.shutdown()
            s.server_close()


def served(url: str, tenant: str) -> str:
    reply = httpx.get(f"{url}/v1/{tenant}/images/x?w=10", timeout=2)
    return reply.text if reply.status_code == 200 else ""


def test_the_router_sends_each_tenant_to_its_cell_and_no_one_else(
    router: tuple[str, dict[str, ThreadingHTTPServer], Path],
) -> None:
    url, _, _ = router
    for tenant, cell in PLACED.items():
        assert {served(url, tenant) for _ in range(10)} == {f"{cell}/stable"}
    unplaced = httpx.get(f"{url}/v1/umbrella/images/x", timeout=2)
    assert unplaced.status_code == 404
    assert httpx.get(f"{url}/healthz", timeout=2).status_code == 404


def test_a_cells_weights_move_only_that_cells_traffic(
    router: tuple[str, dict[str, ThreadingHTTPServer], Path],
) -> None:
    url, servers, sock = router
    runtime = haproxy.Runtime(sock, backend=haproxy.cell_backend("cell-b"))
    runtime.point("canary", servers["cell-b/canary"].server_address[1])
    runtime.set_weight("canary", 50)
    runtime.set_weight("stable", 50)
    seen_b: set[str] = set()
    for _ in range(100):
        seen_b.add(served(url, "initech"))
        if seen_b == {"cell-b/stable", "cell-b/canary"}:
            break
        threading.Event().wait(0.05)
    assert seen_b == {"cell-b/stable", "cell-b/canary"}
    assert {served(url, "acme") for _ in range(20)} == {"cell-a/stable"}


def test_the_cells_gateway_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    if HAPROXY is None:
        pytest.skip("haproxy is not installed")
    cfg = tmp_path / "h.cfg"
    cfg.write_text(
        haproxy.render_cells_config(
            port=8000,
            stats_socket=tmp_path / "s",
            stable_ports={"cell-a": 9001, "cell-b": 9002},
            map_file=tmp_path / "m.map",
        )
    )
    (tmp_path / "m.map").write_text(haproxy.render_tenant_map(PLACED))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# --- every series carries `cell` -----------------------------------------------------------------


def test_scrape_targets_and_gateway_series_carry_the_cell(tmp_path: Path) -> None:
    targets = tmp_path / "targets-cell-b.json"
    write_cell_targets(targets, "cell-b", {"stable": 9001, "idle-canary": 9002})
    doc = json.loads(targets.read_text())
    assert {(d["labels"]["slot"], d["labels"]["cell"]) for d in doc} == {
        ("stable", "cell-b"),
        ("idle-canary", "cell-b"),
    }
    text = prometheus_local.render_config(
        targets_file=tmp_path / "targets-*.json",
        scrape_interval=1,
        gateway_file=tmp_path / "gateway.json",
    )
    edited = yaml.safe_load(label_gateway_series(text, ("cell-a", "cell-b")))
    gateway = next(j for j in edited["scrape_configs"] if j["job_name"] == "gateway")
    assert gateway["relabel_configs"] == [{"target_label": "cell", "replacement": "router"}]
    relabel = gateway["metric_relabel_configs"][0]
    assert relabel["source_labels"] == ["proxy"]
    assert relabel["regex"] == "(cell-a|cell-b)"
    promtool = shutil.which("promtool")
    if promtool is not None:
        path = tmp_path / "prometheus.yml"
        path.write_text(label_gateway_series(text, ("cell-a", "cell-b")))
        check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_the_judge_reads_only_the_cells_own_series() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["query"])
        return httpx.Response(200, json={"status": "success", "data": {"result": []}})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        CellMetrics("http://prom", "cell-b", client).observe(Window(0, 10, 2, "v2", "v1"))
    assert len(asked) == 6
    assert all('{cell="cell-b",track="' in q for q in asked), asked
    with pytest.raises(ValueError, match="PromQL"):
        CellMetrics("http://prom", 'a"}', httpx.Client())


# --- the cells file's local keys ----------------------------------------------------------------


def test_placement_and_cell_canary_steps_are_read_and_checked() -> None:
    catalog = parse_cells(
        catalog_doc(
            placement=PLACED,
            canary_steps=[{"weight": 25, "bake_seconds": 10}, {"weight": 50, "bake_seconds": 8}],
        ),
        "t",
    )
    assert dict(catalog.placement) == PLACED
    assert catalog.canary_steps == ((25, 10.0), (50, 8.0))
    with pytest.raises(CellsError, match="increasing"):
        parse_cells(
            catalog_doc(
                canary_steps=[{"weight": 50, "bake_seconds": 5}, {"weight": 25, "bake_seconds": 5}]
            ),
            "t",
        )
    with pytest.raises(CellsError, match="unknown key"):
        parse_cells(catalog_doc(placements=PLACED), "t")


def test_local_placement_is_validated_against_the_cells() -> None:
    settings = LocalSettings(tenants=("acme", "globex", "initech"), traffic_rps=30)
    catalog = parse_cells(catalog_doc(placement=PLACED), "t")
    assert placement(catalog, settings) == PLACED
    with pytest.raises(CellsError, match="in no cell"):
        placement(catalog, replace(settings, tenants=("acme", "globex", "initech", "hooli")))
    crowded = parse_cells(catalog_doc(placement={**PLACED, "initech": "cell-a"}), "t")
    with pytest.raises(CellsError, match="3 tenants, capacity 2"):
        placement(crowded, settings)
    with pytest.raises(CellsError, match="unknown cell"):
        placement(parse_cells(catalog_doc(placement={**PLACED, "acme": "cell-z"}), "t"), settings)


# --- the rollout in the ledger: what a resumed deliverer replays -------------------------------


PLAN = WavePlan("p", (Wave(("cell-a",), 5.0), Wave(("cell-b",), 0.0)))


def base(did: str, **doc: Any) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "delivery_id": did,
        "env": "local",
        "recorded_at": "2026-11-29T10:00:00+00:00",
        **doc,
    }


def test_every_event_round_trips_through_its_ledger_record() -> None:
    events: list[Event] = [
        CellStarted("cell-a", 1.0),
        CellStepPassed("cell-a", 1, 2.0),
        CellPromoted("cell-a", 3.0),
        ExperimentJudged(0, False, "5xx +1%", 9.0),
        CellFailed("cell-b", "judge failed", 12.0),
        Halted("operator", 13.0),
    ]
    for e in events:
        assert event_from_json(json.loads(json.dumps(event_to_json(e)))) == e
    with pytest.raises(CellsError, match="unknown rollout event"):
        event_from_json({"event": "Exploded"})


def test_a_rollout_killed_between_waves_is_rebuilt_from_its_records() -> None:
    start = RolloutStart("d1", "local", "v2", PLAN, {"cell-a": "v1", "cell-b": "v1"}, 100.0)
    r = start.rollout()
    events: list[Event] = [CellStarted("cell-a", 101.0), CellStepPassed("cell-a", 1, 110.0)]
    events += [CellStepPassed("cell-a", 2, 120.0), CellPromoted("cell-a", 121.0)]
    step = StepResult(0, 25, "a", "b", 10.0, 10.0, 0, {"outcome": "pass"})
    records: list[dict[str, Any]] = [
        to_json(Started("d1", "local", "t", Subject("v2", commit="c0ffee"))),
        start.to_json("t"),
        {**to_json_step(step), "cell": "cell-a"},
        *(base("d1", kind=EVENT, **event_to_json(e)) for e in events),
    ]
    found = open_rollout(json.loads(json.dumps(records)), "local")
    assert found is not None
    assert found.subject.commit == "c0ffee"
    assert found.steps == (("cell-a", step),)
    resumed = found.rollout()
    for e in events:
        r = apply(r, e)
    assert resumed == r
    assert resumed.state("cell-a").phase is CellPhase.PROMOTED
    assert resumed.state("cell-b").phase is CellPhase.PENDING
    # Between waves: the bake's remainder first, then the experiment, then cell-b.
    assert next_action(resumed, 122.0).kind == "bake"
    assert next_action(resumed, 127.0).kind == "judge"
    # Once its finished record is written, the rollout is no longer open.
    done = [*records, base("d1", kind="finished", cells={"version": "v2"}, version="v2")]
    assert open_rollout(done, "local") is None
    assert open_rollout(records, "other-env") is None


def to_json_step(step: StepResult) -> dict[str, Any]:
    return base("d1", kind="step", version="v2", **step.to_json())


def test_a_cells_canary_records_say_which_cell() -> None:
    class Memory:
        location = "memory"

        def __init__(self) -> None:
            self.records: list[Any] = []

        def append(self, record: Any) -> None:
            self.records.append(record)

        def read(self) -> Any:
            return self.records

    inner = Memory()
    CellLedger(inner, "cell-b").append(base("d1", kind="step", step=0))
    assert inner.records[0]["cell"] == "cell-b"


def test_status_helpers_order_releases_and_render_each_cells_verdict() -> None:
    start = RolloutStart("d1", "local", "v2", PLAN, {"cell-a": "v1", "cell-b": "v1"}, 100.0)
    r = start.rollout()
    for e in (CellStarted("cell-a", 101.0), CellFailed("cell-a", "error_ratio failed", 130.0)):
        r = apply(r, e)
    record = RolloutRecord.from_rollout(r)
    text = render_rollout(record)
    assert "STOPPED (version quarantined)" in text
    assert "ABORTED" in text
    assert "SKIPPED" in text
    assert "rule: stop: no further cell starts" in text
    finished = [base("d1", kind="finished", cells=record.to_json())]
    records = rollout_records(finished, "local")
    assert records == [record]
    assert release_order(["v1"], records) == ["v1"]  # nothing was promoted anywhere
    good = RolloutRecord.from_json({**record.to_json(), "version": "v3", "quarantined": False})
    good = replace(good, cells=tuple(replace(c, outcome=CellPhase.PROMOTED) for c in good.cells))
    assert release_order(["v1", "v3"], [record, good]) == ["v1", "v3"]
