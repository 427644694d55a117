"""The plan worker: one plan at a time in a thread, the newest request wins, a deadline holds."""

import asyncio
import threading
import time

import pytest

from sitenode.planning import PlanAbandoned, PlanWorker, Superseded


@pytest.fixture
def worker():
    w = PlanWorker(deadline_seconds=5.0)
    yield w
    w.close()


async def test_a_job_runs_in_the_worker_thread_and_the_loop_keeps_turning(worker):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    names = []

    def job() -> int:
        names.append(threading.current_thread().name)
        time.sleep(0.3)  # holds its thread, not the loop
        return 42

    assert await worker.run(job, "test") == 42
    task.cancel()
    assert names[0].startswith("gridmesh-plan") and ticks >= 5


async def test_a_newer_request_supersedes_the_one_under_way_and_the_one_waiting(worker):
    release = threading.Event()
    order = []

    def slow(name: str):
        def job() -> str:
            order.append(name)
            release.wait(5)
            return name

        return job

    first = asyncio.create_task(worker.run(slow("first"), "a"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(worker.run(slow("second"), "b"))
    await asyncio.sleep(0.05)
    third = asyncio.create_task(worker.run(slow("third"), "c"))
    await asyncio.sleep(0.05)
    release.set()
    with pytest.raises(Superseded, match="while it ran"):
        await first
    with pytest.raises(Superseded, match="before it started"):
        await second
    assert await third == "third"
    assert order == ["first", "third"]  # the superseded waiting request never ran


async def test_a_plan_past_its_deadline_is_abandoned_and_the_worker_takes_the_next():
    worker = PlanWorker(deadline_seconds=0.1)
    try:
        release = threading.Event()
        with pytest.raises(PlanAbandoned, match="deadline") as caught:
            await worker.run(lambda: release.wait(5), "slow")
        assert caught.value.seconds >= 0.1 and worker.abandoned == 1
        release.set()
        assert await worker.run(lambda: "next", "quick") == "next"
    finally:
        worker.close()


async def test_a_failing_job_raises_to_its_caller_and_the_worker_goes_on(worker):
    def broken() -> None:
        raise ValueError("no plan")

    with pytest.raises(ValueError, match="no plan"):
        await worker.run(broken, "bad")
    assert await worker.run(lambda: 1, "good") == 1


async def test_close_lets_the_thread_go_and_a_later_run_starts_a_new_one(worker):
    await worker.run(lambda: None, "one")
    worker.close()
    for _ in range(100):
        if not any(t.name.startswith("gridmesh-plan") for t in threading.enumerate()):
            break
        await asyncio.sleep(0.02)
    assert not any(t.name.startswith("gridmesh-plan") for t in threading.enumerate())
    assert await worker.run(lambda: 2, "two") == 2
