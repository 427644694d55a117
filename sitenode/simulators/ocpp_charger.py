"""A simulated OCPP 1.6 charge point (the `ocpp` library's client side) for tests, the
demo and users: it boots, plugs EVs in and out, obeys charging profiles and reports
the power it draws (the lowest of its rating, the EV's rate and its active limits)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from datetime import UTC, datetime
from ssl import SSLContext

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16 import enums as e
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from sitenode.simulators import device_log

RESPONSE_TIMEOUT_SECONDS = 10.0  # how long a charge point waits for the central system's reply
CLOSE_TIMEOUT_SECONDS = 2.0  # a closing handshake the central system leaves unanswered: the socket is dropped


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SimulatedChargePoint(ChargePoint):
    def __init__(self, charger_id: str, connection: ClientConnection, max_kw: float) -> None:
        super().__init__(charger_id, connection, response_timeout=RESPONSE_TIMEOUT_SECONDS)
        self.max_kw = max_kw
        self.limits_w: dict[str, float] = {}  # profile purpose -> limit
        self.transaction_id: int | None = None
        self.ev_kw = 0.0
        self.available = True
        self.units: dict[str, str] = {}  # profile purpose -> the unit it came in
        self.watts_per_amp = 230.0 * 3  # three-phase 230 V
        self.energy_wh = 0.0  # Energy.Active.Import.Register: what it has drawn, cumulative

    @on(e.Action.set_charging_profile)
    async def on_profile(self, connector_id: int, cs_charging_profiles: dict) -> call_result.SetChargingProfile:
        purpose = cs_charging_profiles["charging_profile_purpose"]
        if purpose == "TxProfile" and cs_charging_profiles.get("transaction_id") != self.transaction_id:
            return call_result.SetChargingProfile(status=e.ChargingProfileStatus.rejected)
        schedule = cs_charging_profiles["charging_schedule"]
        limit = float(schedule["charging_schedule_period"][0]["limit"])
        self.units[purpose] = schedule["charging_rate_unit"]
        self.limits_w[purpose] = limit * self.watts_per_amp if schedule["charging_rate_unit"] == "A" else limit
        # the node's command travels in the profile id (OCPP 1.6 has no free field): the log keeps it
        device_log.shared().write(
            self.id,
            "apply",
            purpose=purpose,
            kw=round(self.limits_w[purpose] / 1000, 4),
            profile_id=cs_charging_profiles.get("charging_profile_id"),
            tx=self.transaction_id,
        )
        return call_result.SetChargingProfile(status=e.ChargingProfileStatus.accepted)

    @after(e.Action.set_charging_profile)
    async def after_profile(self, **_: object) -> None:
        # like a real charge point, report the new draw when a limit changes it, not only on the meter clock
        if self.transaction_id is not None:
            await self.report_power()

    @on(e.Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **_: object) -> call_result.RemoteStartTransaction:
        return call_result.RemoteStartTransaction(status=e.RemoteStartStopStatus.accepted)

    @on(e.Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        ok = transaction_id == self.transaction_id
        return call_result.RemoteStopTransaction(
            status=e.RemoteStartStopStatus.accepted if ok else e.RemoteStartStopStatus.rejected
        )

    @on(e.Action.change_availability)
    async def on_availability(self, connector_id: int, type: str) -> call_result.ChangeAvailability:  # noqa: A002 - OCPP's name
        self.available = type == "Operative"
        return call_result.ChangeAvailability(status=e.AvailabilityStatus.accepted)

    def power_kw(self) -> float:
        if self.transaction_id is None:
            return 0.0
        limits = [self.max_kw * 1000, self.ev_kw * 1000, *self.limits_w.values()]
        if "TxProfile" in self.limits_w:  # a transaction profile overrides the default one
            limits = [
                self.max_kw * 1000,
                self.ev_kw * 1000,
                self.limits_w["TxProfile"],
                self.limits_w.get("ChargePointMaxProfile", 1e12),
            ]
        return max(0.0, min(limits)) / 1000

    async def status(self, status: e.ChargePointStatus) -> None:
        await self.call(
            call.StatusNotification(
                connector_id=1, error_code=e.ChargePointErrorCode.no_error, status=status, timestamp=_now()
            )
        )

    async def boot(self) -> None:
        await self.call(call.BootNotification(charge_point_vendor="gridmesh", charge_point_model="sim-ac"))
        await self.status(e.ChargePointStatus.available)

    async def plug_in(self, ev_kw: float, id_tag: str = "fleet") -> int:
        self.ev_kw = ev_kw
        await self.status(e.ChargePointStatus.preparing)
        reply = await self.call(call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=0, timestamp=_now()))
        self.transaction_id = reply.transaction_id
        await self.status(e.ChargePointStatus.charging)
        return self.transaction_id

    async def unplug(self) -> None:
        if self.transaction_id is not None:
            await self.call(call.StopTransaction(meter_stop=0, timestamp=_now(), transaction_id=self.transaction_id))
            self.transaction_id = None
            self.limits_w.pop("TxProfile", None)
        await self.status(e.ChargePointStatus.finishing)
        await self.status(e.ChargePointStatus.available)

    async def report_power(self) -> None:
        power = {"value": f"{self.power_kw() * 1000:.1f}", "measurand": "Power.Active.Import", "unit": "W"}
        register = {"value": f"{self.energy_wh:.1f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
        await self.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=self.transaction_id,
                meter_value=[{"timestamp": _now(), "sampled_value": [power, register]}],
            )
        )


async def connect_charge_point(
    url: str, charger_id: str, password: str, max_kw: float, ssl: SSLContext | None = None, version: str = "1.6"
) -> tuple[SimulatedChargePoint, asyncio.Task]:
    """Connect to a central system at `url` (…/ocpp, ws:// or wss://) speaking OCPP
    `version` (1.6 or 2.0.1) and start listening; boot is the caller's."""
    from sitenode.simulators.ocpp201_charger import SimulatedChargingStation

    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
    ws = await connect(
        f"{url.rstrip('/')}/{charger_id}",
        subprotocols=[Subprotocol(f"ocpp{version}")],
        additional_headers={"Authorization": f"Basic {token}"},
        ssl=ssl,
        close_timeout=CLOSE_TIMEOUT_SECONDS,
    )
    kind = SimulatedChargingStation if version == "2.0.1" else SimulatedChargePoint
    cp = kind(charger_id, ws, max_kw)
    task = asyncio.create_task(cp.start())
    return cp, task


async def disconnect(cp: SimulatedChargePoint, task: asyncio.Task) -> None:
    await cp._connection.close()  # noqa: SLF001 - the library keeps the socket there
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
