"""Secrets (API keys, signing secrets) never appear in the service's logs or metrics.

A real server runs at debug level; the test drives every path that handles a secret (good and bad
keys, keys in the wrong place, good and bad signatures, errors, shutdown) and then greps stdout,
stderr and /metrics for every secret, and for near-misses the clients sent.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
from image_service.options import parse_options
from image_service.signing import sign
from reliability_kit import (
    ALPHA_KEY,
    ALPHA_SECRET,
    BRAVO_KEY,
    SECRETS,
    Starter,
    auth,
    record,
    seed_images,
)


def exercise(url: str) -> list[str]:
    """Every secret-handling path; returns the near-miss secrets the client sent."""
    seeds = seed_images()
    near_misses = [ALPHA_KEY + "-wrong", "Z" + BRAVO_KEY[1:], ALPHA_SECRET[::-1]]
    with httpx.Client(base_url=url, timeout=30) as client:
        up = client.post("/v1/alpha/images", content=seeds["jpeg"], headers=auth(ALPHA_KEY))
        assert up.status_code == 201
        iid = up.json()["id"]
        options, _ = parse_options([("w", "50")], 8192)
        sig = sign(ALPHA_SECRET.encode(), "alpha", iid, options)
        assert client.get(f"/v1/alpha/images/{iid}?w=50&sig={sig}").status_code == 200
        wrong_sig = sign(near_misses[2].encode(), "alpha", iid, options)
        assert client.get(f"/v1/alpha/images/{iid}?w=50&sig={wrong_sig}").status_code == 403
        for key in near_misses[:2]:
            assert (
                client.post("/v1/alpha/images", content=b"x", headers=auth(key)).status_code == 401
            )
        # Secrets in places they do not belong: query, other headers, the body, the path.
        assert client.get(f"/v1/alpha/images/{iid}?key={ALPHA_KEY}").status_code == 400
        assert client.get(f"/v1/alpha/images/{iid}?sig={ALPHA_SECRET}").status_code == 403
        # (X-Request-Id is the client's own value and is logged verbatim, by design: not here.)
        client.get("/healthz", headers={"X-Api-Key": BRAVO_KEY, "Cookie": f"k={ALPHA_KEY}"})
        client.post("/v1/alpha/images", content=ALPHA_SECRET.encode(), headers=auth(ALPHA_KEY))
        client.get(f"/v1/{ALPHA_KEY}/images/{iid}")
        client.get(f"/v1/alpha/images/{BRAVO_KEY}")
        client.delete(f"/v1/alpha/images/{iid}", headers=auth(BRAVO_KEY))
        client.post("/v1/bravo/images", content=seeds["tiff"], headers=auth(BRAVO_KEY))
        client.post("/v1/bravo/images", content=seeds["png"][:-30], headers=auth(BRAVO_KEY))
        assert client.delete(f"/v1/alpha/images/{iid}", headers=auth(ALPHA_KEY)).status_code == 204
        metrics = client.get("/metrics").text
    return [metrics, *near_misses]


def test_no_secret_in_logs_or_metrics(service: Starter, tmp_path: Path) -> None:
    proc = service("secrets", IMAGE_SERVICE_LOG_LEVEL="debug")
    metrics, *near_misses = exercise(proc.url)
    proc.process.send_signal(signal.SIGTERM)
    proc.process.wait(timeout=30)
    logs = proc.logs()
    searched = [*SECRETS, *near_misses]
    found = [s for s in searched if s in logs or s in metrics]
    record("secrets in logs", log_bytes=len(logs), secrets_searched=len(searched), found=len(found))
    assert len(logs.splitlines()) >= 15  # the logs are there: one access line per request
    assert "image_service.access" in logs
    assert found == []


def test_demo_key_is_printed_only_when_generated(service: Starter) -> None:
    """Sanity for the next test: a generated demo key must be shown once, or nobody can use it."""
    proc = service("demo", IMAGE_SERVICE_TENANTS_FILE="")
    assert re.search(r"demo tenant 'demo' has API key: \S+", proc.err.read_text())


def test_supplied_demo_key_is_not_echoed(service: Starter) -> None:
    supplied = "operator-chosen-demo-key-3b9d"
    proc = service("demo-env", IMAGE_SERVICE_TENANTS_FILE="", IMAGE_SERVICE_DEMO_KEY=supplied)
    reply = httpx.post(f"{proc.url}/v1/demo/images", content=b"x", headers=auth(supplied))
    assert reply.status_code == 415  # the key works
    assert supplied not in proc.logs()
