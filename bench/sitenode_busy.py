"""The site node while a plan runs: does it stay responsive? (imported by bench/sitenode.py)

One process holds the depot node (examples/nodes/depot.yaml plus a 200 kWh battery) as
`gridmesh sitenode serve` wires it: gRPC API, runtime loop, OCPP central system with its 20
chargers connected as simulated OCPP 1.6 charge points, a SunSpec battery simulator polled
by the node's battery monitor, and the stream to a portfolio, which runs as a real
subprocess (`gridmesh portfolio serve`, plaintext on loopback) on the same simulated clock.

The node follows the portfolio's schedule, so its own loop does not plan; the plan measured
is the operator's: the Optimize RPC, which plans locally regardless. Sessions are upserted
with no charger named, in one go (one snapshot, one portfolio solve, waited for before the
measurement so that no portfolio schedule lands during it), overnight stays that cannot
all be served, so the plan is the charger-choice MIP with every lexicographic stage a MIP.

While `runtime.planner.running`: GetStatus every 20 ms (latency on the client), an OCPP
Heartbeat every 100 ms (timed on the charge point around the ocpp library's `call`), an
asyncio ticker every 10 ms (the loop's lag), the battery simulator's reads of model 802
(the node's status polls, seen from the device: their intervals against poll_seconds), the
battery's state machine (UNAVAILABLE would mean the node saw stale telemetry) and the
portfolio stream (connected at every sample, no new stream opened). Clients share the
node's process and loop, as in `rpc_latency`: their own work counts against the node. The
same probes run for 3 s with no plan first: what the machine itself adds. The battery is
polled every `poll_seconds` (1 s here; stale after 3 polls), the stream pings after 1 s of
silence and gives up after 3 s (the defaults), the node sends telemetry every second.

The node's loop is stopped as soon as the Optimize reply is in: left running, its next turn
would start a second MIP plan ("fallback": it followed the portfolio before the operator's
plan replaced the portfolio's schedule), which nothing here measures.

Goals (the issue): GetStatus p99 <= 50 ms, Heartbeat p99 <= 100 ms, polls on time, the
stream not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from portfolio_process import PortfolioProcess  # bench/, last on the path (benchpath)

from sitenode.model.sessions import EVSession
from sitenode.simulators.sunspec_battery import SunSpecBatterySim

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2025, 1, 15, 17, tzinfo=UTC)  # the depot's history covers it; its evening demand window begins
TOKEN = "bench"
PASSWORD = "bench-cp"
STATUS_EVERY, HEARTBEAT_EVERY, TICK_EVERY = 0.020, 0.100, 0.010
BASELINE_SECONDS = 3.0  # the probes with no plan running first, for comparison
GOALS = {"get_status_p99_ms": 50.0, "heartbeat_p99_ms": 100.0}
BATTERY = {"capacity_kwh": 200, "soc_initial_kwh": 120, "soc_min_kwh": 10, "soc_max_kwh": 190}
BATTERY |= {"max_charge_kw": 100, "max_discharge_kw": 100, "soc_final_min_kwh": 10}  # the simulator's: 200 kWh, 100 kW


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def overnight_sessions(n: int, start: datetime, seed: int = 5) -> list[EVSession]:
    """`n` vans arriving over the first 10 h and staying 6-13 h, no charger named: with 20
    chargers and up to n at once some must go short, so every stage of the plan is a MIP
    (bench/optimizer.py's fleet_mip_overloaded, on the depot)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arrive = start + timedelta(minutes=15 * int(rng.integers(0, 40)))
        leave = arrive + timedelta(minutes=15 * int(rng.integers(24, 52)))
        out.append(
            EVSession(
                session_id=f"van-{i:02d}",
                arrival=arrive,
                departure=leave,
                energy_kwh=float(rng.uniform(10, 45)),
                max_kw=float(rng.choice([11.0, 22.0, 50.0])),
                priority=int(rng.integers(1, 4)),
            )
        )
    return out


class CountingBatterySim(SunSpecBatterySim):
    """The simulator, noting when model 802 (SOC, state; what a status poll reads) is read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status_reads: list[float] = []  # perf_counter times

    async def _access(self, *request: Any) -> None:  # (function code, start, address, count, current, values)
        if request[5] is None and request[2] == self.addr[802]:
            self.status_reads.append(time.perf_counter())
        await super()._access(*request)


def portfolio_process(folder: Path, start: datetime, origin_unix: float, time_limit_seconds: float) -> PortfolioProcess:
    """The portfolio on loopback, on the node's simulated clock."""
    body = {
        "portfolio": {
            "store": "portfolio.db",
            "tokens": [{"token": TOKEN, "role": "operator"}],
            "step_minutes": 15,
            "horizon_steps": 96,
            "solve_period_seconds": 86_400,
            "schedule_valid_minutes": 60,
            "ping_interval_seconds": 1.0,
            "ping_timeout_seconds": 3.0,
            "clock_start": start.isoformat(),
            "clock_origin_unix": origin_unix,
        },
        "solver": {"method": "monolithic", "time_limit_seconds": time_limit_seconds},
    }
    return PortfolioProcess(folder, body, env={"GRIDMESH_LOG_LEVEL": "WARNING"})


@dataclass
class Probe:
    """Samples (start time, ms) taken every `every` seconds until `stop`; a late sample is
    followed at once by the next, as a client on a timer would."""

    every: float
    samples: list[tuple[float, float]] = field(default_factory=list)

    async def run(self, sample: Callable[[], Awaitable[float]], stop: asyncio.Event) -> None:
        due = time.perf_counter()
        while not stop.is_set():
            began = time.perf_counter()
            self.samples.append((began, await sample()))
            due += self.every
            wait = due - time.perf_counter()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
            else:
                due = time.perf_counter()

    def summary(self, prefix: str) -> dict[str, float]:
        ms = [v for _, v in self.samples]
        return {
            f"{prefix}_calls": len(ms),
            f"{prefix}_p50_ms": percentile(ms, 0.5),
            f"{prefix}_p99_ms": percentile(ms, 0.99),
            f"{prefix}_max_ms": max(ms) if ms else float("nan"),
        }


class Probes:
    """GetStatus every 20 ms, Heartbeat every 100 ms and a 10 ms ticker (the loop's lag), from
    now until `finish`; `watch` (link up, battery state) is looked at with every GetStatus."""

    def __init__(
        self,
        get_status: Callable[[], Awaitable[float]],
        heartbeat: Callable[[], Awaitable[float]],
        watch: Callable[[], tuple[bool, str]],
    ) -> None:
        self.status, self.beat, self.lag = Probe(STATUS_EVERY), Probe(HEARTBEAT_EVERY), Probe(TICK_EVERY)
        self.watch, self.seen = watch, [watch()]
        self.began, self.seconds = time.perf_counter(), 0.0
        self._stop = asyncio.Event()

        async def status_and_look() -> float:
            ms = await get_status()
            self.look()
            return ms

        self._tasks = [
            asyncio.create_task(self.status.run(status_and_look, self._stop)),
            asyncio.create_task(self.beat.run(heartbeat, self._stop)),
            asyncio.create_task(self.lag.run(_tick, self._stop)),
        ]

    def look(self) -> None:
        self.seen.append(self.watch())

    async def finish(self) -> None:
        """Stop: no sample starts after now; those under way complete and count."""
        self.seconds = time.perf_counter() - self.began
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def summary(self) -> dict[str, float]:
        return {
            **self.status.summary("get_status"),
            **self.beat.summary("heartbeat"),
            "loop_lag_max_ms": max((v for _, v in self.lag.samples), default=float("nan")),
            "loop_lag_p99_ms": percentile([v for _, v in self.lag.samples], 0.99),
        }


async def _tick() -> float:
    t = time.perf_counter()
    await asyncio.sleep(TICK_EVERY)
    return max(0.0, (time.perf_counter() - t - TICK_EVERY) * 1000)


class Warnings(logging.Handler):
    """The node's warnings (perf_counter time, message), kept instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.perf_counter(), f"{record.name}: {record.getMessage()}"))


async def until(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark setup: {what} not reached within {timeout:.0f} s")
        await asyncio.sleep(0.02)


def poll_intervals(reads: list[float], began: float, ended: float) -> list[float]:
    """Intervals between consecutive status polls that overlap [began, ended]: a poll held up
    by the plan shows as one long interval."""
    return [b - a for a, b in zip(reads, reads[1:], strict=False) if b > began and a < ended]


async def busy_node(
    sessions: int, poll_seconds: float, folder: Path, time_limit_seconds: float | None = None
) -> dict[str, Any]:
    """The scenario of the module docstring; its figures as a flat dict. `time_limit_seconds`
    caps the MIP's time limit (the node's own, 10 s, when None) for a short run."""
    import grpc
    from ocpp.v16 import call

    from services.link_client import NodeLink
    from services.node_main import central_system, device_registry, make_node, poll_battery
    from services.server import start, stop
    from services.stubs.gridmesh.v1 import sitenode_pb2, sitenode_pb2_grpc
    from sitenode.clock import SimulatedClock
    from sitenode.devices.battery_monitor import BatteryMonitor
    from sitenode.dispatch import AdapterRegistry
    from sitenode.model.site import BatteryConfig
    from sitenode import node_config as nc
    from sitenode.runtime import BATTERY_ID, Mode
    from sitenode.schedule import ev_column
    from sitenode.simulators.ocpp_charger import SimulatedChargePoint, connect_charge_point, disconnect
    from sitenode.simulators.sunspec_battery import BatterySpec

    origin, setup_began = time.time(), time.perf_counter()
    stale_seconds = 3 * poll_seconds
    logged = Warnings()
    async with contextlib.AsyncExitStack() as stack:
        logging.getLogger().addHandler(logged)
        stack.callback(logging.getLogger().removeHandler, logged)
        # the portfolio's solve of the sessions is setup (waited for before the plan): a short one does
        portfolio = portfolio_process(folder, START, origin, min(2.0, time_limit_seconds or 2.0))
        stack.callback(portfolio.close)
        sim = CountingBatterySim(BatterySpec(capacity_kwh=200, max_kw=100, soc_pct=60), step_seconds=0.1)
        modbus_port = await sim.start()
        stack.push_async_callback(sim.stop)
        await portfolio.open()

        config, base = nc.load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
        site = config.site.model_copy(update={"battery": BatteryConfig(**BATTERY)})
        plan = config.plan
        if time_limit_seconds is not None:
            solver = plan.solver.model_copy(update={"time_limit_seconds": time_limit_seconds})
            plan = plan.model_copy(update={"solver": solver})
        tokens = [nc.TokenConfig(token=TOKEN, role="operator")]
        config = config.model_copy(
            update={
                "site": site,
                "plan": plan,
                "node": config.node.model_copy(update={"journal": str(folder / "node.db"), "tokens": tokens}),
                "devices": nc.DevicesConfig(
                    battery=nc.SunSpecDevice(
                        host="127.0.0.1", port=modbus_port, poll_seconds=poll_seconds, stale_seconds=stale_seconds
                    ),
                    ocpp=nc.OcppCentralSystem(listen="127.0.0.1:0", passwords={c.id: PASSWORD for c in site.chargers}),
                ),
                "portfolio": nc.PortfolioLinkConfig(
                    address=f"127.0.0.1:{portfolio.port}", insecure_loopback=True, telemetry_seconds=1.0
                ),
            }
        )
        assert config.devices.battery is not None and config.portfolio is not None
        # wired as services.node_main.serve wires a node
        registry = AdapterRegistry()
        clock = SimulatedClock(START, 1.0, origin)
        runtime, built = make_node(config, base, "127.0.0.1:0", insecure_loopback=True, clock=clock, registry=registry)
        stack.callback(runtime.close)
        central = central_system(config, runtime)
        assert central is not None
        devices, battery = device_registry(config, base, central)
        assert battery is not None
        stack.push_async_callback(battery.close)
        for asset_id in [c.id for c in site.chargers] + [BATTERY_ID]:
            registry.register(asset_id, devices.get(asset_id))
        ocpp_port = await central.start("127.0.0.1", 0)
        stack.push_async_callback(central.stop)
        await start(built)
        stack.push_async_callback(stop, built, 0.5)
        monitor = BatteryMonitor(battery, runtime, clock, BATTERY_ID, timedelta(seconds=stale_seconds))
        node_stop, io_stop = asyncio.Event(), asyncio.Event()
        link = NodeLink(runtime, config.portfolio, base)
        tasks = [
            asyncio.create_task(runtime.run(node_stop), name="node-loop"),
            asyncio.create_task(link.run(io_stop), name="node-link"),
            asyncio.create_task(poll_battery(monitor, poll_seconds, clock, io_stop), name="battery-poll"),
        ]

        async def halt() -> None:
            node_stop.set()
            io_stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        stack.push_async_callback(halt)
        points: dict[str, tuple[SimulatedChargePoint, asyncio.Task[Any]]] = {}

        async def unplug_all() -> None:
            for cp, task in points.values():
                await disconnect(cp, task)

        stack.push_async_callback(unplug_all)
        for charger in site.chargers:
            points[charger.id] = await connect_charge_point(
                f"ws://127.0.0.1:{ocpp_port}/ocpp", charger.id, PASSWORD, charger.max_kw
            )
            await points[charger.id][0].boot()

        # in force: the portfolio's schedule, over a live stream, the battery polled
        await until(lambda: runtime.link.connected, "the portfolio stream", 60)
        await until(lambda: runtime.mode(clock.now()) is Mode.PORTFOLIO, "the portfolio's schedule", 60)
        await until(lambda: monitor.last_seen is not None, "the battery's first poll", 30)
        evs = overnight_sessions(sessions, START)
        for ev in evs:  # in one go: one snapshot, one portfolio solve
            runtime.upsert_session(ev)

        def planned_by_portfolio() -> bool:  # its schedule names every session once it has seen them
            held = runtime.schedule()
            return held is not None and held.source == "portfolio" and ev_column(evs[-1].session_id) in held.frame

        await until(planned_by_portfolio, "the portfolio's schedule with the sessions", 180)
        await runtime.plans_settled()
        portfolio_version = runtime.journal.latest_version("portfolio")
        connects = link.connects

        meta = [("authorization", f"Bearer {TOKEN}")]
        heartbeat_cp = points[site.chargers[0].id][0]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = sitenode_pb2_grpc.SiteNodeStub(channel)
            for _ in range(5):  # warm both paths
                await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=meta)
                await heartbeat_cp.call(call.Heartbeat())

            async def get_status() -> float:
                t = time.perf_counter()
                await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=meta)
                return (time.perf_counter() - t) * 1000

            async def heartbeat() -> float:
                t = time.perf_counter()
                await heartbeat_cp.call(call.Heartbeat())
                return (time.perf_counter() - t) * 1000

            def watch() -> tuple[bool, str]:
                return runtime.link.connected, runtime.battery_state()

            # the same probes with no plan running, for comparison (the machine's own noise)
            ready = time.perf_counter()
            idle = Probes(get_status, heartbeat, watch)
            await asyncio.sleep(BASELINE_SECONDS)
            await idle.finish()

            asked = time.perf_counter()

            async def optimize_rpc() -> sitenode_pb2.OptimizeResponse:
                return await stub.Optimize(sitenode_pb2.OptimizeRequest(), metadata=meta)

            optimize = asyncio.create_task(optimize_rpc())
            while not runtime.planner.running:
                if optimize.done():
                    raise RuntimeError(f"the plan ended before it was seen running: {optimize.result()}")
                await asyncio.sleep(0.001)
            began, load_before = time.perf_counter(), os.getloadavg()[0]
            busy = Probes(get_status, heartbeat, watch)
            while runtime.planner.running:
                await asyncio.sleep(0.001)
            ended, load_after = time.perf_counter(), os.getloadavg()[0]
            await busy.finish()
            reply: sitenode_pb2.OptimizeResponse = await optimize
            replied = time.perf_counter()
            node_stop.set()  # before the loop's next turn: nothing else to plan in this benchmark
            busy.look()
        drops = link.connects - connects + (0 if runtime.link.connected else 1)
        states = {state for _, state in busy.seen}
        link_ok = [up for up, _ in busy.seen]
        schedules_during = int(runtime.journal.latest_version("portfolio") != portfolio_version)
        # the poll after the plan closes the last interval
        await until(lambda: bool(sim.status_reads) and sim.status_reads[-1] > ended, "a poll after the plan", 30)
        intervals = poll_intervals(sim.status_reads, began, ended)
    return {
        "sessions": sessions,
        "charge_points": len(points),
        "setup_seconds": ready - setup_began,
        "plan_seconds": ended - began,
        "optimize_rpc_seconds": replied - asked,
        "solve_seconds": reply.solve_seconds,
        "solve_status": reply.status,
        "relaxed": list(reply.relaxed),
        "mip_time_limit_seconds": plan.solver.time_limit_seconds,
        **busy.summary(),
        "idle": {"seconds": idle.seconds, **idle.summary()},
        "poll_seconds": poll_seconds,
        "stale_seconds": stale_seconds,
        "polls_overlapping_plan": len(intervals),
        "poll_interval_max_s": max(intervals, default=float("nan")),
        "poll_interval_max_over_poll_seconds": max(intervals, default=float("nan")) / poll_seconds,
        "battery_unavailable": "UNAVAILABLE" in states,
        "battery_states": sorted(states),
        "stream_up_at_every_sample": all(link_ok),
        "stream_drops": drops,
        "portfolio_schedules_during_plan": schedules_during,
        "machine": {"cpus": os.cpu_count(), "load_1m_at_plan_start": load_before, "load_1m_at_plan_end": load_after},
        "warnings_during_plan": [msg for at, msg in logged.records if began <= at <= ended][:20],
        "goals": GOALS,
        "met": {
            "get_status_p99": busy.summary()["get_status_p99_ms"] <= GOALS["get_status_p99_ms"],
            "heartbeat_p99": busy.summary()["heartbeat_p99_ms"] <= GOALS["heartbeat_p99_ms"],
            "polls_on_time": max(intervals, default=0.0) <= 1.5 * poll_seconds and "UNAVAILABLE" not in states,
            "stream_kept": drops == 0 and all(link_ok),
        },
    }


def busy_table(result: dict[str, Any], out: Path) -> Table:
    table = Table(title=f"site node while a {result['sessions']}-session MIP plan runs ({out})")
    for col in ("", "p50 ms", "p99 ms", "max ms", "calls", "goal p99 ms"):
        table.add_column(col)
    idle = result["idle"]
    for name, key in (("GetStatus", "get_status"), ("OCPP Heartbeat", "heartbeat")):
        for when, figures, goal in (("plan running", result, f"{GOALS[f'{key}_p99_ms']:.0f}"), ("no plan", idle, "")):
            table.add_row(
                f"{name}, {when}",
                f"{figures[f'{key}_p50_ms']:.2f}",
                f"{figures[f'{key}_p99_ms']:.2f}",
                f"{figures[f'{key}_max_ms']:.2f}",
                str(figures[f"{key}_calls"]),
                goal,
            )
    for when, figures in (("plan running", result), ("no plan", idle)):
        table.add_row(
            f"loop lag (10 ms ticker), {when}",
            "",
            f"{figures['loop_lag_p99_ms']:.2f}",
            f"{figures['loop_lag_max_ms']:.2f}",
            "",
            "",
        )
    table.caption = (
        f"plan {result['plan_seconds']:.1f} s ({result['solve_status']}, Optimize RPC "
        f"{result['optimize_rpc_seconds']:.1f} s); SunSpec polls: max interval {result['poll_interval_max_s']:.2f} s "
        f"for poll_seconds {result['poll_seconds']:g} ({result['polls_overlapping_plan']} intervals), battery "
        f"{'UNAVAILABLE' if result['battery_unavailable'] else 'never UNAVAILABLE'}; portfolio stream: "
        f"{result['stream_drops']} drops; goals met: {', '.join(k for k, v in result['met'].items() if v) or 'none'}"
    )
    return table
