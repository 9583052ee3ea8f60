"""Fair share: one tenant's flood fills only its own share of the workers and the queue.

Renders are made slow (a fixed extra time in the worker), so the test controls the pressure;
the bound on the other tenant's latency comes from that time, not from the scheduler's numbers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from image_service.options import RenditionOptions
from image_service.signing import signed_url
from image_service.transform import render
from service_testkit import ACME_SECRETS, BETA_KEY, AppFactory, Images

RENDER_SECONDS = 0.25


def slow_render(*args: Any) -> Any:
    time.sleep(RENDER_SECONDS)
    return render(*args)


def test_a_flood_from_one_tenant_does_not_starve_another(
    make_app: AppFactory, images: Images
) -> None:
    app = make_app(workers=2, queue_size=4, render=slow_render)
    acme_id = app.upload(images.png).json()["id"]
    beta_id = app.upload(images.png, tenant="beta", key=BETA_KEY).json()["id"]
    flood: list[httpx.Response] = []
    stop = threading.Event()

    def flooder(worker: int) -> None:
        width = 1 + worker
        while not stop.is_set():
            options = RenditionOptions(width=width)
            width += 16
            url = signed_url("", ACME_SECRETS[0], "acme", acme_id, options)
            flood.append(app.client.get(url))

    threads = [threading.Thread(target=flooder, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    queued_before = beta_queue_count(app.client.get("/metrics").text)
    try:
        time.sleep(2 * RENDER_SECONDS)  # the flood has filled everything it may
        latencies = []
        statuses = []
        for i in range(8):
            started = time.perf_counter()
            reply = app.client.get(f"/v1/beta/images/{beta_id}?w={200 + i}")
            latencies.append(time.perf_counter() - started)
            statuses.append(reply.status_code)
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert statuses == [200] * 8
    # Beta waits at most for one running render to finish, then has its own: two render
    # times, plus generous slack for a shared 2-core machine (the flood's threads run too).
    assert max(latencies) < 4 * RENDER_SECONDS + 2.0, latencies
    refused = [r for r in flood if r.status_code != 200]
    assert refused, "the flood was never limited"
    assert {r.status_code for r in refused} <= {429, 503}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert any(r.status_code == 200 for r in flood)
    # Every beta render reported its queue time under beta's own label.
    assert beta_queue_count(app.client.get("/metrics").text) - queued_before == 8


def beta_queue_count(text: str) -> float:
    for line in text.splitlines():
        if (
            line.startswith("image_service_transform_queue_seconds_count")
            and 'tenant="beta"' in line
        ):
            return float(line.split()[-1])
    return 0.0
