"""Battery telemetry drives its state machine and the node's SOC."""

from datetime import UTC, datetime, timedelta

import pytest

from sitenode.devices.battery_monitor import BatteryMonitor, battery_trigger
from sitenode.devices.modbus_battery import BatteryStatus
from sitenode.dispatch import AdapterError
from sitenode.state import BATTERY, StateMachine

T0 = datetime(2025, 1, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "stale", "alarm", "cha", "trigger"),
    [
        ("IDLE", True, False, 1, "disable"),
        ("UNAVAILABLE", True, False, 1, None),
        ("UNAVAILABLE", False, False, 4, "enable"),
        ("CHARGING", False, True, 4, "fault"),
        ("FAULTED", False, True, 1, None),
        ("FAULTED", False, False, 1, "reset"),
        ("IDLE", False, False, 4, "charge"),
        ("IDLE", False, False, 3, "discharge"),
        ("CHARGING", False, False, 1, "stop"),
        ("DISCHARGING", False, False, 3, None),
    ],
)
def test_trigger_rule(state, stale, alarm, cha, trigger):
    assert battery_trigger(state, stale=stale, alarm=alarm, charge_state=cha) == trigger
    if trigger is not None:  # every trigger the rule picks is legal from that state
        assert StateMachine(BATTERY, "b", state).can(trigger)


class Clock:
    def __init__(self):
        self.t = T0

    def now(self):
        return self.t


class Node:
    def __init__(self):
        self.fsm = StateMachine(BATTERY, "battery")
        self.soc = None

    def record_battery(self, soc_kwh, at):
        self.soc = soc_kwh

    def battery_state(self):
        return self.fsm.state

    def fire(self, asset_id, trigger):
        return self.fsm.fire(trigger)


class Device:
    def __init__(self):
        self.status_value = BatteryStatus(40.0, 100.0, 50.0, 50.0, 4, 0)
        self.fail = False

    async def status(self):
        if self.fail:
            raise AdapterError("timeout")
        return self.status_value


async def test_monitor_follows_the_device():
    clock, node, device = Clock(), Node(), Device()
    monitor = BatteryMonitor(device, node, clock, stale_after=timedelta(seconds=30))
    await monitor.poll()
    assert node.soc == pytest.approx(40.0) and node.fsm.state == "CHARGING"
    device.fail = True
    clock.t += timedelta(seconds=10)
    await monitor.poll()
    assert node.fsm.state == "CHARGING"  # a missed poll is not yet stale
    clock.t += timedelta(seconds=31)
    await monitor.poll()
    assert node.fsm.state == "UNAVAILABLE"
    device.fail = False
    device.status_value = BatteryStatus(41.0, 100.0, 50.0, 50.0, 1, 0x4)
    clock.t += timedelta(seconds=1)
    await monitor.poll()
    assert node.fsm.state == "IDLE"  # back from UNAVAILABLE first
    await monitor.poll()
    assert node.fsm.state == "FAULTED"  # then the alarm


async def test_monitor_follows_a_704_device_and_outlives_one_it_cannot_control(caplog):
    import asyncio

    from sitenode.devices.modbus_battery import SunSpecBattery
    from sitenode.dispatch import AssetRating, Command, CommandType
    from sitenode.simulators.sunspec_battery import BatterySpec, SunSpecBatterySim

    rating = AssetRating("battery", "battery", 50.0, 50.0)
    sims = [
        SunSpecBatterySim(BatterySpec(capacity_kwh=100, max_kw=80, soc_pct=30), step_seconds=0.02, speed=600, control=c)
        for c in (704, None)
    ]
    ports = [await s.start() for s in sims]
    good, bad = (SunSpecBattery("127.0.0.1", p, rating, revert_seconds=3600) for p in ports)
    try:
        clock, node = Clock(), Node()
        monitor = BatteryMonitor(good, node, clock, stale_after=timedelta(seconds=30))
        await good.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 40.0, T0))
        await asyncio.sleep(0.2)
        await monitor.poll()
        assert node.fsm.state == "CHARGING" and node.soc > 30.0  # 802's ChaSt and SoC, 100 kWh
        await good.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 0.0, T0))
        await asyncio.sleep(0.1)
        await monitor.poll()
        assert node.fsm.state == "IDLE"

        clock, node = Clock(), Node()
        monitor = BatteryMonitor(bad, node, clock, stale_after=timedelta(seconds=30))
        await monitor.poll()  # refused: logged with the reason, not raised
        assert node.soc is None and node.fsm.state == "UNAVAILABLE"
        assert "neither 124 (storage_basic) nor 704 (DERCtlAC)" in caplog.text
        await monitor.poll()  # and again, inside the reconnect back-off
        assert node.fsm.state == "UNAVAILABLE"
    finally:
        await good.close()
        await bad.close()
        for s in sims:
            await s.stop()
