"""A bounded thread pool with a bounded queue for libvips work.

libvips releases the GIL, so threads give real parallelism; the bound on queued jobs turns
overload into fast 503s instead of unbounded memory and latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from image_service.errors import ApiError

T = TypeVar("T")


class WorkerPool:
    def __init__(
        self,
        workers: int,
        queue_size: int,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vips")
        self._pending = 0  # running + queued; touched only on the event loop
        self._on_change = on_change or (lambda depth: None)

    @property
    def queue_depth(self) -> int:
        return max(0, self._pending - self.workers)

    def _changed(self) -> None:
        self._on_change(self.queue_depth)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run fn in a worker, or raise a 503 at once when workers and queue are full."""
        if self._pending >= self.workers + self.queue_size:
            raise ApiError(
                503,
                "overloaded",
                "all transform workers are busy and the queue is full; retry shortly",
                {"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        self._pending += 1
        self._changed()
        future: Future[T] = self._executor.submit(fn, *args)

        def release(_: Future[T]) -> None:
            self._pending -= 1
            self._changed()

        # Released when the thread finishes, not when the caller stops waiting: a cancelled
        # request does not free a worker that is still busy.
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(release, f))
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
