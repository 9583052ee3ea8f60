"""The real server: `python -m image_service` under uvicorn on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from service_testkit import TENANT_ENV, TENANTS_TOML, Images, LiveServer, image_id

Start = Callable[..., LiveServer]


def demo_key(server: LiveServer) -> str:
    match = re.search(r"API key: (\S+)", server.err_path.read_text())
    assert match, server.err_path.read_text()
    return match.group(1)


def test_no_configuration_runs_a_demo_tenant(live_server: Start, images: Images) -> None:
    server = live_server()
    key = demo_key(server)
    auth = {"Authorization": f"Bearer {key}"}
    up = httpx.post(f"{server.url}/v1/demo/images", content=images.jpeg, headers=auth)
    assert up.status_code == 201, up.text
    iid = up.json()["id"]
    assert iid == image_id(images.jpeg)
    rendition = httpx.get(f"{server.url}/v1/demo/images/{iid}?w=120&format=webp")
    assert rendition.status_code == 200
    assert rendition.headers["content-type"] == "image/webp"
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'image_service_build_info{track="stable",version="dev"' in metrics
    # One JSON access line per request, with the request fields.
    time.sleep(0.2)
    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    access = [e for e in lines if e.get("logger") == "image_service.access"]
    upload_line = next(e for e in access if e["route"] == "/v1/{tenant}/images")
    assert upload_line["tenant"] == "demo"
    assert upload_line["code"] == 201
    assert upload_line["method"] == "POST"
    assert upload_line["duration_ms"] > 0
    assert re.fullmatch(r"[0-9a-f]{32}", upload_line["request_id"])


def test_tenants_file_and_labels_from_environment(
    live_server: Start, images: Images, tmp_path: Path
) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(TENANTS_TOML)
    server = live_server(
        {
            "IMAGE_SERVICE_TENANTS_FILE": str(tenants),
            "IMAGE_SERVICE_TRACK": "baseline",
            "IMAGE_SERVICE_VERSION": "f00d",
            **TENANT_ENV,
        }
    )
    assert "API key" not in server.err_path.read_text()
    auth = {"Authorization": "Bearer beta-key-1"}
    beta = httpx.post(f"{server.url}/v1/beta/images", content=images.png, headers=auth)
    assert beta.status_code == 201
    demo = httpx.post(f"{server.url}/v1/demo/images", content=images.png, headers=auth)
    assert demo.status_code == 404
    assert 'track="baseline",version="f00d"' in httpx.get(f"{server.url}/metrics").text


def test_fault_injection_for_one_tenant(live_server: Start, tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(TENANTS_TOML)
    server = live_server(
        {
            "IMAGE_SERVICE_TENANTS_FILE": str(tenants),
            "IMAGE_SERVICE_FAULT_ERROR_RATE": "1",
            "IMAGE_SERVICE_FAULT_LATENCY_MS": "200",
            "IMAGE_SERVICE_FAULT_TENANT": "beta",
            **TENANT_ENV,
        }
    )
    started = time.monotonic()
    faulty = httpx.get(f"{server.url}/v1/beta/images/{'0' * 64}")
    assert time.monotonic() - started >= 0.2
    assert faulty.status_code == 500
    assert faulty.json()["error"] == "injected_fault"
    healthy = httpx.get(f"{server.url}/v1/acme/images/{'0' * 64}")
    assert healthy.status_code == 403  # acme is unaffected: normal signature check
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_fault_injection_refused_in_production(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "image_service"],
        env={
            "IMAGE_SERVICE_ENVIRONMENT": "prod",
            "IMAGE_SERVICE_FAULT_ERROR_RATE": "0.5",
            "IMAGE_SERVICE_STORAGE": str(tmp_path),
            "IMAGE_SERVICE_PORT": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "fault injection is refused" in result.stderr


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(live_server: Start, images: Images) -> None:
    server = live_server(
        {
            "IMAGE_SERVICE_DEMO_KEY": "k",
            "IMAGE_SERVICE_FAULT_LATENCY_MS": "2500",
            "IMAGE_SERVICE_DRAIN_SECONDS": "2",
        }
    )
    results: list[int] = []

    def call() -> None:
        reply = httpx.post(
            f"{server.url}/v1/demo/images",
            content=images.jpeg,
            headers={"Authorization": "Bearer k"},
            timeout=30,
        )
        results.append(reply.status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # all four are inside the injected latency now (margin for a loaded box)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Draining: still serving, but not ready.
    assert httpx.get(f"{server.url}/readyz").status_code == 503
    for t in threads:
        t.join(timeout=30)
    assert results == [201, 201, 201, 201]
    server.process.wait(timeout=30)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=1)


def test_a_supplied_demo_key_is_never_echoed(live_server: Start) -> None:
    server = live_server({"IMAGE_SERVICE_DEMO_KEY": "operator-secret-123"})
    reply = httpx.post(
        f"{server.url}/v1/demo/images",
        content=b"not an image",
        headers={"Authorization": "Bearer operator-secret-123"},
    )
    assert reply.status_code == 415  # the key works
    time.sleep(0.2)
    output = server.err_path.read_text() + server.log_path.read_text()
    assert "operator-secret-123" not in output
    assert "has API key: from IMAGE_SERVICE_DEMO_KEY" in output
