"""A SunSpec battery on Modbus TCP (pymodbus server), models 1, 802 and 124 from pysunspec2.

Its SOC follows the power it is told through the storage control model 124: with
`StorCtl_Mod` bit 0 set it charges at `InWRte` % of `WChaMax`, with bit 1 it
discharges at `OutWRte` % of `WChaMax`, within its rated power and SOC limits, with
charge and discharge efficiencies. When nobody writes for `InOutWRte_RvrtTms` seconds
the rates revert to zero and the battery idles: a silent node must not leave it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from sitenode.devices.sunspec import decode, device_image, encode, load_model

BASE = 40000
SOC_SF, W_SF, RTE_SF = -1, 1, -1  # SoC in 0.1 %, watts in 10 W, rates in 0.1 %


@dataclass
class BatterySpec:
    capacity_kwh: float = 200.0
    max_kw: float = 100.0
    soc_pct: float = 50.0
    soc_min_pct: float = 5.0
    soc_max_pct: float = 95.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    serial: str = "SIM-0001"


class SunSpecBatterySim:
    def __init__(self, spec: BatterySpec, host: str = "127.0.0.1", port: int = 0, step_seconds: float = 0.1, speed: float = 1.0) -> None:
        self.spec, self.step_seconds, self.speed = spec, step_seconds, speed
        self.common, self.battery, self.control = load_model(1), load_model(802), load_model(124)
        image = device_image([
            (self.common, {"Mn": "gridmesh", "Md": "sim-battery", "Vr": "1.0", "SN": spec.serial, "DA": 1}),
            (self.battery, {"AHRtg": 0, "WHRtg": int(spec.capacity_kwh * 1000 / 10), "WChaRteMax": int(spec.max_kw * 100),
                            "WDisChaRteMax": int(spec.max_kw * 100), "SoCMax": int(spec.soc_max_pct * 10), "SoCMin": int(spec.soc_min_pct * 10),
                            "SoC": int(spec.soc_pct * 10), "ChaSt": 1, "State": 3, "Typ": 4,
                            "AHRtg_SF": 0, "WHRtg_SF": 1, "WChaDisChaMax_SF": 1, "SoC_SF": SOC_SF, "DoD_SF": 0, "SoH_SF": 0,
                            "V_SF": 0, "CellV_SF": 0, "A_SF": 0, "AMax_SF": 0, "W_SF": 0, "DisChaRte_SF": 0}),
            (self.control, {"WChaMax": int(spec.max_kw * 1000 / 10), "StorCtl_Mod": 0, "InWRte": 0, "OutWRte": 0,
                            "InOutWRte_RvrtTms": 0, "ChaState": int(spec.soc_pct * 10), "ChaSt": 1,
                            "WChaMax_SF": W_SF, "WChaDisChaGra_SF": 0, "VAChaMax_SF": 0, "MinRsvPct_SF": 0, "ChaState_SF": SOC_SF,
                            "StorAval_SF": 0, "InBatV_SF": 0, "InOutWRte_SF": RTE_SF}),
        ])
        self.addr_802 = BASE + 2 + 2 + self.common.length
        self.addr_124 = self.addr_802 + 2 + self.battery.length
        self.last_write = time.monotonic()
        self.regs = list(image)  # the device's registers from BASE: physics writes here, requests see them
        device = SimDevice(id=1, simdata=[SimData(BASE, values=list(image), datatype=DataType.REGISTERS)], action=self._access)
        self.server = ModbusTcpServer(device, address=(host, port))
        self.soc_pct = spec.soc_pct
        self.power_kw = 0.0  # + charging, - discharging
        self._task: asyncio.Task | None = None
        self._serve: asyncio.Task | None = None

    # -- registers ------------------------------------------------------------------
    async def _access(self, function_code: int, start_address: int, address: int, count: int,
                      current: list[int], set_values: list[int] | list[bool] | None) -> None:
        """Every request: a write lands in our registers, a read sees them as they are now."""
        if set_values is not None:
            for k, value in enumerate(set_values):
                self.regs[address - BASE + k] = int(value)
            if self.addr_124 <= address < self.addr_124 + 2 + self.control.length:
                self.last_write = time.monotonic()
            return
        for k in range(count):
            current[address - start_address + k] = self.regs[address - BASE + k]

    def _get(self, model_addr: int, model, name: str):  # noqa: ANN001, ANN202
        p = model.point(name)
        at = model_addr + p.offset - BASE
        return decode(p, self.regs[at : at + p.size])

    def _set(self, model_addr: int, model, name: str, value) -> None:  # noqa: ANN001
        p = model.point(name)
        at = model_addr + p.offset - BASE
        self.regs[at : at + p.size] = encode(p, value)

    # -- physics ----------------------------------------------------------------------
    def commanded_kw(self) -> float:
        mode = self._get(self.addr_124, self.control, "StorCtl_Mod") or 0
        wmax = (self._get(self.addr_124, self.control, "WChaMax") or 0) * 10 ** W_SF / 1000
        rvrt = self._get(self.addr_124, self.control, "InOutWRte_RvrtTms") or 0
        if rvrt and (time.monotonic() - self.last_write) * self.speed > rvrt:
            return 0.0
        charge = (self._get(self.addr_124, self.control, "InWRte") or 0) * 10 ** RTE_SF / 100 * wmax if mode & 1 else 0.0
        discharge = (self._get(self.addr_124, self.control, "OutWRte") or 0) * 10 ** RTE_SF / 100 * wmax if mode & 2 else 0.0
        return max(0.0, min(charge, self.spec.max_kw)) - max(0.0, min(discharge, self.spec.max_kw))

    def advance(self, seconds: float) -> None:
        s = self.spec
        power = self.commanded_kw()
        hours = seconds / 3600
        if power > 0:
            room = (s.soc_max_pct - self.soc_pct) / 100 * s.capacity_kwh
            power = min(power, room / (s.charge_efficiency * hours)) if hours else 0.0
            self.soc_pct += power * s.charge_efficiency * hours / s.capacity_kwh * 100
        elif power < 0:
            left = (self.soc_pct - s.soc_min_pct) / 100 * s.capacity_kwh
            power = -min(-power, left * s.discharge_efficiency / hours) if hours else 0.0
            self.soc_pct += power / s.discharge_efficiency * hours / s.capacity_kwh * 100
        self.power_kw = power
        self._set(self.addr_802, self.battery, "SoC", int(round(self.soc_pct * 10)))
        self._set(self.addr_124, self.control, "ChaState", int(round(self.soc_pct * 10)))
        self._set(self.addr_124, self.control, "ChaSt", 4 if power > 0 else 3 if power < 0 else 1)

    async def _physics(self) -> None:
        while True:
            await asyncio.sleep(self.step_seconds)
            self.advance(self.step_seconds * self.speed)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> int:
        self._serve = asyncio.create_task(self.server.serve_forever())
        for _ in range(100):
            if self.server.transport is not None:
                break
            await asyncio.sleep(0.01)
        self._task = asyncio.create_task(self._physics())
        return self.server.transport.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in (self._task,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.server.shutdown()
        if self._serve is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve
