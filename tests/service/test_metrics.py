"""The metric names and labels are a contract (docs/architecture.md); promtool checks them."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_testkit import App, Images

CONTRACT = {
    "image_service_http_requests_total": {"tenant", "route", "method", "code"},
    "image_service_http_request_duration_seconds_bucket": {"tenant", "route", "method", "le"},
    "image_service_transform_duration_seconds_bucket": {"format", "le"},
    "image_service_bytes_received_total": {"tenant"},
    "image_service_bytes_sent_total": {"tenant"},
    "image_service_rendition_cache_total": {"tenant", "result"},
    "image_service_inflight_requests": set(),
    "image_service_transform_queue_depth": set(),
    "image_service_transform_workers": set(),
    "image_service_storage_errors_total": {"backend", "operation"},
    "image_service_vips_memory_bytes": set(),
    "image_service_build_info": {"vips_version"},
    "image_service_transform_queue_seconds_bucket": {"tenant", "le"},
    "image_service_process_resident_memory_bytes": set(),
    "image_service_process_cpu_seconds_total": set(),
}


def exercise(app: App, images: Images) -> str:
    iid = app.upload(images.png, tenant="beta", key="beta-key-1").json()["id"]
    app.client.get(f"/v1/beta/images/{iid}?w=20")
    app.client.get(f"/v1/beta/images/{iid}?w=20")
    app.client.get("/v1/nobody/images/x")
    app.service.metrics.storage_errors.labels(
        **app.service.metrics.base, backend="local", operation="put"
    ).inc(0)
    return str(app.client.get("/metrics").text)


def test_every_contract_series_has_its_labels(app: App, images: Images) -> None:
    text = exercise(app, images)
    seen: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels["track"] == "canary", sample
            assert sample.labels["version"] == "abc123", sample
            seen.setdefault(sample.name, set(sample.labels) - {"track", "version"})
    for name, labels in CONTRACT.items():
        assert name in seen, f"{name} missing"
        assert seen[name] == labels, name
    assert 'route="/v1/{tenant}/images/{image_id}"' in text
    assert 'tenant="unknown"' in text


def test_counts_and_bytes(app: App, images: Images) -> None:
    text = exercise(app, images)
    base = 'track="canary",version="abc123"'
    received = float(len(images.png))
    assert f'image_service_bytes_received_total{{tenant="beta",{base}}} {received}' in text
    assert 'code="201",method="POST",route="/v1/{tenant}/images",tenant="beta"' in text
    assert 'code="404",method="GET",route="/v1/{tenant}/images/{image_id}",tenant="unknown"' in text
    assert f"image_service_transform_workers{{{base}}} 2.0" in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by make setup")
def test_promtool_accepts_the_exposition(app: App, images: Images) -> None:
    text = exercise(app, images)
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_vips_memory_gauge_reads_libvips(app: App) -> None:
    import pyvips

    held = pyvips.Image.black(1000, 1000).copy_memory()
    text = app.client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    value = families["image_service_vips_memory_bytes"].samples[0].value
    assert value >= 1_000_000
    del held


def sample(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels.get("track") == "canary":
                return float(s.value)
    raise AssertionError(f"{name} not exported")


def test_process_memory_and_cpu_follow_the_process(app: App, images: Images) -> None:
    import time

    before = app.client.get("/metrics").text
    rss = sample(before, "image_service_process_resident_memory_bytes")
    ballast = bytearray(b"x" * (64 * 2**20))  # 64 MiB, touched, so resident
    grown = sample(app.client.get("/metrics").text, "image_service_process_resident_memory_bytes")
    assert 60 * 2**20 <= grown - rss <= 80 * 2**20
    del ballast
    cpu_before = sample(before, "image_service_process_cpu_seconds_total")
    started = time.process_time()
    exercise(app, images)
    sum(i * i for i in range(3_000_000))  # burn some CPU in this process
    spent = time.process_time() - started
    cpu_after = sample(app.client.get("/metrics").text, "image_service_process_cpu_seconds_total")
    assert cpu_after - cpu_before >= 0.8 * spent
