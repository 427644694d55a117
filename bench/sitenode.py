"""Site node benchmark: RPC latency of GetStatus and Optimize on the depot example over
loopback gRPC, and commands per second through the dispatch engine to a no-op adapter
with the SQLite journal on (WAL, synchronous=FULL).

    python bench/sitenode.py [--commands N] [--batch N] [--calls N] [--busy-sessions N]
                             [--busy-poll-seconds S] [--busy-time-limit S] [--skip-busy] [--out FILE]

Goals (issue 3): GetStatus p99 <= 5 ms; Optimize on the depot day within 1.5 x the bare
optimizer's time; >= 5,000 commands/s through the engine with the journal on.

`busy` (bench/sitenode_busy.py): the depot node with its chargers, battery and portfolio
stream while an N-session charger-choice MIP plan runs (GetStatus p99 <= 50 ms, OCPP
Heartbeat p99 <= 100 ms, SunSpec polls on time, the portfolio stream not dropped).
"""

from __future__ import annotations

import benchpath  # noqa: F401 - first: keeps bench/ from shadowing the sitenode package

import argparse
import asyncio
import json
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sitenode.dispatch import AdapterRegistry, AssetRating, Command, CommandType, DispatchEngine
from sitenode.events import EventBus
from sitenode.journal import Journal

T0 = datetime(2025, 1, 15, tzinfo=UTC)


class NoOp:
    async def execute(self, command: Command) -> None:
        return None


async def dispatch_rate(total: int, per_tick: int, folder: Path) -> dict[str, float]:
    assets = [f"cp-{i}" for i in range(per_tick)]
    registry = AdapterRegistry()
    for a in assets:
        registry.register(a, NoOp())
    journal = Journal(folder / "journal.db")
    engine = DispatchEngine(
        registry, EventBus(), journal, {a: AssetRating(a, "charger", 1e6) for a in assets}, lambda _: None
    )
    ticks = total // per_tick
    plan = [
        Command.new(
            "v1", assets[i % per_tick], CommandType.SET_CHARGE_RATE, float(i), T0 + timedelta(seconds=i // per_tick)
        )
        for i in range(ticks * per_tick)
    ]
    started = time.perf_counter()
    engine.submit(plan, T0)
    submitted = time.perf_counter()
    for k in range(ticks):
        await engine.tick(T0 + timedelta(seconds=k))
    finished = time.perf_counter()
    journal.close()
    n = ticks * per_tick
    return {
        "commands": n,
        "per_tick": per_tick,
        "submit_seconds": submitted - started,
        "dispatch_seconds": finished - submitted,
        "commands_per_second": n / (finished - started),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def rpc_latency(calls: int, folder: Path) -> dict[str, float]:
    import grpc

    from services.node_main import make_node
    from services.server import start, stop
    from services.stubs.gridmesh.v1 import sitenode_pb2, sitenode_pb2_grpc
    from sitenode.bundle.io import read_sessions
    from sitenode.clock import SimulatedClock
    from sitenode.node_config import TokenConfig, load_node_config

    root = Path(__file__).resolve().parents[1]
    config, base = load_node_config(root / "examples" / "nodes" / "depot.yaml")
    config = config.model_copy(
        update={
            "node": config.node.model_copy(
                update={"journal": str(folder / "node.db"), "tokens": [TokenConfig(token="bench", role="operator")]}
            )
        }
    )
    # the depot day: its 20 EV sessions, at the start of the bundle's horizon
    runtime, built = make_node(
        config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(datetime(2025, 1, 15, 17, tzinfo=UTC))
    )
    for session in read_sessions(root / "examples" / "bundles" / "depot" / "sessions.csv", config.site):
        runtime.upsert_session(session)
    await start(built)
    meta = [("authorization", "Bearer bench")]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        stub = sitenode_pb2_grpc.SiteNodeStub(channel)
        await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=meta)
        status_ms = []
        for _ in range(calls):
            t = time.perf_counter()
            await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=meta)
            status_ms.append((time.perf_counter() - t) * 1000)
        optimize_ms, bare_ms = [], []
        for _ in range(max(5, calls // 100)):
            t = time.perf_counter()
            reply = await stub.Optimize(sitenode_pb2.OptimizeRequest(), metadata=meta)
            optimize_ms.append((time.perf_counter() - t) * 1000)
            bare_ms.append(reply.solve_seconds * 1000)
    await stop(built, 0.1)
    runtime.close()
    return {
        "get_status_p50_ms": _percentile(status_ms, 0.5),
        "get_status_p99_ms": _percentile(status_ms, 0.99),
        "optimize_p50_ms": _percentile(optimize_ms, 0.5),
        "optimize_p99_ms": _percentile(optimize_ms, 0.99),
        "bare_optimizer_p50_ms": _percentile(bare_ms, 0.5),
        "optimize_over_bare": _percentile(optimize_ms, 0.5) / max(_percentile(bare_ms, 0.5), 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=50, help="commands due per tick (assets)")
    parser.add_argument("--calls", type=int, default=2000, help="GetStatus calls (Optimize: a hundredth)")
    parser.add_argument("--busy-sessions", type=int, default=50, help="sessions of the plan in the busy scenario")
    parser.add_argument("--busy-poll-seconds", type=float, default=1.0, help="the battery's poll period there")
    parser.add_argument(
        "--busy-time-limit", type=float, help="cap the MIP's time limit there (seconds; default: the node's, 10)"
    )
    parser.add_argument("--skip-busy", action="store_true", help="leave the busy-node scenario out")
    parser.add_argument("--out", default="bench/results/sitenode.json")
    args = parser.parse_args()
    busy: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(dispatch_rate(args.commands, args.batch, Path(folder)))
        rpc = asyncio.run(rpc_latency(args.calls, Path(folder)))
    if not args.skip_busy:
        import sitenode_busy  # bench/, last on the path (benchpath)

        with tempfile.TemporaryDirectory() as folder:
            busy = asyncio.run(
                sitenode_busy.busy_node(args.busy_sessions, args.busy_poll_seconds, Path(folder), args.busy_time_limit)
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"benchmark": "sitenode", "dispatch": result, "rpc": rpc}
    if busy is not None:
        doc["busy"] = busy
    out.write_text(json.dumps(doc, indent=2) + "\n")
    latency = Table(title="RPC latency over loopback (depot example)")
    for col in (
        "GetStatus p50 ms",
        "GetStatus p99 ms",
        "Optimize p50 ms",
        "Optimize p99 ms",
        "bare optimizer p50 ms",
        "Optimize / bare",
    ):
        latency.add_column(col)
    latency.add_row(
        *(
            f"{rpc[k]:.2f}"
            for k in (
                "get_status_p50_ms",
                "get_status_p99_ms",
                "optimize_p50_ms",
                "optimize_p99_ms",
                "bare_optimizer_p50_ms",
                "optimize_over_bare",
            )
        )
    )
    Console().print(latency)
    table = Table(title=f"site node benchmark ({out})")
    for col in ("commands", "per tick", "submit s", "dispatch s", "commands/s", "peak RSS MB"):
        table.add_column(col)
    table.add_row(
        str(result["commands"]),
        str(result["per_tick"]),
        f"{result['submit_seconds']:.2f}",
        f"{result['dispatch_seconds']:.2f}",
        f"{result['commands_per_second']:,.0f}",
        f"{result['peak_rss_mb']:.0f}",
    )
    Console().print(table)
    if busy is not None:
        Console().print(sitenode_busy.busy_table(busy, out))


if __name__ == "__main__":
    main()
