"""Device protocol benchmark: 200 simulated OCPP charge points on one central system
(connect + boot time, SetChargingProfile round trip) and SunSpec Modbus setpoint write
-> read-back latency, all on loopback.

    python bench/protocols.py [--chargers N] [--calls N] [--out FILE]

Goals (issue 4): all 200 connected and booted within 10 s; SetChargingProfile p99
<= 50 ms; Modbus write -> read-back p99 <= 20 ms.
"""

from __future__ import annotations

import benchpath  # noqa: F401 - first: keeps bench/ from shadowing the sitenode package
import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sitenode.devices.modbus_battery import SunSpecBattery
from sitenode.devices.ocpp_central import CentralSystem
from sitenode.dispatch import AssetRating, Command, CommandType
from sitenode.simulators.ocpp_charger import connect_charge_point, disconnect
from sitenode.simulators.sunspec_battery import BatterySpec, SunSpecBatterySim


class Quiet:
    """The node side of the central system, reduced to counting what arrives."""

    def __init__(self) -> None:
        self.statuses = 0

    def charger_status(self, charger_id: str, ocpp_status: str) -> None:
        self.statuses += 1

    def charger_transaction(self, charger_id: str, transaction_id: int | None, id_tag: str, at: datetime) -> None:
        pass

    def charger_power(self, charger_id: str, kw: float, at: datetime) -> None:
        pass


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def ocpp(n: int, calls: int) -> dict[str, float]:
    ids = [f"cp-{i:03d}" for i in range(n)]
    central = CentralSystem(Quiet(), {i: "pw" for i in ids}, {i: 11000.0 for i in ids})
    port = await central.start("127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/ocpp"
    started = time.perf_counter()

    async def one(cid: str):  # noqa: ANN202
        cp, task = await connect_charge_point(url, cid, "pw", 22.0)
        await cp.boot()
        return cp, task

    points = await asyncio.gather(*(one(i) for i in ids))
    booted = time.perf_counter() - started
    rtts = []
    for k in range(calls):
        cid = ids[k % n]
        command = Command.new("bench", cid, CommandType.SET_CHARGE_RATE, 5.0 + k % 7, datetime.now(UTC))
        t = time.perf_counter()
        await central.adapter(cid).execute(command)
        rtts.append((time.perf_counter() - t) * 1000)
    for cp, task in points:
        await disconnect(cp, task)
    await central.stop()
    return {
        "charge_points": n,
        "connect_and_boot_seconds": booted,
        "set_profile_p50_ms": pct(rtts, 0.5),
        "set_profile_p99_ms": pct(rtts, 0.99),
    }


async def modbus(calls: int) -> dict[str, float]:
    sim = SunSpecBatterySim(BatterySpec(capacity_kwh=200, max_kw=100))
    port = await sim.start()
    adapter = SunSpecBattery("127.0.0.1", port, AssetRating("battery", "battery", 100, 100))
    await adapter.connect()
    times = []
    for k in range(calls):
        t = time.perf_counter()
        await adapter.execute(
            Command.new("bench", "battery", CommandType.SET_CHARGE_RATE, float(k % 50), datetime.now(UTC))
        )
        times.append((time.perf_counter() - t) * 1000)
    await adapter.close()
    await sim.stop()
    return {"write_readback_p50_ms": pct(times, 0.5), "write_readback_p99_ms": pct(times, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chargers", type=int, default=200)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--out", default="bench/results/protocols.json")
    args = parser.parse_args()
    result = {"ocpp": asyncio.run(ocpp(args.chargers, args.calls)), "modbus": asyncio.run(modbus(args.calls))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "protocols", **result}, indent=2) + "\n")
    table = Table(title=f"protocol benchmark ({out})")
    for col in (
        "charge points",
        "connect+boot s",
        "SetChargingProfile p50 ms",
        "p99 ms",
        "Modbus write->read p50 ms",
        "p99 ms",
    ):
        table.add_column(col)
    o, m = result["ocpp"], result["modbus"]
    table.add_row(
        str(o["charge_points"]),
        f"{o['connect_and_boot_seconds']:.2f}",
        f"{o['set_profile_p50_ms']:.2f}",
        f"{o['set_profile_p99_ms']:.2f}",
        f"{m['write_readback_p50_ms']:.2f}",
        f"{m['write_readback_p99_ms']:.2f}",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
