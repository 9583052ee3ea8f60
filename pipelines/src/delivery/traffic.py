"""A bounded synthetic traffic generator for the local environment: a multi-tenant mix of image
reads through the gateway, loopback only, at a fixed total rate, for at most `max_seconds`.

It gives the judge its samples and the end-to-end tests their "what did users see" figures: every
second it rewrites a JSON file with response counts per tenant and status code.

Run as `python -m delivery.traffic --gateway http://127.0.0.1:PORT --tenants FILE --stats FILE`.
"""

import argparse
import json
import random
import signal
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx

WIDTHS = (16, 24, 32, 48, 64)
WORKERS = 8
MISS_SHARE = 0.05


def tiny_png(width: int = 96, height: int = 64) -> bytes:
    """A small gradient PNG, built by hand so the generator needs no imaging library."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Stats:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.counts: dict[str, dict[str, int]] = {}
        self.started = time.time()

    def add(self, tenant: str, code: str) -> None:
        with self.lock:
            per = self.counts.setdefault(tenant, {})
            per[code] = per.get(code, 0) + 1

    def flush(self) -> None:
        with self.lock:
            doc = {"started": self.started, "updated": time.time(), "counts": self.counts}
            text = json.dumps(doc)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit(f"traffic: refusing non-loopback gateway {url!r}")


def upload(client: httpx.Client, gateway: str, tenant: str, key: str, deadline: float) -> str:
    body = tiny_png()
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = client.post(
                f"{gateway}/v1/{tenant}/images",
                content=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png"},
            )
            if resp.status_code in {200, 201}:
                return str(resp.json()["id"])
            last = f"{resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SystemExit(f"traffic: could not upload a seed image for {tenant}: {last}")


def worker(
    gateway: str,
    images: dict[str, str],
    rate: float,
    stop: threading.Event,
    stats: Stats,
    seed: int,
) -> None:
    rng = random.Random(seed)  # noqa: S311 - a traffic mix, not a secret
    tenants = sorted(images)
    period = 1.0 / rate
    next_at = time.monotonic() + rng.random() * period
    with httpx.Client(timeout=10.0) as client:
        while not stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            # Open loop: keep the schedule even when responses are slow (bounded catch-up).
            next_at = max(next_at + period, time.monotonic() - 1.0)
            tenant = rng.choice(tenants)
            # Mostly cached renditions, plus a trickle of new sizes so transforms keep happening.
            width = rng.choice(WIDTHS) if rng.random() > MISS_SHARE else rng.randint(8, 400)
            url = f"{gateway}/v1/{tenant}/images/{images[tenant]}?w={width}"
            try:
                code = str(client.get(url).status_code)
            except httpx.HTTPError:
                code = "transport_error"
            stats.add(tenant, code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.traffic", description=__doc__)
    parser.add_argument("--gateway", required=True, help="http://127.0.0.1:PORT (loopback only)")
    parser.add_argument("--tenants", required=True, type=Path, help="JSON [{id, key}]")
    parser.add_argument("--stats", required=True, type=Path, help="JSON file rewritten every 1s")
    parser.add_argument("--rps", type=float, default=40.0, help="total requests/second (<=500)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long")
    args = parser.parse_args(argv)
    check_loopback(args.gateway)
    if not 0 < args.rps <= 500:
        parser.error("--rps must be in (0, 500]")
    if not 0 < args.max_seconds <= 86400:
        parser.error("--max-seconds must be in (0, 86400]")
    tenants = json.loads(args.tenants.read_text())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with httpx.Client(timeout=10.0) as client:
        deadline = time.monotonic() + 60
        images = {
            t["id"]: upload(client, args.gateway, t["id"], t["key"], deadline) for t in tenants
        }
    stats = Stats(args.stats)
    workers = [
        threading.Thread(
            target=worker,
            args=(args.gateway, images, args.rps / WORKERS, stop, stats, n),
            daemon=True,
        )
        for n in range(WORKERS)
    ]
    for thread in workers:
        thread.start()
    end = time.monotonic() + args.max_seconds
    while not stop.wait(1.0):
        stats.flush()
        if time.monotonic() >= end:
            stop.set()
    for thread in workers:
        thread.join(timeout=15)
    stats.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
