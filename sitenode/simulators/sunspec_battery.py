"""A SunSpec battery on Modbus TCP (pymodbus server): models 1, 802 and a storage control
model from pysunspec2 (124, or 704 DERCtlAC, or none at all to play a device we cannot
control).

Its SOC follows the power it is told, within its rated power and SOC limits, with charge
and discharge efficiencies:

* 124: with `StorCtl_Mod` bit 0 set it charges at `InWRte` % of `WChaMax`, with bit 1 it
  discharges at `OutWRte` % of `WChaMax`. When nobody writes to the model for
  `InOutWRte_RvrtTms` seconds the battery idles.
* 704: with `WSetEna` ENABLED it holds the active power `WSet` (watts, `WSetMod` WATTS)
  or `WSetPct` (% of its rated power, `WSetMod` W_MAX_PCT). SunSpec's sign: positive
  injects (generation, discharging), negative absorbs (charging) -- as model 701's `W`
  is documented. When nobody writes to the model for `WSetRvrtTms` seconds the control
  reverts as the model says: `WSet` := `WSetRvrt`, `WSetPct` := `WSetPctRvrt`, `WSetEna` :=
  `WSetEnaRvrt`; `WSetRvrtRem` counts down meanwhile.

A silent node must not leave it running. `BatterySpec.accept_kw` plays a derated
inverter that stores a setpoint above that power clamped, as some devices do instead of
refusing the write: a client reads back less than it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from dataclasses import dataclass

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from sitenode.devices.sunspec import ModelDef, decode, device_image, encode, load_model
from sitenode.simulators import device_log

BASE = 40000
SOC_SF, W_SF, RTE_SF, WSET_SF, PCT_SF = -1, 1, -1, 1, -1  # SoC 0.1 %, watts 10 W, rates 0.1 %, WSet 10 W, pct 0.1 %
CONTROLS = (124, 704)
ENABLED, WATTS, W_MAX_PCT = 1, 1, 0


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
    accept_kw: float | None = None  # a derated device: setpoints above this are stored clamped


class SunSpecBatterySim:
    def __init__(
        self,
        spec: BatterySpec,
        host: str = "127.0.0.1",
        port: int = 0,
        step_seconds: float = 0.1,
        speed: float = 1.0,
        control: int | None = 124,
    ) -> None:
        if control is not None and control not in CONTROLS:
            raise ValueError(f"control: must be one of {CONTROLS} or None, got {control}")
        self.spec, self.step_seconds, self.speed, self.control_id = spec, step_seconds, speed, control
        self.common, self.battery = load_model(1), load_model(802)
        self.control: ModelDef | None = load_model(control) if control is not None else None
        models: list[tuple[ModelDef, dict[str, int | str]]] = [
            (self.common, {"Mn": "gridmesh", "Md": "sim-battery", "Vr": "1.0", "SN": spec.serial, "DA": 1}),
            (
                self.battery,
                {
                    "AHRtg": 0,
                    "WHRtg": int(spec.capacity_kwh * 1000 / 10),
                    "WChaRteMax": int(spec.max_kw * 100),
                    "WDisChaRteMax": int(spec.max_kw * 100),
                    "SoCMax": int(spec.soc_max_pct * 10),
                    "SoCMin": int(spec.soc_min_pct * 10),
                    "SoC": int(spec.soc_pct * 10),
                    "ChaSt": 1,
                    "State": 3,
                    "Typ": 4,
                    "Evt1": 0,
                    "Evt2": 0,
                    "AHRtg_SF": 0,
                    "WHRtg_SF": 1,
                    "WChaDisChaMax_SF": 1,
                    "SoC_SF": SOC_SF,
                    "DoD_SF": 0,
                    "SoH_SF": 0,
                    "V_SF": 0,
                    "CellV_SF": 0,
                    "A_SF": 0,
                    "AMax_SF": 0,
                    "W_SF": 0,
                    "DisChaRte_SF": 0,
                },
            ),
        ]
        if self.control is not None and self.control.id == 124:
            models.append(
                (
                    self.control,
                    {
                        "WChaMax": int(spec.max_kw * 1000 / 10),
                        "StorCtl_Mod": 0,
                        "InWRte": 0,
                        "OutWRte": 0,
                        "InOutWRte_RvrtTms": 0,
                        "ChaState": int(spec.soc_pct * 10),
                        "ChaSt": 1,
                        "WChaMax_SF": W_SF,
                        "WChaDisChaGra_SF": 0,
                        "VAChaMax_SF": 0,
                        "MinRsvPct_SF": 0,
                        "ChaState_SF": SOC_SF,
                        "StorAval_SF": 0,
                        "InBatV_SF": 0,
                        "InOutWRte_SF": RTE_SF,
                    },
                )
            )
        elif self.control is not None and self.control.id == 704:
            models.append(
                (
                    self.control,
                    {
                        "WSetEna": 0,
                        "WSetMod": WATTS,
                        "WSet": 0,
                        "WSetRvrt": 0,
                        "WSetPct": 0,
                        "WSetPctRvrt": 0,
                        "WSetEnaRvrt": 0,
                        "WSetRvrtTms": 0,
                        "WSetRvrtRem": 0,
                        "WMaxLimPctEna": 0,
                        "WMaxLimPct": 1000,
                        "WMaxLimPctRvrt": 1000,
                        "WMaxLimPctEnaRvrt": 0,
                        "WMaxLimPctRvrtTms": 0,
                        "WMaxLimPctRvrtRem": 0,
                        "PF_SF": -3,
                        "WMaxLimPct_SF": PCT_SF,
                        "WSet_SF": WSET_SF,
                        "WSetPct_SF": PCT_SF,
                        "VarSet_SF": 0,
                        "VarSetPct_SF": PCT_SF,
                    },
                )
            )
        image = device_image(models)
        self.addr: dict[int, int] = {}  # model id -> address of its ID register
        at = BASE + 2
        for model, _ in models:
            self.addr[model.id] = at
            at += 2 + model.length
        self.last_write = time.monotonic()
        self._reverted = False  # 704: the reversion has been applied since the last write
        self.regs = list(image)  # the device's registers from BASE: physics writes here, requests see them
        device = SimDevice(
            id=1, simdata=[SimData(BASE, values=list(image), datatype=DataType.REGISTERS)], action=self._access
        )
        self.server = ModbusTcpServer(device, address=(host, port))
        self.soc_pct = spec.soc_pct
        self.power_kw = 0.0  # + charging, - discharging
        # a device whose measurement registers stop updating (SIGUSR1 toggles it; `bench/chaos.py`):
        # it still takes setpoints and its battery still moves, but SoC and state read as they were
        self.frozen = False
        self.log = device_log.shared()
        self._logged_at = -math.inf  # simulated seconds of the last meter line
        self._sim_seconds = 0.0
        self._task: asyncio.Task | None = None
        self._serve: asyncio.Task | None = None

    # -- registers ------------------------------------------------------------------
    async def _access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        """Every request: a write lands in our registers, a read sees them as they are now."""
        if set_values is not None:
            for k, value in enumerate(set_values):
                self.regs[address - BASE + k] = int(value)
            if (
                self.control is not None
                and self.addr[self.control.id] <= address < self.addr[self.control.id] + 2 + self.control.length
            ):
                self.last_write = time.monotonic()
                self._reverted = False
                self._derate()
                self._log_apply()
            return
        self._revert_if_due()
        for k in range(count):
            current[address - start_address + k] = self.regs[address - BASE + k]

    def _log_apply(self) -> None:
        """The control model as it stands after a write: what the device now applies."""
        if not self.log.enabled or self.control is None:
            return
        if self.control_id == 124:
            wmax = self._num("WChaMax") * 10**W_SF / 1000
            mode = self._num("StorCtl_Mod")
            in_kw = self._num("InWRte") * 10**RTE_SF / 100 * wmax
            out_kw = self._num("OutWRte") * 10**RTE_SF / 100 * wmax
            fields = {"charge_kw": round(in_kw, 4), "discharge_kw": round(out_kw, 4), "mode": mode}
        else:
            fields = {"wset_kw": round(self._num("WSet") * 10**WSET_SF / 1000, 4), "ena": self._num("WSetEna")}
        self.log.write("battery", "apply", commanded_kw=round(self.commanded_kw(), 4), **fields)

    def set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        self.log.write("battery", "freeze" if frozen else "thaw")

    def get(self, model: ModelDef, name: str) -> int | str | None:
        p = model.point(name)
        at = self.addr[model.id] + p.offset - BASE
        return decode(p, self.regs[at : at + p.size])

    def _set(self, model: ModelDef, name: str, value: int | str) -> None:
        p = model.point(name)
        at = self.addr[model.id] + p.offset - BASE
        self.regs[at : at + p.size] = encode(p, value)

    def _num(self, name: str) -> int:
        value = self.get(self.control, name)  # type: ignore[arg-type]
        return value if isinstance(value, int) else 0

    def _derate(self) -> None:
        """What a derated device does with a setpoint above `accept_kw`: stores it clamped."""
        top = self.spec.accept_kw
        if top is None:
            return
        if self.control_id == 124:
            wmax_kw = self._num("WChaMax") * 10**W_SF / 1000
            limit = int(top / wmax_kw * 100 / 10**RTE_SF) if wmax_kw else 0
            for name in ("InWRte", "OutWRte"):
                if self._num(name) > limit:
                    self._set(self.control, name, limit)  # type: ignore[arg-type]
        elif self.control_id == 704:
            limit = int(top * 1000 / 10**WSET_SF)
            self._set(self.control, "WSet", max(-limit, min(limit, self._num("WSet"))))  # type: ignore[arg-type]

    def _revert_if_due(self) -> None:
        """704: the reversion timer, run from the last write to the model."""
        if self.control_id != 704 or self._reverted:
            return
        timeout = self._num("WSetRvrtTms")
        if not timeout or self._num("WSetEna") != ENABLED:
            self._set(self.control, "WSetRvrtRem", 0)  # type: ignore[arg-type]
            return
        left = timeout - (time.monotonic() - self.last_write) * self.speed
        if left > 0:
            self._set(self.control, "WSetRvrtRem", math.ceil(left))  # type: ignore[arg-type]
            return
        for name, to in (("WSet", "WSetRvrt"), ("WSetPct", "WSetPctRvrt"), ("WSetEna", "WSetEnaRvrt")):
            self._set(self.control, name, self._num(to))  # type: ignore[arg-type]
        self._set(self.control, "WSetRvrtRem", 0)  # type: ignore[arg-type]
        self._reverted = True

    # -- physics ----------------------------------------------------------------------
    def commanded_kw(self) -> float:
        """The power the control model asks for now, + charging, - discharging, within the rating."""
        if self.control_id == 124:
            kw = self._commanded_124()
        elif self.control_id == 704:
            kw = self._commanded_704()
        else:
            kw = 0.0
        return max(-self.spec.max_kw, min(self.spec.max_kw, kw))

    def _commanded_124(self) -> float:
        mode = self._num("StorCtl_Mod")
        wmax = self._num("WChaMax") * 10**W_SF / 1000
        rvrt = self._num("InOutWRte_RvrtTms")
        if rvrt and (time.monotonic() - self.last_write) * self.speed > rvrt:
            return 0.0
        charge = self._num("InWRte") * 10**RTE_SF / 100 * wmax if mode & 1 else 0.0
        discharge = self._num("OutWRte") * 10**RTE_SF / 100 * wmax if mode & 2 else 0.0
        return max(0.0, charge) - max(0.0, discharge)

    def _commanded_704(self) -> float:
        self._revert_if_due()
        if self._num("WSetEna") != ENABLED:
            return 0.0
        if self._num("WSetMod") == W_MAX_PCT:
            injected_kw = self._num("WSetPct") * 10**PCT_SF / 100 * self.spec.max_kw
        else:
            injected_kw = self._num("WSet") * 10**WSET_SF / 1000
        return -injected_kw  # SunSpec: + injects (discharges); ours: + charges

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
        self._sim_seconds += seconds
        if self.log.enabled and self._sim_seconds - self._logged_at >= 60:
            self._logged_at = self._sim_seconds
            self.log.write("battery", "meter", kw=round(power, 4), soc=round(self.soc_pct, 4), frozen=self.frozen)
        if self.frozen:
            return  # the registers read as they were when it froze
        cha_st = 4 if power > 0 else 3 if power < 0 else 1
        self._set(self.battery, "SoC", int(round(self.soc_pct * 10)))
        self._set(self.battery, "ChaSt", cha_st)
        if self.control_id == 124:
            self._set(self.control, "ChaState", int(round(self.soc_pct * 10)))  # type: ignore[arg-type]
            self._set(self.control, "ChaSt", cha_st)  # type: ignore[arg-type]

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
        if self.log.enabled:
            self.log.write("battery", "boot", soc=round(self.soc_pct, 4))
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread's loop
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: self.set_frozen(not self.frozen))
        # pymodbus types its listener as a BaseTransport; a TCP server's is an asyncio.Server
        return self.server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

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
