"""Local alerting: the platform's rules in a real Prometheus, a real Alertmanager on loopback.

The rule artifact is checked against what `infra.observability.rules` renders (the platform's own
code), the routing against `amtool`, and the whole path by a synthetic scrape target whose 5xx
ratio burns the availability budget: the page alert must reach Alertmanager's API, and the
healthy tenant beside it must not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from delivery import procs, prometheus_local
from delivery.alerting_local import (
    LOCAL_RUNBOOK_BASE,
    ROUTING,
    firing_alerts,
    install_rules,
    parse_alerts,
    render_alertmanager_config,
    rules_text,
    start_alertmanager,
    wait_for_alert,
    with_alerting,
)
from infra.observability import rules


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/setup.sh installs it)")
    return found


def test_rules_artifact_is_what_the_platform_renders() -> None:
    platform = rules.render(rules.all_groups(), LOCAL_RUNBOOK_BASE)
    assert yaml.safe_load(rules_text()) == platform


def test_rules_artifact_passes_promtool(tmp_path: Path) -> None:
    path = install_rules(tmp_path / "rules")
    out = subprocess.run(
        [_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = [r for g in rules.all_groups() for r in g.rules if isinstance(r, rules.Alert)]
    assert f"{len([r for g in rules.all_groups() for r in g.rules])} rules found" in out.stdout
    assert alerts


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=X"], "page"),
        (["severity=ticket", "alertname=Y"], "ticket"),
        (["alertname=Watchdog"], "null"),
    ],
)
def test_routing_as_amtool_reads_it(tmp_path: Path, labels: list[str], receiver: str) -> None:
    config = tmp_path / "am.yml"
    config.write_text(render_alertmanager_config())
    amtool = _tool("amtool")
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    route = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
        capture_output=True,
        text=True,
    )
    assert route.stdout.strip() == receiver, route.stdout + route.stderr


def test_a_webhook_receiver_is_rendered(tmp_path: Path) -> None:
    config = tmp_path / "am.yml"
    config.write_text(
        render_alertmanager_config(ROUTING.with_webhook("page", "http://127.0.0.1:1/x"))
    )
    check = subprocess.run(
        [_tool("amtool"), "check-config", str(config)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(config.read_text())["receivers"]}
    assert receivers["page"]["webhook_configs"][0]["url"] == "http://127.0.0.1:1/x"
    assert "webhook_configs" not in receivers["ticket"]
    with pytest.raises(ValueError, match="no receiver"):
        ROUTING.with_webhook("nobody", "http://127.0.0.1:1/x")


def test_alerting_block_is_added_once() -> None:
    base = prometheus_local.render_config(targets_file=Path("/t.json"), scrape_interval=1)
    config = with_alerting(base, "127.0.0.1:9")
    parsed = yaml.safe_load(config)
    targets = parsed["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["127.0.0.1:9"]
    assert parsed["scrape_configs"] == yaml.safe_load(base)["scrape_configs"]
    with pytest.raises(ValueError, match="already"):
        with_alerting(config, "127.0.0.1:9")


def test_parse_alerts_reads_the_v2_shape() -> None:
    payload = [
        {
            "labels": {"alertname": "A", "tenant": "t", "severity": "page"},
            "annotations": {"summary": "s"},
            "receivers": [{"name": "page"}],
            "status": {"state": "active"},
            "startsAt": "2026-11-29T12:00:00Z",
        }
    ]
    (alert,) = parse_alerts(payload)
    assert (alert.name, alert.state, alert.receivers) == ("A", "active", ("page",))
    assert "tenant=t" in alert.describe()
    with pytest.raises(ValueError, match="list"):
        parse_alerts({"not": "a list"})


# --- the whole path ----------------------------------------------------------------------------
REQUESTS = "image_service_http_requests_total"
BAD, GOOD = "burning", "healthy"


class _Synthetic(BaseHTTPRequestHandler):
    """A scrape target: 50 req/s per tenant; half of BAD's are 500s, none of GOOD's."""

    started = time.monotonic()

    def do_GET(self) -> None:
        elapsed = time.monotonic() - self.started
        total = 50 * elapsed
        lines = [f"# TYPE {REQUESTS} counter"]
        for tenant, errors in ((BAD, total / 2), (GOOD, 0.0)):
            base = f'tenant="{tenant}",route="/v1/{{tenant}}/images/{{image_id}}",method="GET"'
            base += ',track="canary",version="synthetic"'
            lines.append(f'{REQUESTS}{{{base},code="200"}} {total - errors:.3f}')
            lines.append(f'{REQUESTS}{{{base},code="500"}} {errors:.3f}')
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def synthetic_target() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Synthetic)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


# procs.spawn detaches its children on purpose (a later `deliver` finds them by pid), so the
# Popen objects are dropped while the processes run; they are stopped by pid below.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_burning_tenant_pages_through_alertmanager(tmp_path: Path, synthetic_target: int) -> None:
    prometheus = _tool("prometheus")
    _tool("prometheus-alertmanager")
    state = tmp_path / "state"
    alertmanager = start_alertmanager(state / "alertmanager")
    started: list[procs.Proc] = [alertmanager]
    try:
        targets = state / "targets.json"
        prometheus_local.write_targets(targets, {"canary": synthetic_target})
        config = state / "prometheus.yml"
        config.write_text(
            with_alerting(
                prometheus_local.render_config(
                    targets_file=targets,
                    scrape_interval=0.5,
                    rule_files=[install_rules(state / "rules")],
                ),
                f"127.0.0.1:{alertmanager.port}",
            )
        )
        port = procs.free_port()
        prom = procs.spawn(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={state / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port=port,
            log=state / "prometheus.log",
        )
        started.append(prom)
        procs.wait_http(prom, f"http://127.0.0.1:{port}/-/ready", timeout=30)
        url = f"http://127.0.0.1:{alertmanager.port}"
        alert = wait_for_alert(url, ["ImageServiceAvailabilityBudgetBurnPage"], timeout=90)
        assert alert.labels["tenant"] == BAD
        assert alert.labels["severity"] == "page"
        assert alert.receivers == ("page",)
        # Evaluated by the same rules at the same time: the healthy tenant does not fire.
        tenants = {a.labels.get("tenant") for a in firing_alerts(url)}
        assert GOOD not in tenants
    finally:
        for proc in reversed(started):
            procs.stop(proc)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_real_service_failing_half_its_requests_pages(tmp_path: Path) -> None:
    """The same path with the real service's own metrics: names and labels must match the rules."""
    prometheus = _tool("prometheus")
    state = tmp_path / "state"
    started: list[procs.Proc] = []
    stop = threading.Event()
    try:
        port = procs.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SERVICE_")}
        env |= {
            "IMAGE_SERVICE_PORT": str(port),
            "IMAGE_SERVICE_STORAGE": str(state / "store"),
            "IMAGE_SERVICE_DEMO_KEY": "demo-key-for-alerting",
            "IMAGE_SERVICE_TRACK": "canary",
            "IMAGE_SERVICE_VERSION": "half-broken",
            "IMAGE_SERVICE_FAULT_ERROR_RATE": "0.5",
            "IMAGE_SERVICE_LOG_LEVEL": "warning",
        }
        service = procs.spawn(
            "image-service",
            [sys.executable, "-m", "image_service"],
            port=port,
            log=state / "service.log",
            env=env,
        )
        started.append(service)
        procs.wait_http(service, f"http://127.0.0.1:{port}/readyz", timeout=60)
        answers: list[int] = []

        def traffic() -> None:
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    url = f"http://127.0.0.1:{port}/v1/demo/images/{'0' * 64}?w=10"
                    answers.append(client.get(url).status_code)
                    stop.wait(0.01)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        alertmanager = start_alertmanager(state / "alertmanager")
        started.append(alertmanager)
        targets = state / "targets.json"
        prometheus_local.write_targets(targets, {"canary": port})
        config = state / "prometheus.yml"
        config.write_text(
            with_alerting(
                prometheus_local.render_config(
                    targets_file=targets,
                    scrape_interval=0.5,
                    rule_files=[install_rules(state / "rules")],
                ),
                f"127.0.0.1:{alertmanager.port}",
            )
        )
        prom_port = procs.free_port()
        prom = procs.spawn(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={state / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            port=prom_port,
            log=state / "prometheus.log",
        )
        started.append(prom)
        procs.wait_http(prom, f"http://127.0.0.1:{prom_port}/-/ready", timeout=30)
        am_url = f"http://127.0.0.1:{alertmanager.port}"
        alert = wait_for_alert(am_url, ["ImageServiceAvailabilityBudgetBurnPage"], timeout=90)
        # What the client saw: a large share of 500s, which is what the alert is about.
        assert answers.count(500) > len(answers) / 4
        assert alert.labels["tenant"] == "demo"
        assert alert.receivers == ("page",)
    finally:
        stop.set()
        for proc in reversed(started):
            procs.stop(proc)
