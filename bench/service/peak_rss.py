"""Peak RSS of a real service process under a bounded load of cold 6000x4000 JPEG renders.

    uv run python bench/service/peak_rss.py [--renders 40] [--concurrency 4] [--env K=V ...]

Starts `python -m image_service` (2 workers), uploads distinct 6000x4000 JPEGs, resets the
peak (VmHWM) after the uploads, then renders each to a distinct 500 px width over HTTP with a
fixed number of requests in flight. Reports idle RSS, peak RSS, RSS after the load and the
server's CPU-seconds per render, with the load average. Extra --env settings (for example
MALLOC_ARENA_MAX=2 or VIPS_CONCURRENCY=2) go to the server, so variants compare side by side.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stored_vs_static import KEY, cpu_seconds, free_port, wait_ready

from bench import jpeg_variant, photo


def status_kb(pid: int, field: str) -> int:
    found = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert found, field
    return int(found.group(1))


def measure(big: bytes, renders: int, concurrency: int, extra: dict[str, str]) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="rss-bench-"))
    from image_service.tenants import hash_key

    tenants = work / "tenants.toml"
    tenants.write_text(
        f'[tenants.bench]\napi_key_sha256 = ["{hash_key(KEY)}"]\nallow_unsigned_reads = true\n'
        "requests_per_second = 1000000\nmax_upload_bytes = 50_000_000\n"
        "max_stored_bytes = 10_000_000_000\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SERVICE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "image_service"],
        env=env
        | {
            "IMAGE_SERVICE_PORT": str(port),
            "IMAGE_SERVICE_STORAGE": str(work / "store"),
            "IMAGE_SERVICE_TENANTS_FILE": str(tenants),
            "IMAGE_SERVICE_LOG_LEVEL": "warning",
            "IMAGE_SERVICE_WORKERS": "2",
            "IMAGE_SERVICE_MAX_UPLOAD_BYTES": "50000000",
        }
        | extra,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/healthz")
        idle = status_kb(server.pid, "VmRSS")
        ids = []
        with httpx.Client(base_url=base, timeout=120) as client:
            for n in range(4):
                reply = client.post(
                    "/v1/bench/images",
                    content=jpeg_variant(big, n),
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                reply.raise_for_status()
                ids.append(reply.json()["id"])
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # resets VmHWM
        cpu0 = cpu_seconds(server.pid)
        paths = [f"/v1/bench/images/{ids[i % 4]}?w={500 - i}&format=jpeg" for i in range(renders)]

        def get(path: str) -> int:
            return httpx.get(base + path, timeout=120).status_code

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(get, paths))
        assert set(codes) == {200}, codes
        return {
            "idle": idle / 1024,
            "peak": status_kb(server.pid, "VmHWM") / 1024,
            "after": status_kb(server.pid, "VmRSS") / 1024,
            "cpu_ms": (cpu_seconds(server.pid) - cpu0) / renders * 1000,
        }
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renders", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], help="K=V for one variant")
    args = parser.parse_args()
    big = bytes(photo(6000, 4000, seed=7).jpegsave_buffer(Q=85))
    variants = [{}, dict(item.split("=", 1) for item in args.env)] if args.env else [{}]
    for _ in range(args.rounds):  # A B A B: background load hits every variant alike
        for extra in variants:
            got = measure(big, args.renders, args.concurrency, extra)
            print(
                f"{extra or 'default'}: idle {got['idle']:.0f} MB, peak {got['peak']:.0f} MB, "
                f"after {got['after']:.0f} MB, {got['cpu_ms']:.0f} CPU-ms/render; "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
