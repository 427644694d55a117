"""A SunSpec battery over Modbus TCP (pymodbus): scan the model chain, read status, write
charge and discharge setpoints through a storage control model, read them back.

The control model is 124 (storage_basic) where the device has it, else 704 (DERCtlAC);
a device with neither is refused with an `AdapterError` naming what is missing.

* 124: SET_CHARGE_RATE writes `InWRte`, SET_DISCHARGE_RATE `OutWRte` (each % of
  `WChaMax`, `StorCtl_Mod` both bits), and `InOutWRte_RvrtTms`.
* 704: one signed active power setpoint for both. SunSpec's sign: `WSet` > 0 injects
  (discharging), < 0 absorbs (charging) -- the sign of model 701's `W`. Ours (DESIGN.md)
  is charge and discharge, each >= 0, so `WSet` = (discharge - charge) x 1000 W. The
  adapter keeps the two halves it last had the device take and writes their net: a
  SET_CHARGE_RATE changes the charge half and keeps the discharge half (the planner
  sends both when they change in one step; either order ends at the same net). When the
  device holds a different net (it reverted, someone else wrote) the halves are taken
  from the device again. Each write sets `WSetMod` WATTS, `WSet`, `WSetEna` ENABLED and
  the reversion: `WSetRvrt` 0 W with `WSetEnaRvrt` ENABLED -- idle, held -- after
  `WSetRvrtTms`; `WSetPct` and the other functions are left alone. Power limits come
  from model 802 (`WChaRteMax`, `WDisChaRteMax`).

Modbus has no authentication: the clamp to the asset's ratings (and the device's own
maximum, and the ramp limit when one is set) is the safety envelope, applied here
whatever the caller sent. The reversion timeout is written with every setpoint so the
battery idles if the node goes silent.

`execute` returns the power the device took, from the read-back: the asked value when
the device holds it (to its register resolution), else what the device holds (a ramp
step, a device that clamped the write). The dispatch engine completes the command with
it, so the next plan sends the asked value again. A device that holds more than was
written, or the other direction, is an `AdapterError`, as are an exception reply and a
timeout: the dispatch engine retries, and the node keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from sitenode.devices.sunspec import (
    END_ID,
    SUNS,
    ModelDef,
    decode,
    encode,
    load_model,
    scale,
    unscale,
)
from sitenode.dispatch import AdapterError, AssetRating, Command, CommandType, clamp

CONTROL_MODELS = (124, 704)  # in order of preference
ENABLED, WATTS = 1, 1  # 704's WSetEna and WSetMod symbols


@dataclass(frozen=True)
class BatteryStatus:
    soc_pct: float
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_state: int  # ChaSt (124's, else 802's): 1 off, 3 discharging, 4 charging, ...
    alarms: int  # model 802 Evt1 bits; non-zero means the device reports a fault


class SunSpecBattery:
    def __init__(
        self,
        host: str,
        port: int,
        rating: AssetRating,
        *,
        base: int = 40000,
        device_id: int = 1,
        timeout_seconds: float = 1.0,
        revert_seconds: int = 120,
        ramp_kw_per_second: float | None = None,
    ) -> None:
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout_seconds, retries=0)
        self.rating, self.base, self.device_id, self.revert_seconds = rating, base, device_id, revert_seconds
        self.models: dict[int, int] = {}  # model id -> address of its ID register
        self.control_id: int | None = None  # 124 or 704, once scanned
        self.ramp_kw_per_second = ramp_kw_per_second
        self._last_write: dict[str, float] = {}  # register name -> monotonic time of our last write
        self._halves: dict[CommandType, float] | None = None  # 704: charge and discharge the device took
        self._lock = asyncio.Lock()  # one setpoint at a time: 704's two halves share one register
        self._backoff, self._retry_at = 0.0, 0.0

    async def _read(self, address: int, count: int) -> list[int]:
        try:
            reply = await self.client.read_holding_registers(address, count=count, device_id=self.device_id)
        except (ModbusException, ValueError) as exc:  # ValueError: an address a broken model chain points past 65535
            raise AdapterError(f"modbus read at {address}: {exc}") from None
        if reply.isError():
            raise AdapterError(f"modbus read at {address}: exception reply {reply}")
        if len(reply.registers) != count:
            raise AdapterError(f"modbus read at {address}: {len(reply.registers)} registers, asked for {count}")
        return list(reply.registers)

    async def _write(self, address: int, values: list[int]) -> None:
        try:
            reply = await self.client.write_registers(address, values, device_id=self.device_id)
        except ModbusException as exc:
            raise AdapterError(f"modbus write at {address}: {exc}") from None
        if reply.isError():
            raise AdapterError(f"modbus write at {address}: exception reply {reply}")

    async def _write_point(self, model: ModelDef, name: str, value: int) -> None:
        point = model.point(name)
        await self._write(self.models[model.id] + point.offset, encode(point, value))

    async def connect(self) -> None:
        if not await self.client.connect():
            raise AdapterError(f"cannot connect to {self.client.comm_params.host}:{self.client.comm_params.port}")
        await self.scan()

    async def scan(self) -> dict[int, int]:
        if tuple(await self._read(self.base, 2)) != SUNS:
            raise AdapterError(f"no SunS marker at {self.base}")
        address, models = self.base + 2, {}
        for _ in range(64):  # a chain longer than this is a broken map, not a battery
            model_id, length = await self._read(address, 2)
            if model_id == END_ID:
                break
            models[model_id] = address
            address += 2 + length
        else:
            raise AdapterError("SunSpec model chain has no end marker")
        for needed in (1, 802):
            if needed not in models:
                raise AdapterError(f"SunSpec model {needed} not found (models: {sorted(models)})")
        control = next((m for m in CONTROL_MODELS if m in models), None)
        if control is None:
            raise AdapterError(
                f"SunSpec device has no storage control model: neither 124 (storage_basic) nor 704 (DERCtlAC) "
                f"is in its chain (models: {sorted(models)}); it cannot take charge or discharge setpoints"
            )
        self.models, self.control_id, self._halves = models, control, None
        return models

    async def _points(self, model: ModelDef) -> dict[str, int | str | None]:
        regs = await self._read(self.models[model.id], 2 + model.length)
        return {p.name: decode(p, regs[p.offset : p.offset + p.size]) for p in model.points.values()}

    def _sf(self, points: dict, name: str) -> int:  # noqa: ANN001
        value = points.get(name)
        if isinstance(value, int) and not -10 <= value <= 10:  # SunSpec's range; beyond it 10**sf overflows
            raise AdapterError(f"SunSpec scale factor {name} is {value}, outside -10..10")
        return int(value) if isinstance(value, int) else 0

    @staticmethod
    def _num(points: dict[str, int | str | None], name: str) -> int | None:
        """A numeric point's raw value (None where unimplemented): only string points decode to text."""
        value = points[name]
        if isinstance(value, str):
            raise AdapterError(f"SunSpec point {name} reads as text ({value!r}), not a number")
        return value

    async def ensure_connected(self) -> None:
        """(Re)connect and rescan after a drop: devices restart, links flap. Failed attempts
        back off exponentially (0.5 s doubling to 30 s) instead of hammering the device."""
        if self.client.connected and self.models:
            return
        now = time.monotonic()
        if now < self._retry_at:
            raise AdapterError(f"battery unreachable, next reconnect in {self._retry_at - now:.1f} s")
        self.models = {}
        try:
            await self.connect()
        except AdapterError:
            self._backoff = min(30.0, self._backoff * 2) if self._backoff else 0.5
            self._retry_at = time.monotonic() + self._backoff
            raise
        self._backoff, self._retry_at = 0.0, 0.0

    async def status(self) -> BatteryStatus:
        await self.ensure_connected()
        await self._keep_alive()
        battery = await self._points(load_model(802))
        soc = scale(self._num(battery, "SoC"), self._sf(battery, "SoC_SF")) or 0.0
        wh = scale(self._num(battery, "WHRtg"), self._sf(battery, "WHRtg_SF")) or 0.0
        charge_w = scale(self._num(battery, "WChaRteMax"), self._sf(battery, "WChaDisChaMax_SF")) or 0.0
        discharge_w = scale(self._num(battery, "WDisChaRteMax"), self._sf(battery, "WChaDisChaMax_SF")) or 0.0
        charge_state = battery["ChaSt"]
        if self.control_id == 124:
            charge_state = (await self._points(load_model(124)))["ChaSt"]
        return BatteryStatus(
            soc, wh / 1000, charge_w / 1000, discharge_w / 1000, int(charge_state or 0), int(battery.get("Evt1") or 0)
        )

    async def _keep_alive(self) -> None:
        """A device reverts to idle `revert_seconds` after the last write to its control model,
        so that a node gone silent does not leave it running. A node that still polls is not
        silent: every poll rewrites the reversion timer of a setpoint this adapter wrote, so the
        setpoint holds for as long as the node wants it (a plan step outlasts the timer: 15
        minutes against 120 s by default). Polls must come faster than the timer."""
        if not self._last_write or self.control_id not in (124, 704):
            return
        async with self._lock:
            if self.control_id == 124:
                await self._write_point(load_model(124), "InOutWRte_RvrtTms", self.revert_seconds)
            else:
                await self._write_point(load_model(704), "WSetRvrtTms", self.revert_seconds)

    async def execute(self, command: Command) -> float:
        """Write a SET_CHARGE_RATE or SET_DISCHARGE_RATE; return the kW the device took."""
        if command.type not in (CommandType.SET_CHARGE_RATE, CommandType.SET_DISCHARGE_RATE):
            raise AdapterError(f"a battery takes rate setpoints, not {command.type}")
        command = clamp(command, self.rating)  # the safety envelope: nothing bypasses it
        async with self._lock:
            await self.ensure_connected()
            if self.control_id == 124:
                return await self._execute_124(command)
            return await self._execute_704(command)

    def _ramp(self, name: str, target_kw: float, held_kw: float) -> float:
        """A setpoint moves at most ramp x elapsed from where the device is now."""
        if self.ramp_kw_per_second is None or name not in self._last_write:
            return target_kw
        step = self.ramp_kw_per_second * (time.monotonic() - self._last_write[name])
        return min(max(target_kw, held_kw - step), held_kw + step)

    async def _execute_124(self, command: Command) -> float:
        model = load_model(124)
        control = await self._points(model)
        wmax_kw = (scale(self._num(control, "WChaMax"), self._sf(control, "WChaMax_SF")) or 0.0) / 1000
        if wmax_kw <= 0:
            raise AdapterError("device reports no WChaMax")
        target_kw = min(command.value_kw or 0.0, wmax_kw)
        rate_sf = self._sf(control, "InOutWRte_SF")
        name = "InWRte" if command.type is CommandType.SET_CHARGE_RATE else "OutWRte"
        held_kw = (scale(self._num(control, name), rate_sf) or 0.0) / 100 * wmax_kw
        kw = self._ramp(name, target_kw, held_kw)
        raw = unscale(kw / wmax_kw * 100.0, rate_sf)
        await self._write_point(model, "StorCtl_Mod", 3)
        await self._write_point(model, name, raw)
        await self._write_point(model, "InOutWRte_RvrtTms", self.revert_seconds)
        self._last_write[name] = time.monotonic()
        point = model.point(name)
        back = decode(point, await self._read(self.models[124] + point.offset, 1))
        if not isinstance(back, int) or not 0 <= back <= raw:
            raise AdapterError(f"{name} read back {back}, wrote {raw}")
        if back == unscale(target_kw / wmax_kw * 100.0, rate_sf):
            return target_kw  # the device holds what was asked, to its resolution
        return round((scale(back, rate_sf) or 0.0) / 100 * wmax_kw, 3)

    async def _execute_704(self, command: Command) -> float:
        model = load_model(704)
        battery, control = await self._points(load_model(802)), await self._points(model)
        limit_sf = self._sf(battery, "WChaDisChaMax_SF")
        max_charge_kw = (scale(self._num(battery, "WChaRteMax"), limit_sf) or 0.0) / 1000
        max_discharge_kw = (scale(self._num(battery, "WDisChaRteMax"), limit_sf) or 0.0) / 1000
        if max_charge_kw <= 0 or max_discharge_kw <= 0:
            raise AdapterError("device reports no WChaRteMax or WDisChaRteMax in model 802")
        sf = self._sf(control, "WSet_SF")
        resolution_kw = 10.0**sf / 1000

        def net_charge_kw(raw: int | str | None) -> float:  # WSet (+ injects) -> ours (+ charges)
            return -(scale(raw if isinstance(raw, int) else 0, sf) or 0.0) / 1000

        held_net = (
            net_charge_kw(control["WSet"]) if control["WSetEna"] == ENABLED and control["WSetMod"] == WATTS else 0.0
        )
        halves = self._halves
        if (
            halves is None
            or abs(halves[CommandType.SET_CHARGE_RATE] - halves[CommandType.SET_DISCHARGE_RATE] - held_net)
            > resolution_kw
        ):
            halves = {
                CommandType.SET_CHARGE_RATE: max(0.0, held_net),
                CommandType.SET_DISCHARGE_RATE: max(0.0, -held_net),
            }
        charging = command.type is CommandType.SET_CHARGE_RATE
        other = halves[CommandType.SET_DISCHARGE_RATE if charging else CommandType.SET_CHARGE_RATE]
        value = command.value_kw or 0.0
        target_net = min(max(value - other if charging else other - value, -max_discharge_kw), max_charge_kw)
        net = self._ramp("WSet", target_net, held_net)
        raw, raw_target = unscale(-net * 1000, sf), unscale(-target_net * 1000, sf)
        await self._write_point(model, "WSetRvrt", 0)
        await self._write_point(model, "WSetEnaRvrt", ENABLED)
        await self._write_point(model, "WSet", raw)
        await self._write_point(model, "WSetMod", WATTS)
        await self._write_point(model, "WSetEna", ENABLED)
        await self._write_point(model, "WSetRvrtTms", self.revert_seconds)
        self._last_write["WSet"] = time.monotonic()
        first, last = model.point("WSetEna"), model.point("WSetRvrtTms")
        regs = await self._read(self.models[704] + first.offset, last.offset + last.size - first.offset)

        def back(name: str) -> int | str | None:
            p = model.point(name)
            return decode(p, regs[p.offset - first.offset : p.offset - first.offset + p.size])

        if back("WSetEna") != ENABLED or back("WSetMod") != WATTS:
            raise AdapterError(f"WSetEna/WSetMod read back {back('WSetEna')}/{back('WSetMod')}, wrote ENABLED/WATTS")
        got = back("WSet")
        if not isinstance(got, int) or not min(0, raw) <= got <= max(0, raw):
            raise AdapterError(f"WSet read back {got}, wrote {raw}")
        took_net = target_net if got == raw_target else net_charge_kw(got)
        took = max(0.0, took_net + other if charging else other - took_net)
        if took_net == target_net and target_net == (value - other if charging else other - value):
            took = value  # the device holds what was asked, to its resolution
        halves[command.type] = took
        self._halves = halves
        return round(took, 3)

    async def close(self) -> None:
        self.client.close()
