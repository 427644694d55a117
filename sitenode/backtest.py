"""Rolling-horizon backtest (GridQ's backtest runner): plan on forecasts, live the actuals.

Every `reoptimize_every_steps` steps the site is re-planned over the next
`window_steps` (clipped at the horizon's end, so the final SOC floor holds where the
contract puts it) with load and PV forecast from what was observed before, and prices,
carbon and grid limits as known in advance. The first steps of each plan are then
executed on the actual load and PV: the battery follows the plan within its real SOC,
EVs and flexible loads follow the plan, and the grid settles the difference. State
carries from window to window: SOC, energy delivered per session, and the peak already
set in each demand-charge window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sitenode.baselines import business_as_usual
from sitenode.baselines.common import settle_grid
from sitenode.bundle.io import BundleInputs
from sitenode.forecast import ForecastProvider, provider_for
from sitenode.metrics import CostBreakdown, compute_metrics
from sitenode.model.problem import build_problem
from sitenode.optimizer.result import SolveResult
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    LOAD,
    PV,
    SOC,
    ev_column,
    flex_column,
    schedule_columns,
    soc_trajectory,
)


@dataclass(frozen=True, eq=False)
class BacktestResult:
    schedule: pd.DataFrame  # realized, canonical columns
    metrics: CostBreakdown  # realized, on the actual series
    baseline: CostBreakdown  # business as usual on the actual series
    solves: tuple[SolveResult, ...]
    load_mae_kw: float
    pv_mae_kw: float

    def stats_json(self) -> dict[str, Any]:
        return {
            "solves": len(self.solves),
            "solve_seconds": sum(r.total_seconds for r in self.solves),
            "highs_seconds": sum(r.highs_seconds for r in self.solves),
            "statuses": sorted({str(r.status) for r in self.solves}),
            "forecast_mae_kw": {"load_kw": self.load_mae_kw, "pv_kw": self.pv_mae_kw},
        }


def run_backtest(
    inputs: BundleInputs,
    *,
    provider: ForecastProvider | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    run, site = inputs.run, inputs.site
    cfg = run.backtest
    actual = inputs.problem()
    T, dt = actual.steps, actual.dt_h
    provider = provider or provider_for(cfg.forecast, run.horizon.step_minutes)
    series = inputs.series
    columns = schedule_columns(actual)
    soc = actual.soc_initial_kwh
    delivered: dict[str, float] = {}
    floors = {w.name: w.floor_kw for w in actual.demand_windows}
    solves: list[SolveResult] = []
    errors_load, errors_pv = [], []
    starts = list(range(0, T, cfg.reoptimize_every_steps))
    b = site.battery
    for done, k in enumerate(starts):
        n = min(cfg.window_steps, T - k)
        window = actual.index[k : k + n]
        history = series.loc[series.index < window[0], ["load_kw", "pv_kw"]]
        forecast = provider.forecast(history, window)
        planned_series = series.copy()
        planned_series.loc[window, ["load_kw", "pv_kw"]] = forecast[["load_kw", "pv_kw"]].to_numpy()
        problem = build_problem(site, run, planned_series, inputs.sessions, start=window[0].to_pydatetime(), steps=n,
                                soc_initial_kwh=soc, delivered_kwh=delivered, demand_floor_kw=floors, reachable_final_soc=True)
        plan = optimize_site(problem)
        solves.append(plan.result)
        executed = min(cfg.reoptimize_every_steps, n)
        errors_load.append(np.abs(forecast["load_kw"].to_numpy()[:executed] - actual.load_kw[k : k + executed]))
        errors_pv.append(np.abs(forecast["pv_kw"].to_numpy()[:executed] - actual.pv_kw[k : k + executed]))
        for j in range(executed):
            t, row = k + j, plan.schedule.iloc[j]
            if b is not None:
                ch = min(row[CHARGE], max(0.0, b.soc_max - soc) / (b.charge_efficiency * dt))
                dis = min(row[DISCHARGE], max(0.0, soc - b.soc_min_kwh) * b.discharge_efficiency / dt)
                columns[CHARGE][t], columns[DISCHARGE][t] = ch, dis
                soc += (ch * b.charge_efficiency - dis / b.discharge_efficiency) * dt
            for w in problem.sessions:
                columns[ev_column(w.session_id)][t] = row[ev_column(w.session_id)]
                delivered[w.session_id] = delivered.get(w.session_id, 0.0) + row[ev_column(w.session_id)] * dt
            for load in site.flexible_loads:
                columns[flex_column(load.id)][t] = row[flex_column(load.id)]
            columns[CURTAIL][t] = min(row[CURTAIL], actual.pv_kw[t])
            drawn = columns[LOAD][t] + columns[CHARGE][t] - columns[DISCHARGE][t] - columns[PV][t] + columns[CURTAIL][t]
            drawn += sum(columns[c][t] for c in columns if c.startswith(("ev_", "flex_")))
            for w in actual.demand_windows:
                if w.mask[t]:
                    floors[w.name] = max(floors[w.name], drawn)
        if progress is not None:
            progress(done + 1, len(starts))
    # the grid settles what the plan did not foresee (plan curtailment is kept only
    # where the export limit makes it physical)
    settle_grid(actual, columns)
    if b is not None:
        columns[SOC] = soc_trajectory(actual, columns[CHARGE], columns[DISCHARGE])
    realized = pd.DataFrame(columns, index=actual.index)
    return BacktestResult(
        schedule=realized,
        metrics=compute_metrics(actual, realized),
        baseline=compute_metrics(actual, business_as_usual(actual)),
        solves=tuple(solves),
        load_mae_kw=float(np.concatenate(errors_load).mean()) if errors_load else 0.0,
        pv_mae_kw=float(np.concatenate(errors_pv).mean()) if errors_pv else 0.0,
    )
