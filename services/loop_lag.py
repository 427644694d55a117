"""How late the event loop runs: the proof, in production, that nothing slow holds it.

A task asks to wake every `interval` seconds and records how late it woke. A loop held by a
blocking call (a solve, a disk sync, a big conversion) shows as lag the size of the hold.
The node and the portfolio run one each; `/metrics` exports the histogram and the worst lag
of the last minute, so an alert can fire on a loop that is held.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

from prometheus_client import CollectorRegistry, Gauge, Histogram

log = logging.getLogger(__name__)
WARN_SECONDS = 1.0  # a hold this long is logged as well: an on-call person reads it beside the alert
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopLag:
    """Samples the running loop's lag; `worst(seconds)` is the largest lag seen in that window."""

    def __init__(self, registry: CollectorRegistry | None = None, interval: float = 0.05, window: float = 60.0) -> None:
        self.interval, self.window = interval, window
        self._recent: collections.deque[tuple[float, float]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.histogram: Histogram | None = None
        if registry is not None:
            self.histogram = Histogram(
                "gridmesh_event_loop_lag_seconds",
                "How late the event loop woke a task that asked to wake on time",
                buckets=BUCKETS,
                registry=registry,
            )
            worst = Gauge(
                "gridmesh_event_loop_lag_max_seconds",
                "The worst event-loop lag of the last minute",
                registry=registry,
            )
            worst.set_function(lambda: self.worst(self.window))

    def record(self, lag: float, at: float) -> None:
        self._recent.append((at, lag))
        while self._recent and self._recent[0][0] < at - self.window:
            self._recent.popleft()
        if self.histogram is not None:
            self.histogram.observe(lag)
        if lag >= WARN_SECONDS:
            log.warning("event loop held for %.2f s", lag)

    def worst(self, seconds: float) -> float:
        since = time.monotonic() - seconds
        return max((lag for at, lag in self._recent if at >= since), default=0.0)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            woke = loop.time()
            self.record(max(0.0, woke - asked - self.interval), time.monotonic())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
