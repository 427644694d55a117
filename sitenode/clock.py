"""Time for code that waits or stamps: real, or simulated and faster than real time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...
    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedClock:
    """Starts at `start` and runs `speed` times faster than the wall clock.

    With `origin_unix` (a wall-clock time, seconds since the epoch) the clock reads `start`
    at that instant: processes given the same three values share one simulated time (the
    demo's portfolio, nodes and simulators). Without it, `start` is now, by the monotonic clock.
    """

    def __init__(self, start: datetime, speed: float = 1.0, origin_unix: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.start, self.speed, self.origin_unix = start, speed, origin_unix
        self._origin = time.monotonic()

    def now(self) -> datetime:
        elapsed = time.time() - self.origin_unix if self.origin_unix is not None else time.monotonic() - self._origin
        return self.start + timedelta(seconds=elapsed * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)


def clock_for(speed: float, start: datetime | None = None, origin_unix: float | None = None) -> Clock:
    """The clock a service config asks for: real unless sped up or started elsewhere in time."""
    if speed == 1.0 and start is None:
        return RealClock()
    return SimulatedClock(start or datetime.now(UTC), speed, origin_unix)
