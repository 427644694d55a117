"""The node as its chargers' central system: OCPP 1.6 and 2.0.1 over websockets with the
`ocpp` library (the subprotocol a charger offers picks the version; 2.0.1 in `ocpp201`).

Charge points connect to `ws://HOST:PORT/ocpp/<charge_point_id>` with HTTP Basic auth
(security profile 1: user name = charge point id, password from the config), or over
`wss://` when the node has a certificate (profile 2). Unknown
ids and wrong passwords get 401 (repeated failures are slowed down), a second
connection under an id already connected gets 409. Boot, heartbeat, status, authorize,
transactions and meter values flow into the node through `ChargerNode`; commands go out
as SetChargingProfile (TxProfile inside a transaction, TxDefaultProfile otherwise, in
W, or in A for chargers configured to take only A), RemoteStart/StopTransaction and
ChangeAvailability. On every boot the node installs a persistent ChargePointMaxProfile at
the charger's share of the site limit and checks
it was accepted, so a charger that loses the node still keeps the site within its
connection. A rejected or unanswered call fails the command (the engine retries).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from ssl import SSLContext
from typing import Protocol

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16 import datatypes as dt
from ocpp.v16 import enums as e
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from sitenode.devices.ocpp201 import ChargerLink201
from sitenode.dispatch import AdapterError, Command, CommandType

log = logging.getLogger(__name__)
SUBPROTOCOLS = [Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")]


class ChargerNode(Protocol):
    def charger_status(self, charger_id: str, ocpp_status: str) -> None: ...
    def charger_transaction(
        self, charger_id: str, transaction_id: int | str | None, id_tag: str, at: datetime
    ) -> None: ...
    def charger_power(self, charger_id: str, kw: float, at: datetime) -> None: ...
    def charger_energy(self, charger_id: str, kwh: float, at: datetime) -> None: ...


def command_profile_id(command_id: str) -> int:
    """The charging profile id a setpoint command travels under: OCPP 1.6 has no free field, so
    the command's id maps (CRC-32) to a positive 31-bit id, never 1 (the persistent
    ChargePointMaxProfile's). A profile of the same purpose and stack level replaces the last."""
    return 2 + zlib.crc32(command_id.encode()) % (2**31 - 3)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargerLink(ChargePoint):
    """One connected charge point, seen from the central system."""

    def __init__(
        self,
        charger_id: str,
        connection: ServerConnection,
        node: ChargerNode,
        default_limit_w: float,
        timeout: float,
        watts_per_amp: float | None = None,
    ) -> None:
        super().__init__(charger_id, connection, response_timeout=timeout)
        self.node, self.default_limit_w = node, default_limit_w
        self.watts_per_amp = watts_per_amp  # set for chargers that take limits only in A
        self.transaction_id: int | None = None
        self.default_profile_ok = asyncio.Event()
        self._tx = itertools.count(1)

    @on(e.Action.boot_notification)
    async def on_boot(
        self, charge_point_vendor: str, charge_point_model: str, **_: object
    ) -> call_result.BootNotification:
        return call_result.BootNotification(current_time=_now(), interval=30, status=e.RegistrationStatus.accepted)

    @after(e.Action.boot_notification)
    async def after_boot(self, **_: object) -> None:
        await self.install_default_profile()

    async def install_default_profile(self) -> bool:
        profile = dt.ChargingProfile(
            charging_profile_id=1,
            stack_level=0,
            charging_profile_purpose=e.ChargingProfilePurposeType.charge_point_max_profile,
            charging_profile_kind=e.ChargingProfileKindType.absolute,
            charging_schedule=self._schedule(self.default_limit_w),
        )
        try:
            reply = await self.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
        except TimeoutError:
            log.warning("charger %s never answered the default profile", self.id)
            return False
        ok = getattr(reply, "status", None) == e.ChargingProfileStatus.accepted
        if ok:
            self.default_profile_ok.set()
        else:
            log.warning("charger %s refused its default profile: %s", self.id, reply)
        return ok

    def _schedule(self, watts: float) -> dt.ChargingSchedule:
        if self.watts_per_amp:
            unit, limit = e.ChargingRateUnitType.amps, round(watts / self.watts_per_amp, 1)
        else:
            unit, limit = e.ChargingRateUnitType.watts, round(watts, 1)
        return dt.ChargingSchedule(
            charging_rate_unit=unit, charging_schedule_period=[dt.ChargingSchedulePeriod(start_period=0, limit=limit)]
        )

    @on(e.Action.heartbeat)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now())

    @on(e.Action.status_notification)
    async def on_status(
        self, connector_id: int, error_code: str, status: str, **_: object
    ) -> call_result.StatusNotification:
        if connector_id > 0:
            self.node.charger_status(self.id, status)
        return call_result.StatusNotification()

    @on(e.Action.authorize)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=dt.IdTagInfo(status=e.AuthorizationStatus.accepted))

    @on(e.Action.start_transaction)
    async def on_start(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: object
    ) -> call_result.StartTransaction:
        self.transaction_id = next(self._tx)
        self.node.charger_transaction(self.id, self.transaction_id, id_tag, datetime.now(UTC))
        return call_result.StartTransaction(
            transaction_id=self.transaction_id, id_tag_info=dt.IdTagInfo(status=e.AuthorizationStatus.accepted)
        )

    @on(e.Action.stop_transaction)
    async def on_stop(
        self, meter_stop: int, timestamp: str, transaction_id: int, **_: object
    ) -> call_result.StopTransaction:
        self.transaction_id = None
        self.node.charger_transaction(self.id, None, "", datetime.now(UTC))
        return call_result.StopTransaction()

    @on(e.Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list, **_: object) -> call_result.MeterValues:
        now = datetime.now(UTC)
        for sample_set in meter_value:
            for sample in sample_set.get("sampled_value", []):
                measurand = sample.get("measurand", "Energy.Active.Import.Register")  # OCPP 1.6's default measurand
                if measurand == "Power.Active.Import":
                    watts = float(sample["value"]) * (1000 if sample.get("unit") == "kW" else 1)
                    self.node.charger_power(self.id, watts / 1000, now)
                elif measurand == "Energy.Active.Import.Register":
                    wh = float(sample["value"]) * (1000 if sample.get("unit") == "kWh" else 1)
                    self.node.charger_energy(self.id, wh / 1000, now)
        return call_result.MeterValues()

    async def execute(self, command: Command) -> None:
        if command.type is CommandType.SET_CHARGE_RATE:
            in_tx = self.transaction_id is not None
            profile = dt.ChargingProfile(
                charging_profile_id=command_profile_id(command.id),
                stack_level=1,
                charging_profile_purpose=e.ChargingProfilePurposeType.tx_profile
                if in_tx
                else e.ChargingProfilePurposeType.tx_default_profile,
                charging_profile_kind=e.ChargingProfileKindType.absolute,
                transaction_id=self.transaction_id,
                charging_schedule=self._schedule((command.value_kw or 0) * 1000),
            )
            request = call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
            accepted = e.ChargingProfileStatus.accepted
        elif command.type is CommandType.START_CHARGING:
            request, accepted = (
                call.RemoteStartTransaction(id_tag="gridmesh", connector_id=1),
                e.RemoteStartStopStatus.accepted,
            )
        elif command.type is CommandType.STOP_CHARGING:
            if self.transaction_id is None:
                raise AdapterError(f"charger {self.id} has no transaction to stop")
            request, accepted = (
                call.RemoteStopTransaction(transaction_id=self.transaction_id),
                e.RemoteStartStopStatus.accepted,
            )
        elif command.type is CommandType.CHANGE_AVAILABILITY:
            kind = e.AvailabilityType.operative if (command.value_kw or 0) > 0 else e.AvailabilityType.inoperative
            request, accepted = call.ChangeAvailability(connector_id=0, type=kind), e.AvailabilityStatus.accepted
        else:
            raise AdapterError(f"a charger does not take {command.type}")
        try:
            reply = await self.call(request)
        except TimeoutError:
            raise AdapterError(f"charger {self.id} did not answer {type(request).__name__}") from None
        status = getattr(reply, "status", None)
        if status not in (accepted, getattr(e.AvailabilityStatus, "scheduled", None)):
            raise AdapterError(f"charger {self.id} answered {type(request).__name__} with {status or reply}")


@dataclass
class CentralSystem:
    """The websocket server and the links of the charge points connected to it."""

    node: ChargerNode
    passwords: dict[str, str]  # charge point id -> password
    default_limit_w: dict[str, float]  # charge point id -> its persistent max profile
    response_timeout: float = 10.0
    watts_per_amp: dict[str, float] = field(default_factory=dict)  # chargers that take A: volts x phases
    links: dict[str, ChargerLink | ChargerLink201] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    server: Server | None = None

    def _charger_id(self, path: str) -> str | None:
        parts = path.strip("/").split("/")
        return parts[1] if len(parts) == 2 and parts[0] == "ocpp" and parts[1] else None

    async def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        charger_id = self._charger_id(request.path)
        if charger_id is None or charger_id not in self.passwords:
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        header = request.headers.get("Authorization", "")
        given = None
        if header.startswith("Basic "):
            with contextlib.suppress(ValueError):
                given = base64.b64decode(header[6:]).decode()
        if given != f"{charger_id}:{self.passwords[charger_id]}":
            self.failures[charger_id] = self.failures.get(charger_id, 0) + 1
            # each failed login waits longer: guessing passwords gets slow
            await asyncio.sleep(min(0.05 * 2 ** self.failures[charger_id], 5.0))
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad credentials\n")
        if charger_id in self.links:
            return connection.respond(HTTPStatus.CONFLICT, "charge point already connected\n")
        self.failures.pop(charger_id, None)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        # the request is set once the opening handshake is done, before the handler runs
        request = connection.request
        charger_id = self._charger_id(request.path) if request is not None else None
        if charger_id is None or charger_id in self.links:
            await connection.close(code=1008)
            return
        kind = ChargerLink201 if connection.subprotocol == "ocpp2.0.1" else ChargerLink
        link = kind(
            charger_id,
            connection,
            self.node,
            self.default_limit_w.get(charger_id, 0.0),
            self.response_timeout,
            self.watts_per_amp.get(charger_id),
        )
        self.links[charger_id] = link
        try:
            await link.start()
        except Exception as exc:  # noqa: BLE001 - a malformed or vanished peer ends its own link only
            log.warning("charge point %s disconnected: %s", charger_id, exc)
        finally:
            self.links.pop(charger_id, None)

    async def start(self, host: str, port: int, ssl: SSLContext | None = None) -> int:
        """Listen; with `ssl` the charge points connect over wss:// (security profile 2)."""
        self.server = await serve(
            self._handle, host, port, subprotocols=SUBPROTOCOLS, process_request=self._check, ssl=ssl
        )
        return next(iter(self.server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def adapter(self, charger_id: str) -> ChargerAdapter:
        return ChargerAdapter(self, charger_id)


@dataclass(frozen=True)
class ChargerAdapter:
    """The dispatch engine's adapter for one charger: it goes through whatever link is up."""

    central: CentralSystem
    charger_id: str

    async def execute(self, command: Command) -> None:
        link = self.central.links.get(self.charger_id)
        if link is None:
            raise AdapterError(f"charger {self.charger_id} is not connected")
        await link.execute(command)
