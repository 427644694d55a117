"""Battery telemetry into the node: SOC for planning, and the battery's state machine.

`battery_trigger` is the pure rule: an alarm faults the battery, telemetry older than
the stale limit makes it UNAVAILABLE, fresh telemetry brings it back, and the measured
power moves it between IDLE, CHARGING and DISCHARGING. `BatteryMonitor` polls a device
on the node's clock and applies the rule; a failed poll is just missing telemetry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sitenode.clock import Clock
from sitenode.devices.modbus_battery import BatteryStatus
from sitenode.dispatch import AdapterError
from sitenode.state import BatteryState

log = logging.getLogger(__name__)
B = BatteryState


def battery_trigger(state: str, *, stale: bool, alarm: bool, charge_state: int) -> str | None:
    """The trigger telemetry calls for in `state`, or None. ChaSt 4 charging, 3 discharging."""
    if stale:
        return None if state == B.UNAVAILABLE else "disable"
    if state == B.UNAVAILABLE:
        return "enable"
    if alarm:
        return None if state == B.FAULTED else "fault"
    if state == B.FAULTED:
        return "reset"
    wanted = B.CHARGING if charge_state == 4 else B.DISCHARGING if charge_state == 3 else B.IDLE
    if wanted == state:
        return None
    return {B.CHARGING: "charge", B.DISCHARGING: "discharge", B.IDLE: "stop"}[wanted]


class StatusSource(Protocol):
    async def status(self) -> BatteryStatus: ...


class BatteryNode(Protocol):
    def record_battery(self, soc_kwh: float, at: datetime) -> None: ...
    def battery_state(self) -> str: ...
    def fire(self, asset_id: str, trigger: str) -> object: ...


@dataclass
class BatteryMonitor:
    device: StatusSource
    node: BatteryNode
    clock: Clock
    asset_id: str = "battery"
    stale_after: timedelta = timedelta(seconds=30)
    last_seen: datetime | None = None

    async def poll(self) -> None:
        now = self.clock.now()
        status: BatteryStatus | None = None
        try:
            status = await self.device.status()
        except AdapterError as exc:
            log.warning("battery poll failed: %s", exc)
        if status is not None:
            self.last_seen = now
            self.node.record_battery(status.soc_pct / 100 * status.capacity_kwh, now)
        stale = self.last_seen is None or now - self.last_seen > self.stale_after
        if status is None and not stale:
            return  # one missed poll says nothing about the battery yet
        trigger = battery_trigger(
            self.node.battery_state(),
            stale=stale,
            alarm=bool(status and status.alarms),
            charge_state=status.charge_state if status else 1,
        )
        # one step per poll; the next poll takes the next (e.g. enable, then charge)
        if trigger is not None:
            self.node.fire(self.asset_id, trigger)
