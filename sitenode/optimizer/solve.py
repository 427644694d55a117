"""Optimize one site: build, solve lexicographically, extract a schedule.

Relaxation order (shared/BUNDLE.md), each stage holding the optimum of the ones
before it, so a relaxation is never traded against cost:

0. import/export beyond limit and margin (only when fixed load alone forces it),
1. EV energy shortfall, weighted by 1/priority,
2. import-limit breach within `breach_margin`,
3. the weighted objective.

The first attempt holds every slack at zero and minimizes cost directly: whenever a
plan without relaxation exists that single solve is the lexicographic optimum, and
only a site that cannot be served pays for the extra stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sitenode.model.problem import SiteProblem
from sitenode.optimizer.extract import assign_chargers, schedule_frame
from sitenode.optimizer.formulation import BREACH, COST, OVER, SHORTFALL, SiteColumns, add_site
from sitenode.optimizer.highs import VERSION, HighsModel
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.result import SolveResult, StageOutcome


@dataclass(frozen=True)
class Relaxation:
    """What the plan had to give up, and the stages that decided it."""

    over_limit_kwh: float = 0.0
    ev_shortfall_kwh: float = 0.0
    breach_kwh: float = 0.0
    shortfall_by_session: dict[str, float] = field(default_factory=dict)
    stages: tuple[str, ...] = ()

    @property
    def relaxed(self) -> bool:
        return bool(self.stages)


@dataclass(frozen=True, eq=False)
class Plan:
    """An optimized schedule (canonical columns), how it was found, and what it relaxed."""

    schedule: pd.DataFrame
    result: SolveResult
    relaxation: Relaxation
    charger_assignment: dict[str, str]


def _cap(value: float) -> float:
    # tight: whatever a stage leaves in its tolerance, a later stage may trade away
    return value + 1e-8 * max(1.0, abs(value))


def optimize_site(problem: SiteProblem, *, price_adjust: np.ndarray | None = None, threads: int = 1) -> Plan:
    """Cost-optimal schedule for `problem`; never raises for infeasibility (see module doc)."""
    started = time.perf_counter()
    lp = LinearProgram()
    cols = add_site(lp, problem, price_adjust)
    matrix = lp.matrix()
    cfg = problem.solver
    model = HighsModel(matrix, time_limit_seconds=cfg.time_limit_seconds, mip_rel_gap=cfg.mip_rel_gap, threads=threads)
    costs = {name: lp.cost(name) for name in (COST, OVER, SHORTFALL, BREACH)}
    build_s = time.perf_counter() - started

    started = time.perf_counter()

    def remaining() -> float:
        # one time budget for all stages of a MIP, not one per stage
        return cfg.time_limit_seconds - (time.perf_counter() - started)

    stages: list[StageOutcome] = []
    slacks = cols.slacks
    model.set_objective(costs[COST])
    model.fix_zero(slacks)
    first = model.run("cost", remaining())
    stages.append(first)
    relaxed: list[str] = []
    if not first.status.has_solution:
        model.release(slacks)
        incumbent = None
        for name in (OVER, SHORTFALL, BREACH):
            if incumbent is not None and float(costs[name] @ incumbent) <= 1e-9:
                # slacks are >= 0, so a plan that already needs none of this one is optimal for it
                model.add_cap(costs[name], _cap(0.0))
                continue
            model.set_objective(costs[name])
            outcome = model.run(name, remaining(), incumbent)
            stages.append(outcome)
            if not outcome.status.has_solution:
                break
            if outcome.objective > 1e-6:
                relaxed.append(name)
            incumbent = model.values()
            model.add_cap(costs[name], _cap(max(outcome.objective, 0.0)))
        model.set_objective(costs[COST])
        stages.append(model.run("cost", remaining(), incumbent))
    solve_s = time.perf_counter() - started
    final = stages[-1]

    started = time.perf_counter()
    if final.status.has_solution:
        x = model.values()
        schedule = schedule_frame(problem, cols, x)
        assignment = assign_chargers(problem, cols, x)
        relaxation = _relaxation(problem, cols, x, tuple(relaxed))
    else:
        schedule, assignment, relaxation = schedule_frame(problem, cols, None), {}, Relaxation(stages=tuple(relaxed))
    extract_s = time.perf_counter() - started

    result = SolveResult(
        status=final.status,
        objective=final.objective,
        bound=final.bound,
        gap=final.gap,
        build_seconds=build_s,
        solve_seconds=solve_s,
        extract_seconds=extract_s,
        highs_seconds=sum(s.seconds for s in stages),
        num_cols=matrix.num_cols,
        num_rows=matrix.num_rows,
        num_nonzeros=matrix.num_nonzeros,
        num_integer=int(matrix.integrality.sum()),
        engine="highs-direct",
        solver_version=VERSION,
        time_limit_seconds=cfg.time_limit_seconds if model.has_integers else None,
        mip_rel_gap=cfg.mip_rel_gap if model.has_integers else None,
        stages=tuple(stages),
    )
    return Plan(schedule, result, relaxation, assignment)


def _relaxation(problem: SiteProblem, cols: SiteColumns, x: np.ndarray, stages: tuple[str, ...]) -> Relaxation:
    """Amounts read off the flows themselves, not the slack columns (a slack the cost stage
    leaves idle above zero would otherwise be reported as a breach that never happens)."""
    dt, limit = problem.dt_h, problem.import_limit_kw
    finite = np.isfinite(limit)
    safe = np.where(finite, limit, 0.0)
    above = np.where(finite, np.clip(x[cols.grid_import] - safe, 0.0, None), 0.0)
    within = np.minimum(above, problem.site.grid.breach_margin * safe)
    over_export = np.clip(x[cols.grid_export] - problem.export_limit_kw, 0.0, None)
    by_session = {sid: float(max(x[c], 0.0)) for sid, c in cols.shortfall.items()}
    return Relaxation(
        over_limit_kwh=float(((above - within).sum() + over_export.sum()) * dt),
        ev_shortfall_kwh=float(sum(by_session.values())),
        breach_kwh=float(within.sum() * dt),
        shortfall_by_session=by_session,
        stages=stages,
    )
