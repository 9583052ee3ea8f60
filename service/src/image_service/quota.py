"""Exact storage quota per tenant: one writer per (tenant, image), one ledger per tenant.

Every change to a tenant's stored originals goes through here. Work on one image is serialised
(identical uploads and concurrent deletes of one image become one change each); a new image
reserves its bytes before the write, so two different uploads cannot both pass the check.
The counters start from storage (recount), so a restart never drifts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class QuotaCheck:
    allowed: bool
    used: int  # stored + reserved, before this upload


def check(stored: int, reserved: int, size: int, limit: int) -> QuotaCheck:
    """Pure: may `size` more bytes be stored under `limit`?"""
    used = stored + reserved
    return QuotaCheck(used + size <= limit, used)


class QuotaBook:
    """Bytes of originals per tenant; touched only on the event loop."""

    def __init__(self) -> None:
        self._stored: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._waiters: dict[tuple[str, str], int] = {}

    def known(self, tenant: str) -> bool:
        return tenant in self._stored

    def recount(self, tenant: str, stored: int) -> None:
        self._stored[tenant] = stored

    def stored(self, tenant: str) -> int:
        return self._stored.get(tenant, 0)

    @contextlib.asynccontextmanager
    async def image(self, tenant: str, image_id: str) -> AsyncIterator[None]:
        """Hold the one lock for this image; the lock is dropped once nobody waits for it."""
        key = (tenant, image_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiters[key] -= 1
            if not self._waiters[key]:
                del self._waiters[key]
                del self._locks[key]

    def reserve(self, tenant: str, size: int, limit: int) -> bool:
        """Set aside size bytes if they fit; call commit or release afterwards."""
        decision = check(self.stored(tenant), self._reserved.get(tenant, 0), size, limit)
        if decision.allowed:
            self._reserved[tenant] = self._reserved.get(tenant, 0) + size
        return decision.allowed

    def release(self, tenant: str, size: int) -> None:
        self._reserved[tenant] -= size

    def commit(self, tenant: str, size: int) -> None:
        self.release(tenant, size)
        self._stored[tenant] = self.stored(tenant) + size

    def freed(self, tenant: str, size: int) -> None:
        self._stored[tenant] = max(0, self.stored(tenant) - size)
