"""The site and its assets, as `site_config.yaml` describes them (shared/BUNDLE.md).

Units are in the names: kW for power, kWh for energy, currency per kWh. Absent
limits mean "no limit"; absent efficiencies 1; absent SOC bounds 0 and capacity.
The same model serves offline bundles and the live site node.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sitenode.errors import FieldViolation, InvalidInput
from sitenode.model.validation import ID_PATTERN

NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Pos = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]


class Strict(BaseModel):
    # Unknown keys are refused: a misspelt limit silently ignored could blow a breaker.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridConfig(Strict):
    import_limit_kw: Pos | None = None
    export_limit_kw: NonNeg | None = None
    breach_margin: Annotated[float, Field(ge=0, le=1)] = 0.0
    breach_penalty_per_kwh: NonNeg = 0.0


class BatteryConfig(Strict):
    """A battery. `soc_min_kwh` holds at every step; `soc_final_min_kwh` (default: the
    initial SOC) is a target for the horizon's end that the plan keeps whenever the site
    can serve everyone, and otherwise gives way by `run_config.priorities.battery`."""

    capacity_kwh: Pos
    soc_initial_kwh: NonNeg
    soc_min_kwh: NonNeg = 0.0
    soc_max_kwh: NonNeg | None = None
    soc_final_min_kwh: NonNeg | None = None
    max_charge_kw: NonNeg | None = None
    max_discharge_kw: NonNeg | None = None
    charge_efficiency: Annotated[float, Field(gt=0, le=1)] = 1.0
    discharge_efficiency: Annotated[float, Field(gt=0, le=1)] = 1.0
    degradation_cost_per_kwh: NonNeg = 0.0

    @property
    def soc_max(self) -> float:
        return self.capacity_kwh if self.soc_max_kwh is None else self.soc_max_kwh

    @property
    def soc_final_min(self) -> float:
        return self.soc_initial_kwh if self.soc_final_min_kwh is None else self.soc_final_min_kwh

    def violations(self) -> list[FieldViolation]:
        v: list[FieldViolation] = []
        cap, lo, hi = self.capacity_kwh, self.soc_min_kwh, self.soc_max
        if hi > cap:
            v.append(FieldViolation("soc_max_kwh", f"must be <= capacity_kwh ({cap:g}), got {hi:g}"))
        if lo > hi:
            v.append(FieldViolation("soc_min_kwh", f"must be <= soc_max_kwh ({hi:g}), got {lo:g}"))
        for name, value in (("soc_initial_kwh", self.soc_initial_kwh), ("soc_final_min_kwh", self.soc_final_min)):
            if not lo <= value <= hi:
                v.append(
                    FieldViolation(name, f"must lie in [soc_min_kwh, soc_max_kwh] = [{lo:g}, {hi:g}], got {value:g}")
                )
        return v


class PVConfig(Strict):
    curtailable: bool = False


class ChargerConfig(Strict):
    id: Id
    max_kw: Pos
    kind: Literal["ac", "dc"] = "ac"


class FlexibleLoadConfig(Strict):
    """A load that runs when it pays, e.g. a miner.

    `min_kw` is a floor the plan keeps whenever the site can serve everyone; when it
    cannot, the floor gives way by `run_config.priorities.mining`, weighed against the
    other consumers (see `sitenode.optimizer.formulation`). `priority` (1 most important)
    orders the loads within that class, as a session's priority orders cars.
    """

    id: Id
    min_kw: NonNeg = 0.0
    max_kw: Pos
    value_per_kwh: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    priority: Annotated[int, Field(ge=1, le=10)] = 4


class CircuitConfig(Strict):
    id: Id
    max_kw: Pos
    members: Annotated[list[Id], Field(min_length=1)]


class SiteConfig(Strict):
    site_id: Id
    timezone: str = "UTC"
    grid: GridConfig = GridConfig()
    battery: BatteryConfig | None = None
    pv: PVConfig | None = None
    chargers: list[ChargerConfig] = []
    flexible_loads: list[FlexibleLoadConfig] = []
    circuits: list[CircuitConfig] = []

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA timezone such as Europe/London") from None
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> SiteConfig:
        v: list[FieldViolation] = []
        if self.battery is not None:
            v += [FieldViolation(f"battery.{x.field}", x.description) for x in self.battery.violations()]
        for i, load in enumerate(self.flexible_loads):
            if load.min_kw > load.max_kw:
                v.append(
                    FieldViolation(
                        f"flexible_loads[{i}].min_kw", f"must be <= max_kw ({load.max_kw:g}), got {load.min_kw:g}"
                    )
                )
        seen: dict[str, str] = {}
        for group in ("chargers", "flexible_loads", "circuits"):
            for i, item in enumerate(getattr(self, group)):
                if item.id in seen:
                    v.append(FieldViolation(f"{group}[{i}].id", f"duplicates {seen[item.id]}, got {item.id!r}"))
                else:
                    seen[item.id] = f"{group}[{i}]"
        for i, circuit in enumerate(self.circuits):
            for j, member in enumerate(circuit.members):
                if member not in seen or member == circuit.id:
                    v.append(
                        FieldViolation(
                            f"circuits[{i}].members[{j}]",
                            f"must name a charger, flexible load or other circuit, got {member!r}",
                        )
                    )
        if not v:
            v += self._cycles()
        if v:
            raise InvalidInput(v)
        return self

    def _cycles(self) -> list[FieldViolation]:
        children = {c.id: set(c.members) for c in self.circuits}
        for i, circuit in enumerate(self.circuits):
            stack, seen = list(children[circuit.id]), set()
            while stack:
                node = stack.pop()
                if node == circuit.id:
                    return [FieldViolation(f"circuits[{i}].members", f"circuit {circuit.id!r} contains itself")]
                if node in children and node not in seen:
                    seen.add(node)
                    stack.extend(children[node])
        return []

    def circuit_leaves(self) -> dict[str, frozenset[str]]:
        """Every circuit's chargers and flexible loads, through nested circuits."""
        children = {c.id: c.members for c in self.circuits}

        def leaves(cid: str) -> frozenset[str]:
            out: set[str] = set()
            for m in children[cid]:
                out |= leaves(m) if m in children else {m}
            return frozenset(out)

        return {cid: leaves(cid) for cid in children}

    def charger(self, charger_id: str) -> ChargerConfig | None:
        return next((c for c in self.chargers if c.id == charger_id), None)
