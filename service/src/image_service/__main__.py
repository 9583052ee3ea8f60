"""Start the service: `image-service` or `python -m image_service`."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys

import uvicorn

from image_service import logs
from image_service.app import create_app
from image_service.build import build_service, build_tenants
from image_service.config import settings_from_env
from image_service.errors import ConfigError
from image_service.protocol import JsonRefusalProtocol
from image_service.server import DrainingServer
from image_service.storage import StorageError
from image_service.transform import harden_libvips

M_ARENA_MAX = -8  # glibc mallopt() parameter


def _limit_malloc_arenas() -> None:
    """Many threads each get a glibc arena by default, which inflates RSS under load."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


def main() -> int:
    env = dict(os.environ)
    try:
        settings = settings_from_env(env)
        logs.configure(settings.log_level)
        tenants, demo_key = build_tenants(settings, env)
        service = build_service(settings, tenants)
        service.storage.check()
    except (ConfigError, StorageError) as exc:
        print(f"image-service: cannot start: {exc}", file=sys.stderr)
        return 2
    _limit_malloc_arenas()
    harden_libvips(int(env.get("VIPS_CONCURRENCY", "1") or 1))
    log = logging.getLogger("image_service")
    if demo_key is not None:
        # A generated key is shown once (nobody could use the demo tenant otherwise); a key
        # the operator supplied is a secret they already hold, so it is never echoed.
        shown = "from IMAGE_SERVICE_DEMO_KEY" if settings.demo_key else demo_key
        print(
            f"image-service: no IMAGE_SERVICE_TENANTS_FILE; demo tenant 'demo' has API key: "
            f"{shown}",
            file=sys.stderr,
            flush=True,
        )
    if settings.faults.enabled:
        log.warning(
            "fault injection enabled",
            extra={"tenant": settings.faults.tenant or "*"},
        )
    log.info(
        "starting",
        extra={"route": f"http://{settings.host}:{settings.port}", "tenant": ",".join(tenants)},
    )
    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.grace_seconds),
        lifespan="on",
        http=JsonRefusalProtocol,
        # Nothing here reads the client address or scheme, so X-Forwarded-* rewriting would
        # only cost a layer per request (ADR 170).
        proxy_headers=False,
    )

    def drain() -> None:
        service.draining = True

    DrainingServer(config, drain, settings.drain_seconds).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
