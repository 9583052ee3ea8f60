"""Service: everything a request needs, one per app (tests build several). The mutable shell."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from image_service import transform
from image_service.config import Limits, Settings
from image_service.errors import DomainError
from image_service.fingerprint import code_fingerprint
from image_service.metrics import Metrics
from image_service.options import RenditionOptions
from image_service.quota import QuotaBook
from image_service.ratelimit import RateLimiter
from image_service.storage import Storage, StorageError, originals_prefix
from image_service.tenants import Tenant
from image_service.workers import UploadGate, WorkerPool

log = logging.getLogger("image_service")
T = TypeVar("T")
RenderFn = Callable[
    [transform.Original, RenditionOptions, str, Limits, tuple[int, int, int]], transform.Rendered
]
ProbeFn = Callable[[bytes, frozenset[str], Limits], transform.ImageInfo]


@dataclass
class Service:
    settings: Settings
    tenants: dict[str, Tenant]
    storage: Storage
    metrics: Metrics
    pool: WorkerPool
    uploads: UploadGate
    # Injected so tests (and benchmarks) replace them without patching module globals.
    render: RenderFn = field(default=transform.render)
    probe: ProbeFn = field(default=transform.probe)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    quota: QuotaBook = field(default_factory=QuotaBook)
    draw: Callable[[], float] = random.random
    draining: bool = False
    fast_reads: bool = True  # stored renditions through fastpath.py (ADR 096); tests compare
    encoder_version: str = ""
    inflight_renders: dict[str, asyncio.Future[transform.Rendered]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.encoder_version:
            # What decides the bytes: the render code itself, and the libvips it calls.
            # Settings that change bytes without changing code count too (AVIF effort).
            fingerprint = code_fingerprint(self.render)
            effort = self.settings.limits.avif_effort
            self.encoder_version = f"{fingerprint}-e{effort}-vips{transform.vips_version()}"
        shares = {tid: tenant.share for tid, tenant in self.tenants.items()}
        self.pool.shares = shares
        self.uploads.shares = shares

    async def io(self, operation: str, fn: Callable[..., T], *args: Any, read: bool = False) -> T:
        """Run a blocking storage call in a thread; count and translate its failures.

        Reads from a backend that declares `inline_reads` (a local directory: a stat and a
        page-cache read cost less than the thread hand-off) run directly on the event loop.
        """
        try:
            if read and getattr(self.storage, "inline_reads", False):
                return fn(*args)
            return await anyio.to_thread.run_sync(fn, *args)
        except StorageError as exc:
            raise self.storage_failure(operation, exc) from exc

    def storage_failure(self, operation: str, exc: StorageError) -> DomainError:
        self.metrics.child(self.metrics.storage_errors, self.storage.backend, operation).inc()
        log.error("storage failure", exc_info=exc)
        return DomainError("storage_unavailable", "storage is unavailable; retry shortly", 1)

    async def count_stored(self, tenant: str) -> None:
        """Start the tenant's quota from what storage holds (once per process)."""
        if self.quota.known(tenant):
            return
        stored = await self.io("list", self.storage.usage, originals_prefix(tenant))
        if not self.quota.known(tenant):  # another request may have counted meanwhile
            self.quota.recount(tenant, stored)
