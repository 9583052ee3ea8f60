"""A bounded synthetic traffic generator for the local environment: a multi-tenant mix of every
route through the gateway (stored and cold renders, conditional reads, uploads, deletes),
loopback only, at a fixed total rate, for at most `max_seconds`. Reads are signed or unsigned:
each local tenant has a signing secret and still allows unsigned reads.

It gives the judge its samples and the end-to-end tests their "what did users see" figures: every
second it rewrites a JSON file with response counts per tenant and status code.

Run as `python -m delivery.traffic --gateway http://127.0.0.1:PORT --tenants FILE --stats FILE`.
"""

import argparse
import json
import random
import secrets
import signal
import struct
import sys
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx
from image_contracts.renditions import SIGNATURE_PARAM, signature

WIDTHS = (16, 24, 32, 48, 64)
WORKERS = 8


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
    """Response counts per tenant and code, plus the seed images they were read from.

    A restarted generator continues the previous file: the counts only grow, so "what users saw
    between two moments" is a difference of two reads, across restarts too, and it reuses the seed
    images instead of uploading new ones (a tenant at its quota must not stop the generator).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.counts: dict[str, dict[str, int]] = {}
        self.seeds: dict[str, str] = {}
        self.started = time.time()
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # no usable previous file: start from zero
        counts, seeds = doc.get("counts"), doc.get("seeds")
        if isinstance(counts, dict):
            self.counts = {
                str(t): {str(c): int(n) for c, n in per.items() if isinstance(n, int)}
                for t, per in counts.items()
                if isinstance(per, dict)
            }
        if isinstance(seeds, dict):
            self.seeds = {str(t): str(i) for t, i in seeds.items()}

    def add(self, tenant: str, code: str) -> None:
        with self.lock:
            per = self.counts.setdefault(tenant, {})
            per[code] = per.get(code, 0) + 1

    def flush(self) -> None:
        with self.lock:
            doc = {
                "started": self.started,
                "updated": time.time(),
                "counts": self.counts,
                "seeds": self.seeds,
            }
            text = json.dumps(doc)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit(f"traffic: refusing non-loopback gateway {url!r}")


def upload(
    client: httpx.Client, gateway: str, tenant: str, key: str, deadline: float
) -> str | None:
    """A seed image for `tenant`, retried until `deadline`; None (with the reason on stderr) if
    the gateway never accepts one, so one refusing tenant does not stop the others' traffic."""
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
    print(f"traffic: no seed image for {tenant}, its reads are skipped: {last}", file=sys.stderr)
    return None


def seed_images(
    client: httpx.Client,
    gateway: str,
    tenants: Sequence[Mapping[str, str]],
    known: Mapping[str, str],
    patience: float = 60.0,
) -> dict[str, str]:
    """One readable image per tenant: a previous run's seed if it still reads, else a new one."""
    deadline = time.monotonic() + patience
    images: dict[str, str] = {}
    for tenant in tenants:
        tid, key = tenant["id"], tenant["key"]
        previous = known.get(tid)
        if previous is not None:
            try:
                reply = client.get(f"{gateway}/v1/{tid}/images/{previous}?w={WIDTHS[0]}")
                if reply.status_code == 200:
                    images[tid] = previous
                    continue
            except httpx.HTTPError:
                pass
        fresh = upload(client, gateway, tid, key, deadline)
        if fresh is not None:
            images[tid] = fresh
    return images


# The mix, in shares of all requests: every route users take, write paths included.
MIX = (
    ("read", 0.62),  # a stored rendition at a common width
    ("cold", 0.12),  # options never asked before in this run: a fresh render
    ("conditional", 0.10),  # If-None-Match with the ETag an earlier read gave
    ("upload", 0.10),  # a new image, distinct bytes every time
    ("delete", 0.06),  # one of this worker's own uploads
)
# Non-default fits only: the canonical (signable) spelling omits a default, and the plain reads
# below already use the default fit.
FITS = ("cover", "contain", "fill", "outside")
SIGNED_SHARE = 0.5
FORMATS = ("jpeg", "png", "webp")


@dataclass(frozen=True)
class Plan:
    """One request to send, decided before anything is sent (pure)."""

    kind: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body_seed: int | None = None  # an upload's image variant


def choose(
    rng: random.Random,
    tenant: str,
    key: str,
    image: str,
    own: Sequence[str],
    etags: Mapping[str, str],
    secret: bytes | None = None,
) -> Plan:
    """What to send next. `rng` is seeded per run, so cold renders ask for renditions no
    earlier run stored; a delete needs an upload of ours first. With the tenant's signing
    secret, about half the reads are signed URLs, as a tenant's own pages would link them."""
    kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
    auth = (("Authorization", f"Bearer {key}"),)
    if kind == "delete" and not own:
        kind = "upload"
    if kind == "conditional" and not etags:
        kind = "read"
    if kind == "upload":
        return Plan(kind, "POST", f"/v1/{tenant}/images", auth, rng.randrange(1 << 30))
    if kind == "delete":
        return Plan(kind, "DELETE", f"/v1/{tenant}/images/{rng.choice(own)}", auth)
    if kind == "conditional":
        path = rng.choice(sorted(etags))
        return Plan(kind, "GET", path, (("If-None-Match", etags[path]),))
    if kind == "cold":
        width = 8 + rng.randrange(393)
        height = 8 + rng.randrange(393)
        query = f"w={width}&h={height}&fit={rng.choice(FITS)}&format={rng.choice(FORMATS)}"
    else:
        query = f"w={rng.choice(WIDTHS)}"
    # Queries are built in the contract's canonical order, so they can be signed as they are.
    if secret is not None and rng.random() < SIGNED_SHARE:
        query = f"{query}&{SIGNATURE_PARAM}={signature(secret, tenant, image, query)}"
    return Plan(kind, "GET", f"/v1/{tenant}/images/{image}?{query}")


def variant_png(seed: int) -> bytes:
    """A small PNG whose bytes depend on `seed`: every upload is a new image."""
    rng = random.Random(seed)  # noqa: S311 - image content, not a secret
    # Never 96x64, the seed's size: an identical upload is the seed (content-addressed ids),
    # and deleting it would leave the tenant's reads with nothing to read.
    return tiny_png(rng.randint(24, 95), rng.randint(24, 96))


def worker(
    gateway: str,
    images: dict[str, str],
    keys: Mapping[str, str],
    signing: Mapping[str, bytes],
    rate: float,
    stop: threading.Event,
    stats: Stats,
    seed: int,
) -> None:
    rng = random.Random(seed)  # noqa: S311 - a traffic mix, not a secret
    tenants = sorted(images)
    own: dict[str, list[str]] = {t: [] for t in tenants}
    etags: dict[str, dict[str, str]] = {t: {} for t in tenants}
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
            plan = choose(
                rng,
                tenant,
                keys[tenant],
                images[tenant],
                own[tenant],
                etags[tenant],
                signing.get(tenant),
            )
            send(client, gateway, tenant, plan, stats, own, etags)


def send(
    client: httpx.Client,
    gateway: str,
    tenant: str,
    plan: Plan,
    stats: Stats,
    own: dict[str, list[str]],
    etags: dict[str, dict[str, str]],
) -> None:
    """Send one planned request and count its answer. Never raises: a worker thread that died on
    one odd answer would freeze the counts while the process still looks alive."""
    headers = dict(plan.headers)
    body = None
    if plan.body_seed is not None:
        body = variant_png(plan.body_seed)
        headers["Content-Type"] = "image/png"
    try:
        resp = client.request(plan.method, gateway + plan.path, headers=headers, content=body)
    except httpx.HTTPError:
        stats.add(tenant, "transport_error")
        return
    except Exception as exc:  # counted and reported: the worker goes on
        stats.add(tenant, "client_error")
        print(f"traffic: {plan.method} {plan.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    stats.add(tenant, str(resp.status_code))
    try:
        if plan.kind == "upload" and resp.status_code in {200, 201}:
            own[tenant] = [*own[tenant][-20:], str(resp.json()["id"])]
        elif plan.kind == "delete":
            own[tenant] = [i for i in own[tenant] if not plan.path.endswith(i)]
        elif plan.kind == "read" and "etag" in resp.headers:
            etags[tenant][plan.path] = resp.headers["etag"]
    except (ValueError, KeyError, TypeError) as exc:  # an answer not shaped as documented
        print(f"traffic: {plan.method} {plan.path}: unexpected answer: {exc!r}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.traffic", description=__doc__)
    parser.add_argument("--gateway", required=True, help="http://127.0.0.1:PORT (loopback only)")
    parser.add_argument("--tenants", required=True, type=Path, help="JSON [{id, key}]")
    parser.add_argument("--stats", required=True, type=Path, help="JSON file rewritten every 1s")
    parser.add_argument("--rps", type=float, default=40.0, help="total requests/second (<=500)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--seed", type=int, help="the mix's seed (default: fresh every run)")
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
    stats = Stats(args.stats)
    with httpx.Client(timeout=10.0) as client:
        images = seed_images(client, args.gateway, tenants, stats.seeds)
    if not images:
        raise SystemExit("traffic: no tenant accepted a seed image; see the reasons above")
    stats.seeds = images
    keys = {t["id"]: t["key"] for t in tenants}
    signing = {t["id"]: t["secret"].encode() for t in tenants if t.get("secret")}
    # A fresh seed per run: cold renders ask for options no earlier run has stored.
    run_seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(f"traffic: seed {run_seed}", flush=True)
    workers = [
        threading.Thread(
            target=worker,
            args=(
                args.gateway,
                images,
                keys,
                signing,
                args.rps / WORKERS,
                stop,
                stats,
                run_seed + n,
            ),
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
        elif not any(thread.is_alive() for thread in workers):
            # Exit, so the environment's `up` starts a fresh generator instead of trusting this one.
            print("traffic: every worker stopped; exiting", file=sys.stderr)
            return 1
    for thread in workers:
        thread.join(timeout=15)
    stats.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
