"""Run by test_crash_recovery as a separate process: dispatch N commands, one per
simulated second, to a "device" that appends every command it receives to a file."""

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sitenode.dispatch import AdapterRegistry, AssetRating, Command, CommandType, DispatchEngine
from sitenode.events import EventBus
from sitenode.journal import Journal

T0 = datetime(2025, 1, 15, tzinfo=UTC)


class FileDevice:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a")

    async def execute(self, command: Command) -> None:
        self.file.write(f"{command.id} {command.value_kw}\n")
        self.file.flush()
        os.fsync(self.file.fileno())


def plan(n: int) -> list[Command]:
    return [
        Command.new("v1", f"cp-{i % 5}", CommandType.SET_CHARGE_RATE, float(i), T0 + timedelta(seconds=i))
        for i in range(n)
    ]


async def main(folder: Path, n: int, pause: float) -> None:
    registry = AdapterRegistry()
    device = FileDevice(folder / "device.log")
    for i in range(5):
        registry.register(f"cp-{i}", device)
    journal = Journal(folder / "journal.db")
    ratings = {f"cp-{i}": AssetRating(f"cp-{i}", "charger", 1e6) for i in range(5)}
    engine = DispatchEngine(registry, EventBus(), journal, ratings, lambda _: None)
    engine.submit(plan(n), T0)
    for k in range(n + 1):
        await engine.tick(T0 + timedelta(seconds=k))
        await asyncio.sleep(pause)
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
