"""A SunSpec battery over Modbus TCP (pymodbus): scan the model chain, read status, write
charge and discharge rates through the storage control model 124, read them back.

Modbus has no authentication: the clamp to the asset's ratings (and the device's own
`WChaMax`, and the ramp limit when one is set) is the safety envelope, applied here
whatever the caller sent. The reversion
timeout is written with every setpoint so the battery idles if the node goes silent.
A device's exception reply or a timeout is an `AdapterError`: the dispatch engine
retries, and the node keeps serving.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class BatteryStatus:
    soc_pct: float
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_state: int  # model 124 ChaSt: 1 off, 3 discharging, 4 charging, ...
    alarms: int  # model 802 Evt1 bits; non-zero means the device reports a fault


class SunSpecBattery:
    def __init__(self, host: str, port: int, rating: AssetRating, *, base: int = 40000, device_id: int = 1,
                 timeout_seconds: float = 1.0, revert_seconds: int = 120, ramp_kw_per_second: float | None = None) -> None:
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout_seconds, retries=0)
        self.rating, self.base, self.device_id, self.revert_seconds = rating, base, device_id, revert_seconds
        self.models: dict[int, int] = {}  # model id -> address of its ID register
        self.ramp_kw_per_second = ramp_kw_per_second
        self._last_write: dict[str, float] = {}  # register name -> monotonic time of our last write
        self._backoff, self._retry_at = 0.0, 0.0

    async def _read(self, address: int, count: int) -> list[int]:
        try:
            reply = await self.client.read_holding_registers(address, count=count, device_id=self.device_id)
        except ModbusException as exc:
            raise AdapterError(f"modbus read at {address}: {exc}") from None
        if reply.isError():
            raise AdapterError(f"modbus read at {address}: exception reply {reply}")
        return list(reply.registers)

    async def _write(self, address: int, values: list[int]) -> None:
        try:
            reply = await self.client.write_registers(address, values, device_id=self.device_id)
        except ModbusException as exc:
            raise AdapterError(f"modbus write at {address}: {exc}") from None
        if reply.isError():
            raise AdapterError(f"modbus write at {address}: exception reply {reply}")

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
        for needed in (1, 802, 124):
            if needed not in models:
                raise AdapterError(f"SunSpec model {needed} not found (models: {sorted(models)})")
        self.models = models
        return models

    async def _points(self, model: ModelDef) -> dict[str, int | str | None]:
        regs = await self._read(self.models[model.id], 2 + model.length)
        return {p.name: decode(p, regs[p.offset : p.offset + p.size]) for p in model.points.values()}

    def _sf(self, points: dict, name: str) -> int:  # noqa: ANN001
        value = points.get(name)
        return int(value) if isinstance(value, int) else 0

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
        battery, control = await self._points(load_model(802)), await self._points(load_model(124))
        soc = scale(battery["SoC"], self._sf(battery, "SoC_SF")) or 0.0
        wh = scale(battery["WHRtg"], self._sf(battery, "WHRtg_SF")) or 0.0
        charge_w = scale(battery["WChaRteMax"], self._sf(battery, "WChaDisChaMax_SF")) or 0.0
        discharge_w = scale(battery["WDisChaRteMax"], self._sf(battery, "WChaDisChaMax_SF")) or 0.0
        return BatteryStatus(soc, wh / 1000, charge_w / 1000, discharge_w / 1000, int(control["ChaSt"] or 0), int(battery.get("Evt1") or 0))

    async def execute(self, command: Command) -> None:
        """SET_CHARGE_RATE writes InWRte, SET_DISCHARGE_RATE OutWRte (each % of WChaMax)."""
        if command.type not in (CommandType.SET_CHARGE_RATE, CommandType.SET_DISCHARGE_RATE):
            raise AdapterError(f"a battery takes rate setpoints, not {command.type}")
        command = clamp(command, self.rating)  # the safety envelope: nothing bypasses it
        await self.ensure_connected()
        model = load_model(124)
        control = await self._points(model)
        wmax_kw = (scale(control["WChaMax"], self._sf(control, "WChaMax_SF")) or 0.0) / 1000
        if wmax_kw <= 0:
            raise AdapterError("device reports no WChaMax")
        kw = min(command.value_kw or 0.0, wmax_kw)
        rate_sf = self._sf(control, "InOutWRte_SF")
        name = "InWRte" if command.type is CommandType.SET_CHARGE_RATE else "OutWRte"
        if self.ramp_kw_per_second is not None and name in self._last_write:
            # a setpoint moves at most ramp x elapsed from where the device is now
            held_kw = (scale(control[name], rate_sf) or 0.0) / 100 * wmax_kw
            step = self.ramp_kw_per_second * (time.monotonic() - self._last_write[name])
            kw = min(max(kw, held_kw - step), held_kw + step)
        raw = unscale(kw / wmax_kw * 100.0, rate_sf)
        at = self.models[124]
        await self._write(at + model.point("StorCtl_Mod").offset, encode(model.point("StorCtl_Mod"), 3))
        await self._write(at + model.point(name).offset, encode(model.point(name), raw))
        await self._write(at + model.point("InOutWRte_RvrtTms").offset, encode(model.point("InOutWRte_RvrtTms"), self.revert_seconds))
        self._last_write[name] = time.monotonic()
        back = decode(model.point(name), await self._read(at + model.point(name).offset, 1))
        if back != raw:
            raise AdapterError(f"{name} read back {back}, wrote {raw}")

    async def close(self) -> None:
        self.client.close()
