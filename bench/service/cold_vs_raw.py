"""Cold JPEG renders: the service over HTTP vs a raw libvips loop, side by side (interleaved).

    uv run python bench/service/cold_vs_raw.py [--seconds 4] [--rounds 2]

Workload (issue 14): 2000x1333 JPEGs -> 360-600 px JPEG q80, every request a distinct rendition.
- raw: pyvips in this process, 2 threads, no HTTP, no storage: jpegload_buffer with
  shrink-on-load, resize, jpegsave_buffer (the fastest plain libvips path, /work/shared/facts.md).
- service: `python -m image_service` (2 workers, VIPS_CONCURRENCY=1), wrk over loopback, each
  request a distinct URL (never a stored rendition), taken at its best of 2, 4 and 8
  connections with no failed response.
Each contender is warmed up, then measured once per round, A B A B, so background load hits
both alike. Prints each run, the best of each and the ratios (wall-clock, and per CPU-second of
the contender's own process, which a loaded machine distorts less), with the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stored_vs_static import KEY, cpu_seconds, free_port, wait_ready

from bench import WRK_SCRIPT, jpeg_variant, photo, service_env

VARIANTS = 60
WIDTHS = range(360, 601)
CONNECTIONS = (2, 4, 8)


def jpeg_shrink(src_w: int, out_w: int) -> int:
    """libjpeg's largest DCT scale that still leaves at least the output width."""
    return next((s for s in (8, 4, 2) if src_w // s >= out_w), 1)


def raw_rate(originals: list[bytes], seconds: float, threads: int = 2) -> tuple[float, float]:
    """(renders per second, renders per CPU-second) of a plain libvips loop on `threads`
    threads. The CPU is this process's, which does nothing else meanwhile."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def loop(slot: int) -> None:
        n = slot
        while time.monotonic() < stop:
            data = originals[n % len(originals)]
            width = WIDTHS[(n * 7) % len(WIDTHS)]
            image = pyvips.Image.jpegload_buffer(data, shrink=jpeg_shrink(2000, width))
            image.resize(width / image.width).jpegsave_buffer(Q=80)
            counts[slot] += 1
            n += threads

    started, cpu = time.monotonic(), time.process_time()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done = sum(counts)
    return done / (time.monotonic() - started), done / (time.process_time() - cpu)


class Urls:
    """Distinct rendition URLs, handed out once: no run ever meets a stored rendition."""

    def __init__(self, ids: list[str]) -> None:
        self._all = [f"/v1/bench/images/{i}?w={w}&format=jpeg" for w in WIDTHS for i in ids]
        self._next = 0

    def take(self, count: int) -> list[str]:
        chunk = self._all[self._next : self._next + count]
        if len(chunk) < count:
            raise RuntimeError("out of distinct URLs: use more variants or shorter runs")
        self._next += count
        return chunk


def wrk_rate(
    base: str, paths: list[str], seconds: int, connections: int, work: Path, pid: int
) -> tuple[float, float]:
    """(requests per second, requests per CPU-second of the server process `pid`); refuses a
    run with any failed response or socket error."""
    listing = work / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = work / "cold.lua"
    script.write_text(WRK_SCRIPT % {"file": listing, "threads": 2})
    cpu = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    cpu = cpu_seconds(pid) - cpu
    total = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert total, out
    assert rate, out
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"failed responses at {connections} connections:\n{out}")
    if int(total.group(1)) > len(paths):
        raise RuntimeError("a run wrapped around its URL list: it met stored renditions")
    return float(rate.group(1)), int(total.group(1)) / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    pyvips.cache_set_max(0)  # as the service: no operation cache
    pyvips.concurrency_set(1)
    work = Path(tempfile.mkdtemp(prefix="cold-bench-"))
    base_jpeg = bytes(photo(2000, 1333).jpegsave_buffer(Q=85))
    originals = [jpeg_variant(base_jpeg, n) for n in range(VARIANTS)]
    from image_service.tenants import hash_key

    tenants = work / "tenants.toml"
    tenants.write_text(
        f'[tenants.bench]\napi_key_sha256 = ["{hash_key(KEY)}"]\nallow_unsigned_reads = true\n'
        "requests_per_second = 1000000\nmax_stored_bytes = 100_000_000_000\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "image_service"],
        env=service_env(port, work / "store", tenants),
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/healthz")
        with httpx.Client(base_url=base, timeout=60) as client:
            ids = [
                client.post(
                    "/v1/bench/images", content=data, headers={"Authorization": f"Bearer {KEY}"}
                ).json()["id"]
                for data in originals
            ]
        urls = Urls(ids)
        per_run = 400 * args.seconds  # above the service's rate on 2 cores (checked per run)
        load = os.getloadavg()[0]
        wrk_rate(base, urls.take(800), 2, 8, work, server.pid)  # warm-up
        raw_rate(originals, 2)
        runs: dict[str, list[tuple[float, float]]] = {"raw": [], "service": []}
        for _ in range(args.rounds):
            runs["raw"].append(raw_rate(originals, args.seconds))
            by_connections = {
                c: wrk_rate(base, urls.take(per_run), args.seconds, c, work, server.pid)
                for c in CONNECTIONS
            }
            shown = {c: round(r) for c, (r, _) in by_connections.items()}
            print(f"service req/s by connections: {shown}")
            runs["service"].append(max(by_connections.values()))
        for name, got in runs.items():
            rates, per_cpu = [round(r) for r, _ in got], [round(c) for _, c in got]
            print(f"{name:>8}: per second {rates}, per CPU-second {per_cpu}")
        best = {name: max(r for r, _ in got) for name, got in runs.items()}
        cpu = {name: max(c for _, c in got) for name, got in runs.items()}
        print(
            f"best: service {best['service']:.0f} req/s, raw libvips {best['raw']:.0f} img/s, "
            f"ratio {best['service'] / best['raw']:.2f}; per CPU-second: service "
            f"{cpu['service']:.1f}, raw {cpu['raw']:.1f}, ratio {cpu['service'] / cpu['raw']:.2f}; "
            f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}; "
            f"{args.seconds} s x {args.rounds} rounds"
        )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
