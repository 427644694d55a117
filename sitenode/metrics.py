"""What a schedule costs, exactly as shared/BUNDLE.md defines it.

Computed from the canonical columns alone, so the optimum, every baseline and a
backtest's realized schedule are priced by one piece of code. Breach and shortfall
are reported beside the cost, never inside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from sitenode.model.problem import SiteProblem
from sitenode.schedule import CHARGE, DISCHARGE, GRID_EXPORT, GRID_IMPORT, ev_column, flex_column


@dataclass(frozen=True)
class CostBreakdown:
    total_cost: float
    energy_cost: float
    export_revenue: float
    demand_cost: float
    degradation_cost: float
    flex_value: float
    carbon_kg: float
    peak_import_kw: float
    ev_energy_kwh: float
    ev_shortfall_kwh: float
    breach_kwh: float
    breach_cost: float

    def to_json(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}

    def minus(self, other: CostBreakdown) -> dict[str, float]:
        return {f.name: round(float(getattr(self, f.name) - getattr(other, f.name)), 6) for f in fields(self)}

    def weighted_objective(self, problem: SiteProblem) -> float:
        w = problem.objective
        return w.cost * self.total_cost + w.carbon * self.carbon_kg + w.peak * self.peak_import_kw


def compute_metrics(problem: SiteProblem, frame: pd.DataFrame) -> CostBreakdown:
    dt = problem.dt_h
    imp = frame[GRID_IMPORT].to_numpy()
    exp = frame[GRID_EXPORT].to_numpy()
    energy_cost = float((problem.import_price * imp).sum() * dt)
    export_revenue = float((problem.export_price * exp).sum() * dt)
    demand_cost = 0.0
    for w in problem.demand_windows:
        if w.mask.any():
            demand_cost += w.rate_per_kw * max(w.floor_kw, float(imp[w.mask].max()))
    degradation = 0.0
    if problem.site.battery is not None:
        throughput = (frame[CHARGE].to_numpy() + frame[DISCHARGE].to_numpy()).sum() * dt
        degradation = float(problem.site.battery.degradation_cost_per_kwh * throughput)
    flex_value = sum(
        load.value_per_kwh * float(frame[flex_column(load.id)].sum()) * dt for load in problem.site.flexible_loads
    )
    delivered = {w.session_id: float(frame[ev_column(w.session_id)].sum() * dt) for w in problem.sessions}
    shortfall = sum(max(0.0, w.need_kwh - delivered[w.session_id]) for w in problem.sessions)
    over = np.where(np.isfinite(problem.import_limit_kw), imp - problem.import_limit_kw, 0.0)
    breach_kwh = float(np.clip(over, 0.0, None).sum() * dt)
    return CostBreakdown(
        total_cost=energy_cost - export_revenue + demand_cost + degradation - flex_value,
        energy_cost=energy_cost,
        export_revenue=export_revenue,
        demand_cost=demand_cost,
        degradation_cost=degradation,
        flex_value=float(flex_value),
        carbon_kg=float((problem.carbon_kg_per_kwh * imp).sum() * dt),
        peak_import_kw=float(imp.max(initial=0.0)),
        ev_energy_kwh=float(sum(delivered.values())),
        ev_shortfall_kwh=float(shortfall),
        breach_kwh=breach_kwh,
        breach_cost=breach_kwh * problem.site.grid.breach_penalty_per_kwh,
    )


def metrics_document(
    optimized: CostBreakdown, baseline: CostBreakdown, currency: str, others: dict[str, CostBreakdown] | None = None
) -> dict:
    """`metrics.json`: the optimum, business as usual under `baseline`, and `savings`."""
    doc: dict = {
        "currency": currency,
        **optimized.to_json(),
        "baseline": baseline.to_json(),
        "savings": baseline.minus(optimized),
    }
    if others:
        doc["baselines"] = {name: m.to_json() for name, m in others.items()}
    return doc
