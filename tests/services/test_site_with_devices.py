"""Issue 4's site: one node, 10 simulated charge points (five OCPP 1.6, five 2.0.1) and a
simulated SunSpec battery, all over real sockets. Sessions appear from the chargers, the
schedule reaches every charger as a profile and the battery as a setpoint, and meter
values and SOC come back."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.node_main import central_system, device_registry
from sitenode.clock import RealClock
from sitenode.devices.battery_monitor import BatteryMonitor
from sitenode.dispatch import CommandType
from sitenode.model.site import BatteryConfig
from sitenode.node_config import OcppCentralSystem, SunSpecDevice, load_node_config
from sitenode.runtime import NodeRuntime
from sitenode.schedule import CHARGE, DISCHARGE, ev_column
from sitenode.simulators.ocpp_charger import connect_charge_point, disconnect
from sitenode.simulators.sunspec_battery import BatterySpec, SunSpecBatterySim

ROOT = Path(__file__).resolve().parents[2]
CHARGERS = [f"ac-{i:02d}" for i in range(1, 11)]


async def test_ten_mixed_chargers_and_a_battery(tmp_path, monkeypatch):
    monkeypatch.setenv("CP_PW", "pw")
    battery_sim = SunSpecBatterySim(BatterySpec(capacity_kwh=200, max_kw=100, soc_pct=60), step_seconds=0.05)
    modbus_port = await battery_sim.start()
    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    site = config.site.model_copy(
        update={
            "battery": BatteryConfig(
                capacity_kwh=200,
                soc_initial_kwh=100,
                soc_min_kwh=10,
                soc_max_kwh=190,
                max_charge_kw=100,
                max_discharge_kw=100,
                soc_final_min_kwh=10,
            )
        }
    )
    config = config.model_copy(
        update={
            "site": site,
            "node": config.node.model_copy(update={"journal": str(tmp_path / "j.db")}),
            "devices": config.devices.model_copy(
                update={
                    "battery": SunSpecDevice(host="127.0.0.1", port=modbus_port, revert_seconds=600),
                    "ocpp": OcppCentralSystem(listen="127.0.0.1:0", password_env="CP_PW"),
                }
            ),
        }
    )
    from sitenode.dispatch import AdapterRegistry

    registry = AdapterRegistry()
    runtime = NodeRuntime(config, base, RealClock(), registry)
    central = central_system(config, runtime)
    devices, battery = device_registry(config, base, central)
    for asset_id in [c.id for c in site.chargers] + ["battery"]:
        registry.register(asset_id, devices.get(asset_id))
    port = await central.start("127.0.0.1", 0)
    points = {}
    try:
        for i, cid in enumerate(CHARGERS):
            points[cid] = await connect_charge_point(
                f"ws://127.0.0.1:{port}/ocpp", cid, "pw", 22.0, version="1.6" if i < 5 else "2.0.1"
            )
            await points[cid][0].boot()
            await points[cid][0].plug_in(ev_kw=11.0)
        monitor = BatteryMonitor(battery, runtime, runtime.clock, stale_after=timedelta(seconds=30))
        await monitor.poll()
        assert runtime.soc_kwh == pytest.approx(120.0)  # 60 % of 200 kWh, over Modbus
        assert sorted(s.charger_id for s in runtime.journal.sessions()) == CHARGERS
        assert all(runtime.machines[c].state == "CHARGING" for c in CHARGERS)

        out = runtime.optimize()
        await runtime.engine.tick(datetime.now(UTC))
        first = out.plan.schedule.iloc[0]
        for cid in CHARGERS:
            cp = points[cid][0]
            planned_kw = first[ev_column(f"{cid}-tx")]
            assert cp.limits_w["TxProfile"] == pytest.approx(planned_kw * 1000, abs=1)
            await cp.report_power()
            assert runtime.charger_kw[cid] == pytest.approx(min(planned_kw, 11.0), abs=0.01)
        assert battery_sim.commanded_kw() == pytest.approx(first[CHARGE] - first[DISCHARGE], abs=0.1)
        completed = [c for c in runtime.journal.commands() if c.state == "COMPLETED"]
        assert {c.asset_id for c in completed if c.type is CommandType.SET_CHARGE_RATE} >= set(CHARGERS)
        await asyncio.sleep(0.2)
        await monitor.poll()
        assert runtime.battery_state() in ("IDLE", "CHARGING", "DISCHARGING")
    finally:
        for cp, task in points.values():
            await disconnect(cp, task)
        await central.stop()
        await battery.close()
        runtime.close()
        await battery_sim.stop()
