"""Helpers for the image-service tests (imported by name: conftest puts this folder on sys.path)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import pyvips
from image_service import transform
from image_service.app import Service, create_app
from image_service.build import build_service
from image_service.config import Limits, Settings
from image_service.local_storage import LocalStorage
from image_service.service import ProbeFn, RenderFn
from image_service.tenants import Tenant, hash_key, parse_tenants
from image_service.transform import harden_libvips
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork for its TestClient; httpx works the same here.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ACME_KEY = "acme-key-1"
ACME_OLD_KEY = "acme-key-0"
BETA_KEY = "beta-key-1"
ACME_SECRETS = (b"acme-secret-new", b"acme-secret-old")
TENANTS_TOML = f"""
[tenants.acme]
api_key_sha256 = ["{hash_key(ACME_KEY)}", "{hash_key(ACME_OLD_KEY)}"]
signing_secrets = ["env:ACME_SECRET_NEW", "env:ACME_SECRET_OLD"]
allow_unsigned_reads = false
allowed_formats = ["jpeg", "png", "webp", "gif", "avif"]
max_upload_bytes = 5_000_000
requests_per_second = 1000
max_stored_bytes = 50_000_000

[tenants.beta]
api_key_sha256 = ["{hash_key(BETA_KEY)}"]
allow_unsigned_reads = true
allowed_formats = ["jpeg", "png"]
requests_per_second = 1000
"""
TENANT_ENV = {
    "ACME_SECRET_NEW": ACME_SECRETS[0].decode(),
    "ACME_SECRET_OLD": ACME_SECRETS[1].decode(),
}


@pytest.fixture(scope="session", autouse=True)
def _libvips() -> None:
    harden_libvips(1)


def noise(width: int, height: int, bands: int = 3) -> pyvips.Image:
    """A deterministic-size RGB(A) image with real texture (so encoders do real work)."""
    base = pyvips.Image.gaussnoise(width, height, mean=128, sigma=40)
    grad = pyvips.Image.xyz(width, height)[0] * (255 / max(1, width))
    image = base.bandjoin([grad, base.rot180() if width == height else grad]).cast("uchar")
    image = image.copy(interpretation="srgb")
    if bands == 4:
        alpha = (pyvips.Image.xyz(width, height)[1] * (255 / max(1, height))).cast("uchar")
        image = image.bandjoin(alpha)
    return image


@dataclass(frozen=True)
class Images:
    jpeg: bytes
    png: bytes
    webp: bytes
    gif: bytes
    png_alpha: bytes


@pytest.fixture(scope="session")
def images() -> Images:
    rgb = noise(320, 200)
    return Images(
        jpeg=bytes(rgb.jpegsave_buffer(Q=85)),
        png=bytes(rgb.pngsave_buffer()),
        webp=bytes(rgb.webpsave_buffer(Q=80)),
        gif=bytes(rgb.gifsave_buffer()),
        png_alpha=bytes(noise(160, 100, bands=4).pngsave_buffer()),
    )


def image_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def tenants() -> dict[str, Tenant]:
    import tomllib

    from image_service.tenants import resolve_secret_ref

    return parse_tenants(
        tomllib.loads(TENANTS_TOML),
        lambda ref: resolve_secret_ref(ref, TENANT_ENV),
        Limits().max_upload_bytes,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        storage=str(tmp_path / "store"), workers=2, queue_size=8, track="canary", version="abc123"
    )


@dataclass
class App:
    client: TestClient
    service: Service
    root: Path

    def upload(self, data: bytes, tenant: str = "acme", key: str = ACME_KEY) -> httpx.Response:
        response: httpx.Response = self.client.post(
            f"/v1/{tenant}/images", content=data, headers={"Authorization": f"Bearer {key}"}
        )
        return response

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())


AppFactory = Callable[..., App]


@pytest.fixture
def make_app(settings: Settings, tenants: dict[str, Tenant]) -> Iterator[AppFactory]:
    clients: list[TestClient] = []

    def factory(
        render: RenderFn = transform.render, probe: ProbeFn = transform.probe, **overrides: object
    ) -> App:
        chosen = replace(settings, **overrides)  # type: ignore[arg-type]
        storage = LocalStorage(chosen.storage)
        service = build_service(chosen, dict(tenants), storage, render=render, probe=probe)
        client = TestClient(create_app(service), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return App(client, service, Path(chosen.storage))

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def app(make_app: AppFactory) -> App:
    return make_app()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    err_path: Path

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()


def start_server(tmp_path: Path, env_extra: dict[str, str], name: str = "server") -> LiveServer:
    port = free_port()
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SERVICE_")}
        | {
            "IMAGE_SERVICE_HOST": "127.0.0.1",
            "IMAGE_SERVICE_PORT": str(port),
            "IMAGE_SERVICE_STORAGE": str(tmp_path / f"{name}-store"),
        }
        | env_extra
    )
    out = tmp_path / f"{name}.out"
    err = tmp_path / f"{name}.err"
    with out.open("wb") as out_f, err.open("wb") as err_f:
        process = subprocess.Popen(
            [sys.executable, "-m", "image_service"], env=env, stdout=out_f, stderr=err_f
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}: {err.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return LiveServer(process, url, out, err)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become healthy in 30 s")


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def factory(env: dict[str, str] | None = None, name: str = "server") -> LiveServer:
        server = start_server(tmp_path, env or {}, name)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)
