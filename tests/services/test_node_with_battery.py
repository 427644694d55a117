"""A node driving the SunSpec battery simulator over real Modbus TCP: the plan's setpoint
reaches the battery, and the battery's SOC comes back into the node."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from services.node_main import device_registry, make_node
from sitenode.clock import SimulatedClock
from sitenode.devices.battery_monitor import BatteryMonitor
from sitenode.node_config import SunSpecDevice, load_node_config
from sitenode.schedule import CHARGE, DISCHARGE
from sitenode.simulators.sunspec_battery import BatterySpec, SunSpecBatterySim

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 6, 11, 4, 0, tzinfo=UTC)  # the office bundle's horizon start


async def test_plan_reaches_the_battery_and_soc_comes_back(tmp_path):
    sim = SunSpecBatterySim(BatterySpec(capacity_kwh=200, max_kw=100, soc_pct=50), step_seconds=0.05)
    port = await sim.start()
    config, base = load_node_config(ROOT / "examples" / "nodes" / "office.yaml")
    config = config.model_copy(
        update={
            "node": config.node.model_copy(update={"journal": str(tmp_path / "j.db")}),
            "devices": config.devices.model_copy(
                update={"battery": SunSpecDevice(host="127.0.0.1", port=port, revert_seconds=600)}
            ),
        }
    )
    registry, battery = device_registry(config, base)
    runtime, _ = make_node(
        config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(NOW), registry=registry
    )
    try:
        monitor = BatteryMonitor(battery, runtime, runtime.clock, stale_after=timedelta(seconds=30))
        await monitor.poll()
        assert runtime.soc_kwh == pytest.approx(100.0)  # 50 % of 200 kWh, read over Modbus
        out = runtime.optimize()
        first = out.plan.schedule.iloc[0]
        await runtime.engine.tick(runtime.clock.now())
        assert sim.commanded_kw() == pytest.approx(first[CHARGE] - first[DISCHARGE], abs=0.1)
        assert runtime.battery_state() in ("IDLE", "CHARGING", "DISCHARGING")
    finally:
        await battery.close()
        runtime.close()
        await sim.stop()


def test_sim_battery_command_serves_a_scannable_device():
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "sim", "battery", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split()[0])

        async def read() -> list[int]:
            client = AsyncModbusTcpClient("127.0.0.1", port=port)
            await client.connect()
            reply = await client.read_holding_registers(40000, count=4)
            client.close()
            return reply.registers

        assert asyncio.run(read()) == [0x5375, 0x6E53, 1, 66]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
