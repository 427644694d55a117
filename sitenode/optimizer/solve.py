"""Optimize one site with the direct engine: arrays in, HiGHS, a schedule out.

The relaxation order and its stages live in `lexicographic`; this module builds the
program (`formulation`), drives the stages over a `HighsModel`, and extracts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sitenode.model.problem import SiteProblem
from sitenode.optimizer.extract import assign_chargers, schedule_frame
from sitenode.optimizer.formulation import add_site
from sitenode.optimizer.highs import VERSION, HighsModel
from sitenode.optimizer.lexicographic import BREACH, COST, OVER, SHORTFALL, solve_lexicographic
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


_NOTHING = 1e-7  # a relaxation optimum this small is none at all


class DirectStages:
    """The staged-model interface over a loaded HiGHS program and its named cost vectors.

    `slacks` are every column the slack-free first attempt holds at zero; the portfolio
    passes its sites' slacks together with its own coupling slacks.
    """

    def __init__(self, model: HighsModel, costs: dict[str, np.ndarray], slacks: np.ndarray) -> None:
        self.model, self.costs, self.slacks = model, costs, slacks
        self.incumbent: np.ndarray | None = None

    def minimize(self, term: str) -> None:
        self.model.set_objective(self.costs[term])

    def hold_slacks_at_zero(self, held: bool) -> None:
        (self.model.fix_zero if held else self.model.release)(self.slacks)

    def cap(self, term: str, upper: float) -> None:
        cost = self.costs[term]
        if term != COST and upper <= _NOTHING and (cost >= 0).all():
            # A relaxation term prices non-negative slacks: holding it at nothing is holding
            # each slack at zero. Bounds say that exactly; a row with a bound of 1e-8 is one
            # HiGHS's MIP has mishandled (it proved a wrong optimum without presolve).
            self.model.fix_zero(np.flatnonzero(cost))
        else:
            self.model.add_cap(cost, upper)

    def run(self, stage: str, time_limit_seconds: float, warm_start: bool) -> StageOutcome:
        outcome = self.model.run(stage, time_limit_seconds, self.incumbent if warm_start else None)
        if outcome.status.has_solution:
            self.incumbent = self.model.values()
        return outcome

    def current_value(self, term: str) -> float:
        return float(self.costs[term] @ self.incumbent) if self.incumbent is not None else float("inf")


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
    stages, relaxed = solve_lexicographic(DirectStages(model, costs, cols.slacks), cfg.time_limit_seconds)
    solve_s = time.perf_counter() - started
    final = stages[-1]

    started = time.perf_counter()
    if final.status.has_solution:
        x = model.values()
        schedule = schedule_frame(problem, cols, x)
        assignment = assign_chargers(problem, cols, x)
        by_session = {sid: float(max(x[c], 0.0)) for sid, c in cols.shortfall.items()}
        relaxation = relaxation_from(problem, x[cols.grid_import], x[cols.grid_export], by_session, tuple(relaxed))
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


def relaxation_from(
    problem: SiteProblem, grid_import: np.ndarray, grid_export: np.ndarray, by_session: dict[str, float], stages: tuple[str, ...]
) -> Relaxation:
    """Amounts read off the flows themselves, not the slack columns (a slack the cost stage
    leaves idle above zero would otherwise be reported as a breach that never happens)."""
    dt, limit = problem.dt_h, problem.import_limit_kw
    finite = np.isfinite(limit)
    safe = np.where(finite, limit, 0.0)
    above = np.where(finite, np.clip(grid_import - safe, 0.0, None), 0.0)
    within = np.minimum(above, problem.site.grid.breach_margin * safe)
    over_export = np.clip(grid_export - problem.export_limit_kw, 0.0, None)
    return Relaxation(
        over_limit_kwh=float(((above - within).sum() + over_export.sum()) * dt),
        ev_shortfall_kwh=float(sum(by_session.values())),
        breach_kwh=float(within.sum() * dt),
        shortfall_by_session=by_session,
        stages=stages,
    )
