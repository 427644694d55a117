"""Site node benchmark: commands per second through the dispatch engine to a no-op adapter,
with the SQLite journal on (WAL, synchronous=FULL).

    python bench/sitenode.py [--commands N] [--batch N] [--out FILE]

Goal (issue 3): >= 5,000 commands/s. RPC latencies (GetStatus, Optimize) join this
benchmark with the SiteNode service.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this file shares its name with the package it measures: keep bench/ off the path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta

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
    engine = DispatchEngine(registry, EventBus(), journal, {a: AssetRating(a, "charger", 1e6) for a in assets}, lambda _: None)
    ticks = total // per_tick
    plan = [Command.new("v1", assets[i % per_tick], CommandType.SET_CHARGE_RATE, float(i), T0 + timedelta(seconds=i // per_tick)) for i in range(ticks * per_tick)]
    started = time.perf_counter()
    engine.submit(plan, T0)
    submitted = time.perf_counter()
    for k in range(ticks):
        await engine.tick(T0 + timedelta(seconds=k))
    finished = time.perf_counter()
    journal.close()
    n = ticks * per_tick
    return {"commands": n, "per_tick": per_tick, "submit_seconds": submitted - started, "dispatch_seconds": finished - submitted,
            "commands_per_second": n / (finished - started), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=50, help="commands due per tick (assets)")
    parser.add_argument("--out", default="bench/results/sitenode.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(dispatch_rate(args.commands, args.batch, Path(folder)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "sitenode", "dispatch": result}, indent=2) + "\n")
    table = Table(title=f"site node benchmark ({out})")
    for col in ("commands", "per tick", "submit s", "dispatch s", "commands/s", "peak RSS MB"):
        table.add_column(col)
    table.add_row(str(result["commands"]), str(result["per_tick"]), f"{result['submit_seconds']:.2f}", f"{result['dispatch_seconds']:.2f}",
                  f"{result['commands_per_second']:,.0f}", f"{result['peak_rss_mb']:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
