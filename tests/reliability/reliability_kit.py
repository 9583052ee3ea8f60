"""Helpers for the reliability matrix (conftest puts this folder on sys.path; the name is unique).

The service is a black box here: it is driven in-process through its ASGI app or as real
`python -m image_service` processes on 127.0.0.1. Figures go to a JSON file so the benchmark
(bench/reliability/run.sh) can print them; `RELIABILITY_SCALE` makes every run longer.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pyvips
from image_service.app import create_app
from image_service.build import build_service
from image_service.config import Settings
from image_service.local_storage import LocalStorage
from image_service.tenants import hash_key, parse_tenants, resolve_secret_ref
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork for its TestClient; httpx works the same here.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

# Distinctive values, so a grep over logs cannot match anything by accident.
ALPHA_KEY = "alpha-api-key-7f3c9e1d2b"
BRAVO_KEY = "bravo-api-key-41aa08c6e5"
ALPHA_SECRET = "alpha-signing-secret-d8e2f01b"
BRAVO_SECRET = "bravo-signing-secret-5c77a3e9"
SECRET_ENV = {"ALPHA_SIGNING": ALPHA_SECRET, "BRAVO_SIGNING": BRAVO_SECRET}
SECRETS = (ALPHA_KEY, BRAVO_KEY, ALPHA_SECRET, BRAVO_SECRET)
FORMATS = ["jpeg", "png", "webp", "gif", "avif"]
TENANTS_TOML = f"""
[tenants.alpha]
api_key_sha256 = ["{hash_key(ALPHA_KEY)}"]
signing_secrets = ["env:ALPHA_SIGNING"]
allow_unsigned_reads = false
allowed_formats = {FORMATS!r}
requests_per_second = 100000

[tenants.bravo]
api_key_sha256 = ["{hash_key(BRAVO_KEY)}"]
signing_secrets = ["env:BRAVO_SIGNING"]
allow_unsigned_reads = true
allowed_formats = {FORMATS!r}
requests_per_second = 100000
"""


def scale() -> float:
    """1 in CI; the benchmark sets RELIABILITY_SCALE to run the long versions."""
    return float(os.environ.get("RELIABILITY_SCALE", "1"))


def record(name: str, **figures: object) -> None:
    """Print a figure and, when RELIABILITY_FIGURES names a file, append it as a JSON line."""
    line = json.dumps({"promise": name, **figures}, sort_keys=True)
    print(f"[figure] {line}")
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        with Path(target).open("a") as handle:
            handle.write(line + "\n")


def image_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def textured(width: int, height: int) -> pyvips.Image:
    """An RGB image with real texture, so every encoder does real work."""
    noise = pyvips.Image.gaussnoise(width, height, mean=128, sigma=40)
    grad = pyvips.Image.xyz(width, height)[0] * (255 / max(1, width))
    return (
        noise.bandjoin([grad, noise.flip("horizontal")]).cast("uchar").copy(interpretation="srgb")
    )


def seed_images(width: int = 96, height: int = 64) -> dict[str, bytes]:
    """One small real image per format the fuzzer mutates (TIFF is not accepted: a 415 case)."""
    rgb = textured(width, height)
    return {
        "jpeg": bytes(rgb.jpegsave_buffer(Q=80)),
        "png": bytes(rgb.pngsave_buffer()),
        "webp": bytes(rgb.webpsave_buffer(Q=75)),
        "gif": bytes(rgb.gifsave_buffer()),
        "avif": bytes(rgb.heifsave_buffer(compression="av1", Q=50, effort=0)),
        "tiff": bytes(rgb.tiffsave_buffer()),
    }


def write_tenants(directory: Path) -> Path:
    path = directory / "tenants.toml"
    path.write_text(TENANTS_TOML)
    path.chmod(0o600)
    return path


def tenants() -> dict[str, object]:
    return parse_tenants(  # type: ignore[return-value]
        tomllib.loads(TENANTS_TOML),
        lambda ref: resolve_secret_ref(ref, SECRET_ENV),
        Settings().limits.max_upload_bytes,
    )


@contextmanager
def in_process(store: Path, **overrides: object) -> Iterator[TestClient]:
    """The ASGI app over a local directory, driven without sockets."""
    settings = Settings(storage=str(store), workers=2, queue_size=16, **overrides)  # type: ignore[arg-type]
    service = build_service(settings, tenants(), LocalStorage(store))  # type: ignore[arg-type]
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@dataclass
class Proc:
    """A real service process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def rss_kib(self, field_name: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{field_name} not found for pid {self.process.pid}")


def service_env(store: str, tenants_file: Path, port: int, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SERVICE_")}
    return {
        **base,
        **SECRET_ENV,
        "IMAGE_SERVICE_HOST": "127.0.0.1",
        "IMAGE_SERVICE_PORT": str(port),
        "IMAGE_SERVICE_STORAGE": store,
        "IMAGE_SERVICE_TENANTS_FILE": str(tenants_file),
        **extra,
    }


def start(
    workdir: Path,
    name: str,
    store: str,
    port: int | None = None,
    extra: dict[str, str] | None = None,
) -> Proc:
    """Start a service process and wait (bounded) until /healthz answers."""
    port = port or free_port()
    tenants_file = workdir / "tenants.toml"
    if not tenants_file.exists():
        write_tenants(workdir)
    env = service_env(store, tenants_file, port, **(extra or {}))
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("ab") as out_f, err.open("ab") as err_f:
        process = subprocess.Popen(
            [sys.executable, "-m", "image_service"], env=env, stdout=out_f, stderr=err_f
        )
    proc = Proc(process, port, out, err, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited {process.returncode}: {err.read_text()}")
        try:
            if httpx.get(f"{proc.url}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    stop(proc, kill=True)
    raise RuntimeError(f"{name} did not become healthy in 30 s")


def stop(proc: Proc, kill: bool = False, timeout: float = 30) -> None:
    if proc.process.poll() is not None:
        return
    proc.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.process.kill()
        proc.process.wait()


Starter = Callable[..., Proc]


WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_statuses.lua"


@dataclass(frozen=True)
class WrkResult:
    statuses: dict[int, int]
    missing_retry_after: int
    socket_errors: int
    requests: int
    seconds: float
    p99_ms: float

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def parse_wrk(output: str) -> WrkResult:
    statuses: dict[int, int] = {}
    values: dict[str, list[str]] = {}
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == "STATUS":
            statuses[int(parts[1])] = statuses.get(int(parts[1]), 0) + int(parts[2])
        elif parts and parts[0] in ("MISSING_RETRY_AFTER", "ERRORS", "TOTAL", "P99_MS"):
            values[parts[0]] = parts[1:]
    if "TOTAL" not in values:
        raise RuntimeError(f"wrk printed no summary: {output[-500:]}")
    return WrkResult(
        statuses=statuses,
        missing_retry_after=int(values["MISSING_RETRY_AFTER"][0]),
        socket_errors=sum(int(v) for v in values["ERRORS"]),
        requests=int(values["TOTAL"][0]),
        seconds=int(values["TOTAL"][1]) / 1e6,
        p99_ms=float(values["P99_MS"][0]),
    )


def run_wrk(
    url: str, path: str, connections: int, seconds: float, fixed: bool = False, threads: int = 2
) -> WrkResult:
    """wrk against a loopback URL with the status-counting script; bounded by -d and a timeout."""
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    argv = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        path,
        *(["fixed"] if fixed else []),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(done.stdout)
