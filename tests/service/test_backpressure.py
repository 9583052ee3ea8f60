"""Bounded worker pool: the queue fills, 503 + Retry-After arrive, then the service recovers."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from image_service.errors import DomainError
from image_service.transform import render
from image_service.workers import WorkerPool
from service_testkit import BETA_KEY, AppFactory, Images


def test_pool_rejects_past_the_queue_then_recovers() -> None:
    gate = threading.Event()
    depths: list[int] = []

    async def scenario() -> None:
        pool = WorkerPool(workers=1, queue_size=1, on_change=depths.append)
        running = asyncio.ensure_future(pool.run("acme", gate.wait, 10))
        queued = asyncio.ensure_future(pool.run("acme", gate.wait, 10))
        await asyncio.sleep(0.05)
        assert pool.queue_depth == 1
        with pytest.raises(DomainError) as refused:
            await pool.run("acme", gate.wait, 10)
        assert refused.value.code == "tenant_overloaded"
        assert refused.value.retry_after == 1
        gate.set()
        assert await running is True
        assert await queued is True
        await asyncio.sleep(0.05)
        assert pool.queue_depth == 0
        assert await pool.run("acme", lambda: 42) == 42
        pool.shutdown()

    asyncio.run(scenario())
    assert max(depths) == 1
    assert depths[-1] == 0


def test_http_backpressure(make_app: AppFactory, images: Images) -> None:
    gate = threading.Event()

    def slow_render(*args: Any) -> Any:
        gate.wait(10)
        return render(*args)

    app = make_app(workers=1, queue_size=1, render=slow_render)
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    replies: dict[int, httpx.Response] = {}

    def get(width: int) -> None:
        replies[width] = app.client.get(f"/v1/beta/images/{iid}?w={width}")

    threads = [threading.Thread(target=get, args=(w,)) for w in (10, 11)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while app.service.pool.queue_depth < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics = app.client.get("/metrics").text
    assert 'image_service_transform_queue_depth{track="canary",version="abc123"} 1.0' in metrics
    assert 'image_service_inflight_requests{track="canary",version="abc123"} 3.0' in metrics
    overloaded = app.client.get(f"/v1/beta/images/{iid}?w=12")
    assert overloaded.status_code == 503
    assert overloaded.json()["error"] in {"overloaded", "tenant_overloaded"}
    assert overloaded.headers["retry-after"] == "1"
    gate.set()
    for t in threads:
        t.join(10)
    assert [replies[w].status_code for w in (10, 11)] == [200, 200]
    assert app.client.get(f"/v1/beta/images/{iid}?w=12").status_code == 200
    assert app.service.pool.queue_depth == 0


def test_concurrent_misses_share_one_render(make_app: AppFactory, images: Images) -> None:
    gate = threading.Event()
    calls: list[int] = []

    def counted_render(*args: Any) -> Any:
        calls.append(1)
        gate.wait(10)
        return render(*args)

    app = make_app(workers=2, queue_size=4, render=counted_render)
    iid = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    replies: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=lambda: replies.append(app.client.get(f"/v1/beta/images/{iid}?w=30"))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert [r.status_code for r in replies] == [200] * 4
    assert len({r.content for r in replies}) == 1
    assert len(calls) == 1


def test_concurrent_uploads_are_bounded(make_app: AppFactory, images: Images) -> None:
    from image_service.transform import probe

    gate = threading.Event()

    def slow_probe(*args: Any) -> Any:
        gate.wait(10)
        return probe(*args)

    app = make_app(workers=1, queue_size=1, probe=slow_probe)
    replies: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: replies.append(app.upload(images.png))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while app.service.uploads.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = app.upload(images.jpeg)
    assert refused.status_code == 503
    assert refused.json()["error"] == "tenant_overloaded"
    assert refused.headers["retry-after"] == "1"
    gate.set()
    for t in threads:
        t.join(10)
    assert [r.status_code for r in replies] == [201, 201]
    assert app.service.uploads.in_flight == 0
    assert app.upload(images.jpeg).status_code == 201
