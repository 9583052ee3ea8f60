"""Stored renditions vs a minimal Starlette static endpoint, side by side (interleaved runs).

    uv run python bench/service/stored_vs_static.py [--seconds 4] [--rounds 3]

Both are single uvicorn processes on loopback serving the same bytes; wrk alternates between
them so background load hits both alike. Prints each run, the best of each, the ratio and the
load average. Used for the "stored renditions" row of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyvips

HERE = Path(__file__).resolve().parent
KEY = "bench-key"
PATHS = 20


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (independent of other load on the machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    base: str, paths: list[str], seconds: int, work: Path, connections: int, pid: int
) -> tuple[float, float]:
    """(requests per second, requests per CPU-second of the server)."""
    listing = work / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = work / "paths.lua"
    script.write_text(
        "paths = {}\ncounter = 0\n"
        f'function init(args) for l in io.lines("{listing}") do table.insert(paths, l) end end\n'
        "function request() counter = counter + 1\n"
        "  return wrk.format('GET', paths[(counter % #paths) + 1]) end\n"
    )
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before
    if "Non-2xx" in out:
        raise RuntimeError(f"failed responses:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert found, out
    assert total, out
    return float(found.group(1)), int(total.group(1)) / max(cpu, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stored-bench-"))
    from image_service.tenants import hash_key

    tenants = work / "tenants.toml"
    tenants.write_text(
        f'[tenants.bench]\napi_key_sha256 = ["{hash_key(KEY)}"]\nallow_unsigned_reads = true\n'
        "requests_per_second = 1000000\n"
    )
    sp, xp = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SERVICE_")}
    service = subprocess.Popen(
        [sys.executable, "-m", "image_service"],
        env=env
        | {
            "IMAGE_SERVICE_PORT": str(sp),
            "IMAGE_SERVICE_STORAGE": str(work / "store"),
            "IMAGE_SERVICE_TENANTS_FILE": str(tenants),
            "IMAGE_SERVICE_LOG_LEVEL": "warning",
            "IMAGE_SERVICE_TRACK": "stable",
        },
        stderr=subprocess.DEVNULL,
    )
    static = None
    try:
        base = f"http://127.0.0.1:{sp}"
        wait_ready(base + "/healthz")
        image = pyvips.Image.gaussnoise(2000, 1333).cast("uchar").copy(interpretation="b-w")
        upload = httpx.post(
            base + "/v1/bench/images",
            content=bytes(image.jpegsave_buffer(Q=80)),
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        iid = upload.json()["id"]
        paths = [f"/v1/bench/images/{iid}?w={400 + i}&format=jpeg" for i in range(PATHS)]
        for path in paths:
            httpx.get(base + path, timeout=30).raise_for_status()
        cached = next((work / "store").rglob("*.img"))
        static = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "static_app:app", "--host", "127.0.0.1"),
                *("--port", str(xp), "--log-level", "warning", "--no-access-log"),
            ],
            env=env | {"STATIC_BENCH_FILE": str(cached), "PYTHONPATH": str(HERE)},
        )
        static_base = f"http://127.0.0.1:{xp}"
        wait_ready(static_base + "/static/0")
        static_paths = [f"/static/{i}" for i in range(PATHS)]
        load = os.getloadavg()[0]
        runs: dict[str, list[tuple[float, float]]] = {"stored": [], "static": []}
        for _ in range(args.rounds):
            runs["stored"].append(
                wrk(base, paths, args.seconds, work, args.connections, service.pid)
            )
            runs["static"].append(
                wrk(static_base, static_paths, args.seconds, work, args.connections, static.pid)
            )
        best = {k: max(r for r, _ in v) for k, v in runs.items()}
        per_cpu = {k: max(c for _, c in v) for k, v in runs.items()}
        for name, got in runs.items():
            rates = [round(r) for r, _ in got]
            print(f"{name:>7}: req/s {rates}, req/CPU-s {[round(c) for _, c in got]}")
        print(
            f"best: stored {best['stored']:.0f}, static {best['static']:.0f}, "
            f"ratio {best['stored'] / best['static']:.2f}; per CPU-second: stored "
            f"{per_cpu['stored']:.0f}, static {per_cpu['static']:.0f}, "
            f"ratio {per_cpu['stored'] / per_cpu['static']:.2f}; "
            f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}; "
            f"{args.connections} connections, {args.seconds} s x {args.rounds} rounds"
        )
    finally:
        for proc in (service, static):
            if proc is not None:
                proc.terminate()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
