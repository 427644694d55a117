"""The loop-lag monitor sees a loop held by a blocking call, and exports it."""

import asyncio
import time

from prometheus_client import CollectorRegistry, generate_latest

from services.loop_lag import LoopLag


async def test_a_held_loop_shows_as_lag_the_size_of_the_hold():
    registry = CollectorRegistry()
    lag = LoopLag(registry, interval=0.01)
    lag.start()
    try:
        await asyncio.sleep(0.1)
        quiet = lag.worst(60)
        time.sleep(0.3)  # a blocking call on the loop, as a solve on it would be
        await asyncio.sleep(0.05)
        held = lag.worst(60)
    finally:
        await lag.stop()
    assert quiet < 0.25 <= held < 2.0
    text = generate_latest(registry).decode()
    assert "gridmesh_event_loop_lag_seconds_bucket" in text
    worst = next(line for line in text.splitlines() if line.startswith("gridmesh_event_loop_lag_max_seconds "))
    assert float(worst.split()[1]) >= 0.25


def test_lag_older_than_the_window_is_forgotten():
    lag = LoopLag(interval=0.01, window=10.0)
    now = time.monotonic()
    lag.record(5.0, now - 30)
    lag.record(0.002, now)
    assert lag.worst(10) == 0.002
