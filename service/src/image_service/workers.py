"""A bounded thread pool for libvips work, shared fairly between tenants.

libvips releases the GIL, so threads give real parallelism. Jobs wait in one queue per tenant
and start in the order fairshare.next_tenant chooses; admission follows fairshare.admit, so a
flood from one tenant is refused (503 + Retry-After) while the others keep their share.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from image_service.errors import DomainError
from image_service.fairshare import Load, admit, next_tenant, running_cap

T = TypeVar("T")


@dataclass
class _Job:
    number: int
    tenant: str
    fn: Callable[..., Any]
    args: tuple[object, ...]
    enqueued: float
    result: asyncio.Future[Any] = field(repr=False)


def _refusal(code: str, tenant: str, limit: int) -> DomainError:
    if code == "tenant_overloaded":
        detail = f"tenant {tenant} is using its whole share ({limit} renders); retry shortly"
    else:
        detail = "all transform workers are busy and the queue is full; retry shortly"
    return DomainError(code, detail, retry_after=1)


class WorkerPool:
    """workers threads; at most workers + queue_size jobs held, shared by tenant."""

    def __init__(
        self,
        workers: int,
        queue_size: int,
        on_change: Callable[[int], None] | None = None,
        on_start: Callable[[str, float], None] | None = None,
        shares: Mapping[str, float] | None = None,
        active_seconds: float = 2.0,
    ) -> None:
        self.workers = workers
        self.active_seconds = active_seconds  # how long a tenant counts as active after a job
        self.queue_size = queue_size
        self.capacity = workers + queue_size
        self.shares: Mapping[str, float] = shares or {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vips")
        self._queues: dict[str, deque[_Job]] = {}
        self._running: dict[str, int] = {}
        self._numbers = itertools.count()
        self._last_seen: dict[str, float] = {}
        self._recheck: asyncio.TimerHandle | None = None
        self._on_change = on_change or (lambda depth: None)
        self._on_start = on_start or (lambda tenant, seconds: None)

    @property
    def queue_depth(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def loads(self) -> dict[str, Load]:
        tenants = set(self._queues) | set(self._running)
        return {t: Load(self._running.get(t, 0), len(self._queues.get(t, ()))) for t in tenants}

    async def run(self, tenant: str, fn: Callable[..., T], *args: object) -> T:
        """Run fn in a worker on the tenant's behalf, or refuse at once (DomainError, retry 1 s)."""
        self._last_seen[tenant] = time.monotonic()
        decision = admit(self.capacity, tenant, self.loads(), self.shares)
        if not decision.admitted:
            raise _refusal(decision.code, tenant, decision.limit)
        loop = asyncio.get_running_loop()
        job = _Job(next(self._numbers), tenant, fn, args, time.monotonic(), loop.create_future())
        self._queues.setdefault(tenant, deque()).append(job)
        self._dispatch()
        try:
            return await job.result  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            queue = self._queues.get(tenant)
            if queue is not None and job in queue:  # never started: give its place back
                queue.remove(job)
                self._tidy(tenant)
                self._on_change(self.queue_depth)
            raise

    def _tidy(self, tenant: str) -> None:
        if not self._queues.get(tenant):
            self._queues.pop(tenant, None)
        if not self._running.get(tenant):
            self._running.pop(tenant, None)

    def _recent(self) -> list[str]:
        horizon = time.monotonic() - self.active_seconds
        for tenant in [t for t, seen in self._last_seen.items() if seen < horizon]:
            if not self._running.get(tenant) and not self._queues.get(tenant):
                del self._last_seen[tenant]
        return [*self._last_seen, *self._running, *self._queues]

    def _caps(self) -> dict[str, int]:
        recent = self._recent()
        return {t: running_cap(self.workers, t, recent, self.shares) for t in self._queues}

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while sum(self._running.values()) < self.workers:
            waiting = {t: q[0].number for t, q in self._queues.items() if q}
            tenant = next_tenant(waiting, self.loads(), self.shares, self._caps())
            if tenant is None:
                if waiting and self._recheck is None:
                    # Capped: look again once the other tenant may have gone quiet.
                    self._recheck = loop.call_later(self.active_seconds, self._rechecked)
                break
            job = self._queues[tenant].popleft()
            self._tidy(tenant)
            self._running[tenant] = self._running.get(tenant, 0) + 1
            self._on_start(tenant, time.monotonic() - job.enqueued)
            future = self._executor.submit(job.fn, *job.args)

            def done(f: Future[Any], job: _Job = job) -> None:
                loop.call_soon_threadsafe(self._finish, job, f)

            # Released when the thread finishes, not when the caller stops waiting: a
            # cancelled request does not free a worker that is still busy.
            future.add_done_callback(done)
        self._on_change(self.queue_depth)

    def _rechecked(self) -> None:
        self._recheck = None
        self._dispatch()

    def _finish(self, job: _Job, future: Future[Any]) -> None:
        self._running[job.tenant] -= 1
        self._tidy(job.tenant)
        if not job.result.done():
            error = future.exception()
            if error is not None:
                job.result.set_exception(error)
            else:
                job.result.set_result(future.result())
        self._dispatch()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


class UploadGate:
    """Upload bodies held in memory at once, shared by tenant like the worker pool."""

    def __init__(self, capacity: int, shares: Mapping[str, float] | None = None) -> None:
        self.capacity = capacity
        self.shares: Mapping[str, float] = shares or {}
        self._held: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        return sum(self._held.values())

    def enter(self, tenant: str) -> None:
        loads = {t: Load(running=n) for t, n in self._held.items()}
        decision = admit(self.capacity, tenant, loads, self.shares)
        if not decision.admitted:
            if decision.code == "tenant_overloaded":
                detail = f"tenant {tenant} has {decision.limit} uploads in progress; retry shortly"
            else:
                detail = "too many uploads in progress; retry shortly"
            raise DomainError(decision.code, detail, retry_after=1)
        self._held[tenant] = self._held.get(tenant, 0) + 1

    def leave(self, tenant: str) -> None:
        self._held[tenant] -= 1
        if not self._held[tenant]:
            del self._held[tenant]
