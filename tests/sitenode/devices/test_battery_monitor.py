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
