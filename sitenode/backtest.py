"""Rolling-horizon backtest (GridQ's backtest runner): plan on forecasts, live the actuals.

Every `reoptimize_every_steps` steps of the run's horizon the site is re-planned over the
next `window_steps` steps, with load and PV forecast from every series row before the
decision (prices, carbon and grid limits are known in advance and come from the
series and tariff). The first `reoptimize_every_steps` steps of the plan are then lived
on the actual load and PV:

* the battery follows the plan's charge and discharge, clipped so the real SOC stays
  within its bounds, and trimmed where following the plan on the actual load and PV
  would export or import past the grid's limit (it never does more than planned);
* EVs and flexible loads follow the plan;
* PV is curtailed as planned, but never more than the surplus the site actually has
  (curtailing PV only to import in its place would be pure loss), plus whatever
  export above the limit a curtailable PV must shed;
* the grid settles the rest: import what is missing, export what is spare.

State carries from one plan to the next: the SOC, the energy each session has had, the
peak already set in each demand-charge window, and the charger each vehicle plugged
into (a car does not move to another charger because a later plan would prefer it).

Windows end at the horizon's end even when the series runs on: the contract's final
SOC floor holds at the horizon's last step, and only a window ending there can keep it.
When a solve finds no plan at all, the site runs business as usual for those steps.

Pure: no file I/O (the bundle runner writes the outputs), no clock (SolveResult times).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sitenode.bundle.io import BundleInputs
from sitenode.errors import InvalidInput
from sitenode.forecast import ForecastProvider, provider_for
from sitenode.forecast.providers import COLUMNS
from sitenode.metrics import CostBreakdown, compute_metrics
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.sessions import EVSession
from sitenode.optimizer.result import SolveResult
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    LOAD,
    PV,
    SOC,
    ev_column,
    flex_column,
    schedule_columns,
    soc_trajectory,
)

BAU = "business_as_usual"


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """What living the rolling plans on the actual series gave, and what planning cost."""

    schedule: pd.DataFrame  # realized, canonical columns, over the run's horizon
    metrics: CostBreakdown  # realized, priced on the actual problem
    baseline: CostBreakdown  # business as usual on the actual problem
    solves: tuple[SolveResult, ...]
    decision_steps: tuple[int, ...]  # the horizon step each solve planned from
    load_mae_kw: float  # forecast error over the steps lived, each step once
    pv_mae_kw: float
    charger_assignment: dict[str, str] = field(default_factory=dict)  # session -> charger it used
    fallback_steps: int = 0  # steps run as business as usual because a solve found no plan

    @property
    def solve_count(self) -> int:
        return len(self.solves)

    @property
    def solve_seconds(self) -> float:
        return float(sum(r.total_seconds for r in self.solves))

    def stats_json(self) -> dict[str, Any]:
        return {
            "solves": self.solve_count,
            "solve_seconds": self.solve_seconds,
            "highs_seconds": float(sum(r.highs_seconds for r in self.solves)),
            "statuses": sorted({str(r.status) for r in self.solves}),
            "fallback_steps": self.fallback_steps,
            "forecast_mae_kw": {"load_kw": self.load_mae_kw, "pv_kw": self.pv_mae_kw},
            "charger_assignment": self.charger_assignment,
        }


@dataclass
class _State:
    """What one window hands the next."""

    soc_kwh: float
    delivered_kwh: dict[str, float]
    peak_kw: dict[str, float]  # per demand window name, realized so far
    plugged: dict[str, str]  # session -> charger, for sessions the plans placed


def run_backtest(
    inputs: BundleInputs,
    *,
    provider: ForecastProvider | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Roll the plan over the run's horizon (see the module doc); `provider` overrides
    `run_config.backtest.forecast`, `progress(done, total)` is called after each solve."""
    # imported late, as the bundle runner does, so importing this module stays light
    from sitenode.baselines import BASELINES

    actual = inputs.problem()
    cfg = inputs.run.backtest
    provider = provider if provider is not None else provider_for(cfg.forecast, actual.step_minutes)
    T, every = actual.steps, cfg.reoptimize_every_steps
    state = _State(actual.soc_initial_kwh, {}, {w.name: w.floor_kw for w in actual.demand_windows}, {})
    columns = schedule_columns(actual)
    decisions = tuple(range(0, T, every))
    solves: list[SolveResult] = []
    load_err, pv_err = np.zeros(T), np.zeros(T)
    fallback = 0

    for done, k in enumerate(decisions, start=1):
        n = min(cfg.window_steps, T - k)
        window = actual.index[k : k + n]
        history = inputs.series.loc[inputs.series.index < window[0], list(COLUMNS)]
        forecast = _checked(provider.forecast(history, window), window)
        problem = build_problem(
            inputs.site,
            inputs.run,
            _with_forecast(inputs.series, window, forecast),
            _plugged_sessions(inputs.sessions, state.plugged),
            start=window[0].to_pydatetime(),
            steps=n,
            soc_initial_kwh=state.soc_kwh,
            delivered_kwh=dict(state.delivered_kwh),
            demand_floor_kw=dict(state.peak_kw),
            reachable_final_soc=True,
        )
        plan = optimize_site(problem)
        solves.append(plan.result)
        lived = min(every, n)
        if plan.result.status.has_solution:
            schedule = plan.schedule
            _plug_in(problem, plan.charger_assignment, lived, state)
        else:
            schedule = BASELINES[BAU](problem)
            fallback += lived
        for j in range(lived):
            _live_step(actual, schedule.iloc[j], k + j, columns, state)
        load_err[k : k + lived] = np.abs(forecast["load_kw"].to_numpy()[:lived] - actual.load_kw[k : k + lived])
        pv_err[k : k + lived] = np.abs(forecast["pv_kw"].to_numpy()[:lived] - actual.pv_kw[k : k + lived])
        if progress is not None:
            progress(done, len(decisions))

    columns[SOC] = soc_trajectory(actual, columns[CHARGE], columns[DISCHARGE])
    realized = pd.DataFrame(columns, index=actual.index)
    named = {s.session_id: s.charger_id for s in inputs.sessions if s.charger_id is not None}
    charged = {w.session_id for w in actual.sessions if columns[ev_column(w.session_id)].any()}
    return BacktestResult(
        schedule=realized,
        metrics=compute_metrics(actual, realized),
        baseline=compute_metrics(actual, BASELINES[BAU](actual)),
        solves=tuple(solves),
        decision_steps=decisions,
        load_mae_kw=float(load_err.mean()),
        pv_mae_kw=float(pv_err.mean()),
        charger_assignment={sid: c for sid, c in {**named, **state.plugged}.items() if sid in charged},
        fallback_steps=fallback,
    )


def _checked(forecast: pd.DataFrame, window: pd.DatetimeIndex) -> pd.DataFrame:
    """The provider's frame on exactly the window's steps, or an error naming what is wrong."""
    missing = [c for c in COLUMNS if c not in forecast.columns]
    if missing:
        raise InvalidInput.one("backtest.forecast", f"the provider returned no {', '.join(missing)}")
    frame = forecast.reindex(window)[list(COLUMNS)].astype(float)
    values = frame.to_numpy()
    if not np.isfinite(values).all():
        raise InvalidInput.one(
            "backtest.forecast", f"the provider left steps from {window[0].isoformat()} missing or not finite"
        )
    # a forecast is an estimate of a non-negative flow: a slightly negative one is noise
    return frame.clip(lower=0.0)


def _with_forecast(series: pd.DataFrame, window: pd.DatetimeIndex, forecast: pd.DataFrame) -> pd.DataFrame:
    """The series on the window's steps with load and PV as forecast; the rest as known."""
    out = series.loc[window].copy()
    out[list(COLUMNS)] = forecast[list(COLUMNS)].to_numpy()
    return out


def _plugged_sessions(sessions: tuple[EVSession, ...], plugged: dict[str, str]) -> tuple[EVSession, ...]:
    return tuple(
        s.model_copy(update={"charger_id": plugged[s.session_id]}) if s.session_id in plugged else s for s in sessions
    )


def _plug_in(problem: SiteProblem, assignment: dict[str, str], lived: int, state: _State) -> None:
    """A session that arrives within the steps lived stays on the charger the plan gave it."""
    for w in problem.sessions:
        if w.session.charger_id is None and w.first < lived and w.session_id in assignment:
            state.plugged[w.session_id] = assignment[w.session_id]


def _live_step(actual: SiteProblem, planned: pd.Series, t: int, columns: dict[str, np.ndarray], state: _State) -> None:
    """Step `t` of the horizon as it happens: the plan's setpoints on the actual load and PV."""
    dt, site = actual.dt_h, actual.site
    charge = discharge = 0.0
    b = site.battery
    if b is not None:
        room_kwh = max(0.0, b.soc_max - state.soc_kwh)
        stored_kwh = max(0.0, state.soc_kwh - b.soc_min_kwh)
        charge = min(max(float(planned[CHARGE]), 0.0), room_kwh / (b.charge_efficiency * dt))
        discharge = min(max(float(planned[DISCHARGE]), 0.0), stored_kwh * b.discharge_efficiency / dt)
    for w in actual.sessions:
        col = ev_column(w.session_id)
        if col in planned.index:
            columns[col][t] = max(float(planned[col]), 0.0)
            state.delivered_kwh[w.session_id] = state.delivered_kwh.get(w.session_id, 0.0) + columns[col][t] * dt
    for load in site.flexible_loads:
        columns[flex_column(load.id)][t] = float(planned[flex_column(load.id)])

    demand = columns[LOAD][t]
    demand += sum(columns[ev_column(w.session_id)][t] for w in actual.sessions)
    demand += sum(columns[flex_column(load.id)][t] for load in site.flexible_loads)
    pv = columns[PV][t]
    net = demand + charge - pv - discharge
    surplus = max(0.0, -net)
    curtail = min(max(float(planned[CURTAIL]), 0.0), surplus, pv)
    if site.pv is not None and site.pv.curtailable:
        curtail += min(max(0.0, surplus - curtail - actual.export_limit_kw), pv - curtail)
    grid_export, grid_import = surplus - curtail, max(0.0, net)
    # The battery does not push the grid past its limits on a forecast's error: what the
    # plan meant to export or import within the limit, the actual load and PV may not allow.
    if grid_export > actual.export_limit_kw:
        cut = min(discharge, grid_export - actual.export_limit_kw)
        discharge, grid_export = discharge - cut, grid_export - cut
    if grid_import > actual.import_limit_kw[t]:
        cut = min(charge, grid_import - actual.import_limit_kw[t])
        charge, grid_import = charge - cut, grid_import - cut

    columns[CHARGE][t], columns[DISCHARGE][t], columns[CURTAIL][t] = charge, discharge, curtail
    columns[GRID_IMPORT][t], columns[GRID_EXPORT][t] = grid_import, grid_export
    if b is not None:
        state.soc_kwh += (charge * b.charge_efficiency - discharge / b.discharge_efficiency) * dt
    for dw in actual.demand_windows:
        if dw.mask[t]:
            state.peak_kw[dw.name] = max(state.peak_kw[dw.name], grid_import)
