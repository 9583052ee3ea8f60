"""Fit the harness' lognormal latency to the real image service's latency histogram.

Starts `python -m image_service` on a free 127.0.0.1 port with a throw-away storage directory,
uploads one photo-sized JPEG, sends a bounded mix of rendition requests (widths x formats, so
that both first renditions and stored ones are served), reads
image_service_http_request_duration_seconds from /metrics and fits a lognormal to the bucket
counts by maximum likelihood for interval-censored data. Prints JSON; always stops the service.

    uv run python bench/judge/fit_latency.py [--mix renditions|stored] [--requests 1500]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from image_contracts.metrics import REQUEST_DURATION
from prometheus_client.parser import text_string_to_metric_families
from scipy import optimize, stats

KEY = "fit-latency-demo-key-0123456789abcdef"
WIDTHS = (160, 240, 320, 480, 640, 800, 1024)
FORMATS = ("jpeg", "webp")
METRIC = REQUEST_DURATION


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def photo_jpeg() -> bytes:
    """A 1600x1067 JPEG with photo-like detail (smooth gradients plus noise)."""
    import pyvips

    gradient = pyvips.Image.xyz(1600, 1067)[0] * (255 / 1600)
    noise = pyvips.Image.gaussnoise(1600, 1067, sigma=24, mean=0)
    bands = [(gradient + noise), (gradient * 0.5 + noise + 60), (noise + 128)]
    image = bands[0].bandjoin(bands[1:]).cast("uchar")
    return bytes(image.jpegsave_buffer(Q=85))


def query(mix: str, rng: random.Random) -> str:
    if mix == "stored":
        return f"w={rng.choice(WIDTHS)}&format={rng.choice(FORMATS)}"
    # Random width and quality: practically every request is a rendition not made before.
    return f"w={rng.randint(100, 1600)}&q={rng.randint(60, 90)}&format={rng.choice(FORMATS)}"


def wait_ready(base: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("image service did not become ready")


def buckets(base: str) -> tuple[list[float], list[float]]:
    """Non-cumulative GET request counts per bucket (the last is +Inf), summed over series."""
    text = httpx.get(f"{base}/metrics", timeout=5.0).text
    cumulative: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("method") == "GET":
                le = float(sample.labels["le"])
                cumulative[le] = cumulative.get(le, 0.0) + sample.value
    edges = sorted(cumulative)
    counts = np.diff([0.0, *[cumulative[e] for e in edges]])
    return [e for e in edges if math.isfinite(e)], counts.tolist()


def fit(bounds: list[float], counts: list[float]) -> tuple[float, float]:
    logs = np.log(np.asarray(bounds))
    c = np.asarray(counts)

    def nll(params: np.ndarray) -> float:
        mu, log_sigma = params
        cdf = stats.norm.cdf((logs - mu) / math.exp(log_sigma))
        p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        return float(-(c * np.log(np.maximum(p, 1e-300))).sum())

    result = optimize.minimize(nll, x0=[math.log(0.02), math.log(0.5)], method="Nelder-Mead")
    mu, log_sigma = result.x
    return math.exp(mu), math.exp(log_sigma)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--rate", type=float, default=50.0, help="req/s, under the tenant limit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--mix",
        choices=("renditions", "stored"),
        default="renditions",
        help="renditions: every request a new rendition (what a CDN-fronted service sees); "
        "stored: a few renditions, requested again and again (the local traffic generator)",
    )
    args = parser.parse_args()
    if not 10 <= args.requests <= 100_000:
        parser.error("--requests must be in [10, 100000]")
    if not 0 < args.rate <= 90:
        parser.error("--rate must be in (0, 90]: the demo tenant allows 100 req/s")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as storage:
        env = {
            **os.environ,
            "IMAGE_SERVICE_HOST": "127.0.0.1",
            "IMAGE_SERVICE_PORT": str(port),
            "IMAGE_SERVICE_DEMO_KEY": KEY,
            "IMAGE_SERVICE_STORAGE": str(Path(storage) / "store"),
            "IMAGE_SERVICE_TRACK": "baseline",
            "IMAGE_SERVICE_VERSION": "fit-latency",
            "IMAGE_SERVICE_LOG_LEVEL": "warning",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "image_service"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(base, time.monotonic() + 30)
            reply = httpx.post(
                f"{base}/v1/demo/images",
                content=photo_jpeg(),
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30.0,
            )
            reply.raise_for_status()
            image = reply.json()["id"]
            rng = random.Random(args.seed)  # noqa: S311 - a workload, not a secret
            urls = [
                f"{base}/v1/demo/images/{image}?{query(args.mix, rng)}"
                for _ in range(args.requests)
            ]
            start = time.monotonic()
            deadline = start + args.seconds
            with httpx.Client(timeout=30.0) as client:

                def get(item: tuple[int, str]) -> int:
                    index, url = item
                    # Open-loop pacing: request i leaves at start + i / rate.
                    delay = start + index / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if time.monotonic() > deadline:
                        return 0
                    return client.get(url).status_code

                with ThreadPoolExecutor(max_workers=4) as pool:
                    codes = list(pool.map(get, enumerate(urls)))
            bounds, counts = buckets(base)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    median, sigma = fit(bounds, counts)
    print(
        json.dumps(
            {
                "mix": args.mix,
                "requests_sent": sum(1 for c in codes if c),
                "status_codes": {str(c): codes.count(c) for c in sorted(set(codes)) if c},
                "bounds": bounds,
                "counts": counts,
                "lognormal_median_seconds": round(median, 5),
                "lognormal_sigma": round(sigma, 4),
                "p99_seconds": round(median * math.exp(sigma * 2.3263), 5),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
