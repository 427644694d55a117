"""Small builders for the site-model and optimizer tests: plain dicts in, checked objects out.

Import them with `from conftest import make_problem` (tests/ is on the path). Sessions
give `arrival`/`departure` as step numbers from START (fractions fall between steps);
everything else is the YAML/CSV contract of shared/BUNDLE.md.

Two fixtures for every test: `no_leaks` (autouse) fails a test that leaves asyncio tasks,
threads or child processes behind, and `ray_session` is the one Ray of a test session.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import re
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
import pytest_asyncio

from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse

START = pd.Timestamp("2025-01-15T00:00:00Z")  # a Wednesday, far from any DST change


def site_config(**fields: Any) -> SiteConfig:
    return parse(SiteConfig, {"site_id": "t", **fields}, "site_config")


def run_config(steps: int, step_minutes: int = 60, start: pd.Timestamp = START, **fields: Any) -> RunConfig:
    horizon = {"start": start.isoformat(), "step_minutes": step_minutes, "steps": steps}
    return parse(RunConfig, {"horizon": horizon, **fields}, "run_config")


def series_frame(
    load: Sequence[float],
    pv: Sequence[float] | None = None,
    *,
    step_minutes: int = 60,
    start: pd.Timestamp = START,
    **columns: Sequence[float],
) -> pd.DataFrame:
    """A raw timeseries as a bundle holds it: a `timestamp` column and one row per step."""
    steps = len(load)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=steps, freq=f"{step_minutes}min"),
            "load_kw": np.asarray(load, dtype=float),
            "pv_kw": np.zeros(steps) if pv is None else np.asarray(pv, dtype=float),
        }
    )
    for name, values in columns.items():
        frame[name] = np.asarray(values, dtype=float)
    return frame


def session(
    session_id: str,
    arrival: float,
    departure: float,
    energy_kwh: float,
    max_kw: float,
    *,
    step_minutes: int = 60,
    **fields: Any,
) -> EVSession:
    step = pd.Timedelta(minutes=step_minutes)
    return EVSession(
        session_id=session_id,
        arrival=START + arrival * step,
        departure=START + departure * step,
        energy_kwh=energy_kwh,
        max_kw=max_kw,
        **fields,
    )


def make_problem(
    site: Mapping[str, Any],
    run: Mapping[str, Any],
    load: Sequence[float],
    pv: Sequence[float] | None = None,
    *,
    sessions: Sequence[Mapping[str, Any]] = (),
    step_minutes: int = 60,
    prices: Sequence[float] | None = None,
    export_prices: Sequence[float] | None = None,
    **columns: Sequence[float],
) -> SiteProblem:
    """One site over len(load) steps from START, through the same checks a bundle passes.

    Without a price column or tariff rate, import costs 0.2 and export earns 0 per kWh.
    `run` needs no horizon: it is len(load) steps of `step_minutes`.
    """
    steps = len(load)
    tariff = run.get("tariff", {})
    if prices is None and not tariff.get("energy_rates"):
        prices = [0.2] * steps
    if export_prices is None and tariff.get("export_rate") is None:
        export_prices = [0.0] * steps
    if prices is not None:
        columns["import_price_per_kwh"] = prices
    if export_prices is not None:
        columns["export_price_per_kwh"] = export_prices
    cfg = run_config(steps, step_minutes, **run)
    raw = series_frame(load, pv, step_minutes=step_minutes, **columns)
    evs = [session(**{**s, "step_minutes": step_minutes}) for s in sessions]
    return build_problem(site_config(**site), cfg, check_series(raw, cfg.horizon, cfg.tariff), evs)


# -- one Ray per test session --------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the session (each pytest-xdist worker is a session of its own).

    One CPU, so two xdist workers stay within a 2-core machine; RAY_ADDRESS, when set, joins
    that cluster instead. The package's `connect_ray` finds it initialized and uses it, so a
    test that solves with Ray asks for this fixture rather than starting (and leaking) its own.
    """
    import ray

    from portfolio.decomposition import connect_ray

    started_here = not ray.is_initialized()
    connect_ray(num_cpus=1)
    yield
    if started_here:
        ray.shutdown()


# -- tests that leak fail ------------------------------------------------------------------
#
# As pymodbus's test/conftest.py does: record the tasks, threads and child processes that
# exist before a test, and fail the test if new ones are still there after it (and after its
# fixtures) ended. What is still finishing gets a grace period first.

GRACE_SECONDS = 3.0  # a thread told to stop, or a child sent SIGTERM, gets this long to end
TASK_GRACE_SECONDS = 1.0  # a cancelled task needs a few loop turns to finish


def _always(thread: threading.Thread) -> bool:
    return True


def _executor_open(thread: threading.Thread) -> bool:
    """A ThreadPoolExecutor worker whose executor is not shut down (its target's first argument
    is a weak reference to the executor)."""
    args = getattr(thread, "_args", ())
    executor = args[0]() if args and isinstance(args[0], weakref.ref) else None
    return executor is not None and not executor._shutdown


# Threads a test may leave, by name and a check on the thread, each with why. Nothing else.
ALLOWED_THREADS: list[tuple[re.Pattern[str], Callable[[threading.Thread], bool], str]] = [
    (
        re.compile(r"Thread-\d+ \(_poll_wrapper\)"),
        _always,
        "grpc.aio's completion-queue poller: one per process, started with the first aio channel or"
        " server and ended only when the last one is freed, which a stopped server's test can't force"
        " (pytest holds the fixture values until after this check)",
    ),
    (
        re.compile(r"asyncio_\d+"),
        _executor_open,
        "the default executor of an event loop that outlives the test (a module-scoped loop or a"
        " fixture's loop thread): its idle workers are joined when that loop closes. A function-scoped"
        " loop is closed before this check, so its workers are gone by then",
    ),
]


def _allowed_thread(thread: threading.Thread) -> bool:
    return any(pattern.fullmatch(thread.name) and check(thread) for pattern, check, _why in ALLOWED_THREADS)


def _describe_thread(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)  # None for a Thread subclass that overrides run()
    what = getattr(target, "__qualname__", None) or type(thread).__qualname__
    module = getattr(target, "__module__", None) or type(thread).__module__
    return f"{thread.name!r} ({module}.{what}, daemon={thread.daemon})"


def _children() -> dict[int, tuple[str, str]]:
    """This process's child processes, read from /proc: pid -> (state letter, cmdline)."""
    me = os.getpid()
    found: dict[int, tuple[str, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ")"
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) != me:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):  # gone meanwhile
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        found[int(entry.name)] = (state, textwrap.shorten(cmdline, 240, placeholder=" ...") or f"[{comm}]")
    return found


def _leftover_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive() and not _allowed_thread(t)]


def _leftover_children(before: set[int]) -> dict[int, tuple[str, str]]:
    multiprocessing.active_children()  # joins multiprocessing's finished children, as its next start would
    return {pid: what for pid, what in _children().items() if pid not in before}


def _test_loop_scope(request: pytest.FixtureRequest) -> str | None:
    """The scope of the loop an async test runs on (as pytest-asyncio picks it); None for a sync test."""
    if not inspect.iscoroutinefunction(getattr(request.node, "obj", None)):
        return None
    marker = request.node.get_closest_marker("asyncio")
    scope = marker and (marker.kwargs.get("loop_scope") or marker.kwargs.get("scope"))
    return scope or request.config.getini("asyncio_default_test_loop_scope") or "function"


def _tasks_left_fixture(loop_scope: str) -> Any:
    """A fixture that runs on the test's loop (of `loop_scope`) and fails the test if it leaves tasks."""

    @pytest_asyncio.fixture(name=f"_tasks_left_on_{loop_scope}_loop", loop_scope=loop_scope)
    async def tasks_left() -> AsyncIterator[None]:
        before = asyncio.all_tasks()
        yield
        deadline = time.monotonic() + TASK_GRACE_SECONDS
        while True:
            left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        if left:
            pytest.fail("the test left asyncio tasks pending:\n  " + "\n  ".join(repr(t) for t in left), pytrace=False)

    return tasks_left


_tasks_left_on_function_loop = _tasks_left_fixture("function")
_tasks_left_on_class_loop = _tasks_left_fixture("class")
_tasks_left_on_module_loop = _tasks_left_fixture("module")
_tasks_left_on_package_loop = _tasks_left_fixture("package")
_tasks_left_on_session_loop = _tasks_left_fixture("session")


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves tasks, threads or child processes behind once it and its fixtures ended.

    Being autouse and function-scoped, this is set up before the test's own function-scoped
    fixtures (and pytest-asyncio's function loop) and torn down after them: what they stop in
    their teardown is not a leak, and a closed loop has joined its default executor's threads.
    Higher-scoped fixtures were set up before, so what they hold is in the `before` sets.
    """
    threads_before = set(threading.enumerate())
    children_before = set(_children())
    ray_before = _ray_up()
    yield
    deadline = time.monotonic() + GRACE_SECONDS
    while True:
        threads = _leftover_threads(threads_before)
        children = _leftover_children(children_before)
        if not threads and not children:
            return
        if time.monotonic() > deadline:
            break
        for thread in threads:
            thread.join(max(0.0, min(0.1, deadline - time.monotonic())))
        if not threads:
            time.sleep(0.05)
    problems = [f"thread {_describe_thread(t)}" for t in threads]
    problems += [
        f"child process {pid} {'exited but never waited for' if state == 'Z' else 'still running'}: {cmdline}"
        for pid, (state, cmdline) in sorted(children.items())
    ]
    if _ray_up() and not ray_before:
        problems.append("Ray was started by the test: ask for the session's `ray_session` fixture instead")
    pytest.fail("the test left behind:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def no_leaked_tasks(no_leaks: None, request: pytest.FixtureRequest) -> None:
    """An async test also fails if it leaves tasks pending on its loop.

    The check runs on the test's loop, so this asks for it here rather than in `no_leaks`:
    what asks for the loop is torn down before the loop closes, and `no_leaks` must come after.
    """
    loop_scope = _test_loop_scope(request)
    if loop_scope is not None:
        request.getfixturevalue(f"_tasks_left_on_{loop_scope}_loop")


def _ray_up() -> bool:
    ray = sys.modules.get("ray")  # never import Ray only to ask
    return bool(ray is not None and ray.is_initialized())
