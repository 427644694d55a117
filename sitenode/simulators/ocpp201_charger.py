"""A simulated OCPP 2.0.1 charging station with one EVSE (the `ocpp` library's client side)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result

from sitenode.simulators import device_log
from sitenode.simulators.ocpp_charger import RESPONSE_TIMEOUT_SECONDS


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SimulatedChargingStation(ChargePoint):
    def __init__(self, charger_id: str, connection: object, max_kw: float) -> None:
        super().__init__(charger_id, connection, response_timeout=RESPONSE_TIMEOUT_SECONDS)
        self.max_kw = max_kw
        self.limits_w: dict[str, float] = {}
        self.units: dict[str, str] = {}
        self.watts_per_amp = 230.0 * 3  # three-phase 230 V
        self.transaction_id: str | None = None
        self.ev_kw = 0.0
        self.energy_wh = 0.0  # Energy.Active.Import.Register
        self._seq = itertools.count()
        self._tx = itertools.count(1)

    @on("SetChargingProfile")
    async def on_profile(
        self, evse_id: int, charging_profile: dict, custom_data: dict | None = None, **_: object
    ) -> call_result.SetChargingProfile:
        purpose = charging_profile["charging_profile_purpose"]
        if purpose == "TxProfile" and charging_profile.get("transaction_id") != self.transaction_id:
            return call_result.SetChargingProfile(status="Rejected")
        schedule = charging_profile["charging_schedule"][0]
        limit = float(schedule["charging_schedule_period"][0]["limit"])
        self.units[purpose] = schedule["charging_rate_unit"]
        self.limits_w[purpose] = limit * self.watts_per_amp if schedule["charging_rate_unit"] == "A" else limit
        device_log.shared().write(
            self.id,
            "apply",
            purpose=purpose,
            kw=round(self.limits_w[purpose] / 1000, 4),
            profile_id=charging_profile.get("id"),
            cmd=(custom_data or {}).get("command_id"),  # the node's command id, in the request's customData
            tx=self.transaction_id,
        )
        return call_result.SetChargingProfile(status="Accepted")

    @after("SetChargingProfile")
    async def after_profile(self, **_: object) -> None:
        await self.report_power()  # the new draw at once, as a charging station reports a changed limit

    @on("RequestStartTransaction")
    async def on_start(self, id_token: dict, remote_start_id: int, **_: object) -> call_result.RequestStartTransaction:
        return call_result.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    async def on_stop(self, transaction_id: str, **_: object) -> call_result.RequestStopTransaction:
        return call_result.RequestStopTransaction(
            status="Accepted" if transaction_id == self.transaction_id else "Rejected"
        )

    @on("ChangeAvailability")
    async def on_availability(self, operational_status: str, **_: object) -> call_result.ChangeAvailability:
        return call_result.ChangeAvailability(status="Accepted")

    def power_kw(self) -> float:
        if self.transaction_id is None:
            return 0.0
        tx = self.limits_w.get("TxProfile", self.limits_w.get("TxDefaultProfile", 1e12))
        return (
            max(
                0.0,
                min(self.max_kw * 1000, self.ev_kw * 1000, tx, self.limits_w.get("ChargingStationMaxProfile", 1e12)),
            )
            / 1000
        )

    async def status(self, connector_status: str) -> None:
        await self.call(
            call.StatusNotification(timestamp=_now(), connector_status=connector_status, evse_id=1, connector_id=1)
        )

    async def boot(self) -> None:
        await self.call(
            call.BootNotification(charging_station={"model": "sim-201", "vendor_name": "gridmesh"}, reason="PowerUp")
        )
        await self.status("Available")

    async def _event(self, event_type: str, trigger: str, charging_state: str | None = None) -> None:
        info = {"transaction_id": self.transaction_id}
        if charging_state:
            info["charging_state"] = charging_state
        meter = [
            {
                "timestamp": _now(),
                "sampled_value": [
                    {"value": self.power_kw() * 1000, "measurand": "Power.Active.Import"},
                    {"value": self.energy_wh, "measurand": "Energy.Active.Import.Register"},
                ],
            }
        ]
        await self.call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=_now(),
                trigger_reason=trigger,
                seq_no=next(self._seq),
                transaction_info=info,
                meter_value=meter,
                evse={"id": 1, "connector_id": 1},
            )
        )

    async def plug_in(self, ev_kw: float) -> str:
        self.ev_kw = ev_kw
        await self.status("Occupied")
        self.transaction_id = f"tx-{next(self._tx)}"
        await self._event("Started", "CablePluggedIn", "Charging")
        return self.transaction_id

    async def report_power(self) -> None:
        if self.transaction_id is None:
            return  # 2.0.1 reports meter values inside a transaction; with no car there is none
        await self._event("Updated", "MeterValuePeriodic", "Charging")

    async def unplug(self) -> None:
        if self.transaction_id is None:
            return
        await self._event("Ended", "EVCommunicationLost", "Idle")
        self.transaction_id = None
        self.limits_w.pop("TxProfile", None)
        await self.status("Available")
