"""How gridmesh's processes start and stop together.

A process that another starts (the demo's portfolio, nodes, simulators and dashboard) is
given `GRIDMESH_PARENT_PID` and, first thing, asks Linux to send it SIGTERM when that
parent dies (`PR_SET_PDEATHSIG`): so a parent killed with SIGKILL, which cannot stop its
children itself, still takes them with it, and each stops as on any SIGTERM. It is set in
the child itself (after exec, not in a `preexec_fn` between fork and exec in a threaded
parent), and a parent that died before then is noticed by the parent pid having changed.
The variable is consumed: grandchildren do not inherit it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Iterable

PARENT_PID_ENV = "GRIDMESH_PARENT_PID"
PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 128 + signal.SIGTERM  # as if the parent's SIGTERM had come
TASKS_GRACE_SECONDS = 3.0  # a service's loops, told to stop, end within this or are cancelled

log = logging.getLogger("gridmesh.lifecycle")


def child_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child that must die with this process."""
    return {**env, PARENT_PID_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """In a child started with `child_env`: SIGTERM when the parent dies; exit at once if it
    already has. Without the variable (or off Linux) nothing changes."""
    value = os.environ.pop(PARENT_PID_ENV, None)
    if not value or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(value):  # the parent died before the request: nobody will signal us
        sys.exit(EXIT_PARENT_GONE)


async def finish(tasks: Iterable[asyncio.Task], timeout: float = TASKS_GRACE_SECONDS) -> None:
    """Give tasks that were told to stop `timeout` seconds to end by themselves, cancel the
    rest and wait for all; a task's failure is logged, not raised, so the shutdown goes on
    to close what must be closed (the journal, the store)."""
    pending = list(tasks)
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=timeout)
    for task in late:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await task
            except Exception:  # noqa: BLE001 - reported, and the shutdown continues
                log.exception("%s failed", task.get_name())
