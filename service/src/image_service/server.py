"""uvicorn with a drain phase: on SIGTERM turn not-ready first, then stop accepting and finish."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, on_drain: Callable[[], None], drain_seconds: float
    ) -> None:
        super().__init__(config)
        self._on_drain = on_drain
        self._drain_seconds = drain_seconds
        self._drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_drain()
        if sig == signal.SIGTERM and self._drain_seconds > 0 and self._drain_started is None:
            # Keep serving while load balancers notice /readyz failing; on_tick ends it.
            self._drain_started = time.monotonic()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        started = self._drain_started
        if started is not None and time.monotonic() - started >= self._drain_seconds:
            self.should_exit = True
        return await super().on_tick(counter)
