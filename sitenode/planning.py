"""Plans off the event loop: one worker thread, a deadline, and the newest request wins.

A site plan (HiGHS, a MIP where chargers are chosen) can take seconds to minutes; the node's
event loop meanwhile serves OCPP websockets, SunSpec polls, the portfolio stream's pings and
every RPC. HiGHS releases the GIL while it solves (measured: a 20 s charger-choice MIP in a
thread held a 1 ms asyncio ticker up by at most 6 ms), so a thread is enough, and it shares
the node's memory with no pickling of frames.

Rules:
* one plan at a time: a request made while one runs waits for the worker;
* a newer request supersedes the one under way: the older's result is thrown away
  (`Superseded`), never applied;
* a plan still running at its deadline is abandoned (`PlanAbandoned`): its result, whenever
  it comes, is thrown away; the schedule in force stays in force.

HiGHS cannot be stopped from outside mid-solve here, so an abandoned or superseded solve
still occupies the worker until its own time limit ends it; the caller bounds that limit by
the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sitenode.errors import Aborted, DeadlineExceeded

T = TypeVar("T")


class Superseded(Aborted):
    """A newer plan was asked for while this one waited or ran."""


class PlanAbandoned(DeadlineExceeded):
    """The plan did not finish within its deadline; nothing of it was applied."""

    def __init__(self, reason: str, seconds: float) -> None:
        self.reason, self.seconds = reason, seconds
        super().__init__(f"plan ({reason}) abandoned after {seconds:.1f} s: past its deadline")


class PlanWorker:
    """Runs plan jobs in one worker thread, newest first, each within a deadline (seconds)."""

    def __init__(self, deadline_seconds: float) -> None:
        self.deadline_seconds = deadline_seconds
        self._executor: ThreadPoolExecutor | None = None  # made at the first plan
        self._generation = 0
        self._busy: asyncio.Future[Any] | None = None
        self.abandoned = 0

    @property
    def running(self) -> bool:
        return self._busy is not None and not self._busy.done()

    async def run(self, job: Callable[[], T], reason: str) -> T:
        """`job()` in the worker thread; its result, unless a newer run started meanwhile
        (`Superseded`) or the deadline passed first (`PlanAbandoned`)."""
        self._generation += 1
        mine = self._generation
        while self._busy is not None and not self._busy.done():
            # the worker is busy (with a plan this one supersedes, or an abandoned one)
            await asyncio.wait({self._busy})
            if mine != self._generation:
                raise Superseded(f"plan ({reason}) superseded by a newer request before it started")
        started = time.monotonic()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridmesh-plan")
        future: asyncio.Future[T] = asyncio.get_running_loop().run_in_executor(self._executor, job)
        self._busy = future
        future.add_done_callback(_retrieve)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), self.deadline_seconds)
        took = time.monotonic() - started
        # strictly by the clock: a loop held past the deadline may find the plan done and the
        # timeout due at once, and wait_for then hands the late plan back
        if took > self.deadline_seconds or not future.done():
            self.abandoned += 1
            raise PlanAbandoned(reason, took) from None
        if mine != self._generation:
            raise Superseded(f"plan ({reason}) superseded by a newer request while it ran")
        return future.result()

    def close(self) -> None:
        """Let the worker thread go; a solve under way finishes in it (bounded by its time
        limit). A later `run` starts a new thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    # an abandoned plan's outcome, error included, is nobody's: read it so asyncio does not warn
    if not future.cancelled():
        future.exception()
