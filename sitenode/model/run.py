"""How a run goes, as `run_config.yaml` describes it: horizon, tariff, objective, mode."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from sitenode.errors import InvalidInput
from sitenode.model.site import NonNeg, Strict

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Horizon(Strict):
    """`steps` steps of `step_minutes` from `start` (UTC)."""

    start: AwareDatetime
    step_minutes: int = 15
    steps: Annotated[int, Field(gt=0, le=200_000)]

    @field_validator("step_minutes")
    @classmethod
    def _divides_hour(cls, value: int) -> int:
        if value <= 0 or 60 % value:
            raise ValueError("must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.step_minutes)

    @property
    def step_hours(self) -> float:
        return self.step_minutes / 60.0

    @property
    def end(self) -> datetime:
        return self.start + self.steps * self.step


class WindowSchedule(Strict):
    """Local wall-clock window; `end_time` counts its whole minute; wraps past midnight."""

    start_time: str
    end_time: str
    days_of_week: list[Annotated[int, Field(ge=0, le=6)]] | None = None  # Monday = 0

    @field_validator("start_time", "end_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be a local time HH:MM, 00:00 to 23:59")
        return value


class EnergyRate(Strict):
    name: str = ""
    rate: Annotated[float, Field(allow_inf_nan=False)]
    schedule: WindowSchedule


class DemandCharge(Strict):
    name: str = ""
    rate_per_kw: NonNeg
    schedule: WindowSchedule


class Tariff(Strict):
    currency: str = "GBP"
    energy_rates: list[EnergyRate] = []
    export_rate: Annotated[float, Field(allow_inf_nan=False)] | None = None
    demand_charges: list[DemandCharge] = []


class Objective(Strict):
    """Weights: `cost` on total_cost, `carbon` in currency per kg, `peak` per kW of peak import."""

    cost: NonNeg = 1.0
    carbon: NonNeg = 0.0
    peak: NonNeg = 0.0


class Priorities(Strict):
    """Module 11's consumer priorities, 1 most important (equal values weigh alike).

    They order the greedy priority allocation (`sitenode.baselines.priority`), and in the
    optimizer they decide who gives way when the site cannot serve every consumer: energy
    not served weighs 10 ** (1 − priority) per kWh (fleet: EV energy; mining: flexible
    loads' floors; battery: the final SOC target), see `sitenode.optimizer.formulation`.
    Facility load and export cannot fall short, so their priorities do not change an
    optimal plan; nor does any priority change a plan that serves everyone.
    """

    fleet: Annotated[int, Field(ge=1, le=5)] = 1
    facility: Annotated[int, Field(ge=1, le=5)] = 2
    battery: Annotated[int, Field(ge=1, le=5)] = 3
    mining: Annotated[int, Field(ge=1, le=5)] = 4
    export: Annotated[int, Field(ge=1, le=5)] = 5


class BacktestConfig(Strict):
    window_steps: Annotated[int, Field(gt=0)] = 96
    reoptimize_every_steps: Annotated[int, Field(gt=0)] = 4
    forecast: Literal["persistence", "seasonal_naive"] = "persistence"


class SolverConfig(Strict):
    """Limits for the charger-assignment MIP (an LP ignores them)."""

    time_limit_seconds: Annotated[float, Field(gt=0)] = 10.0
    mip_rel_gap: Annotated[float, Field(ge=0, lt=1)] = 0.001


class RunConfig(Strict):
    horizon: Horizon
    mode: Literal["optimize", "backtest"] = "optimize"
    backtest: BacktestConfig = BacktestConfig()
    tariff: Tariff = Tariff()
    objective: Objective = Objective()
    priorities: Priorities = Priorities()
    solver: SolverConfig = SolverConfig()

    @model_validator(mode="after")
    def _window_fits(self) -> RunConfig:
        if self.backtest.reoptimize_every_steps > self.backtest.window_steps:
            raise InvalidInput.one(
                "backtest.reoptimize_every_steps",
                f"must be <= backtest.window_steps ({self.backtest.window_steps}), "
                f"got {self.backtest.reoptimize_every_steps}",
            )
        return self
