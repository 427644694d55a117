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
from sitenode.optimizer.lexicographic import (
    BREACH,
    COST,
    OVER,
    SHORTFALL,
    cap_for,
    solve_lexicographic,
)
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.result import SolveResult, StageOutcome
from sitenode.schedule import SOC, ev_column, flex_column


@dataclass(frozen=True)
class Relaxation:
    """What the plan had to give up, and the stages that decided it.

    The "shortfall" stage gives way by priority (see `formulation`): EV energy
    (`ev_shortfall_kwh`, per session), flexible loads below their `min_kw`
    (`flex_shortfall_kwh`, per load: kWh below the floor over the horizon) and the
    battery's final SOC below its target (`soc_shortfall_kwh`).
    """

    over_limit_kwh: float = 0.0
    ev_shortfall_kwh: float = 0.0
    breach_kwh: float = 0.0
    shortfall_by_session: dict[str, float] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    flex_shortfall_kwh: float = 0.0
    soc_shortfall_kwh: float = 0.0
    flex_shortfall_by_load: dict[str, float] = field(default_factory=dict)

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


NOTHING = 1e-7  # a relaxation optimum this small is none at all (if no slack carries it)
IDLE_SLACK = 1e-9  # a slack at most this (kW or kWh) is solver noise around zero
_NOISE = 1e-7  # a flow this far below a floor or target keeps it (HiGHS's feasibility tolerance)
_UNSERVED_KWH = 1e-6  # energy not served beyond this is a relaxation, however little it weighs


class DirectStages:
    """The staged-model interface over a loaded HiGHS program and its named cost vectors.

    `slacks` are every column the slack-free first attempt holds at zero; the portfolio
    passes its sites' slacks together with its own coupling slacks.

    `integers` (the program's binary columns, optional) turns on the polish of the
    "shortfall" stage of a MIP (see `polish_shortfall`).
    """

    def __init__(
        self, model: HighsModel, costs: dict[str, np.ndarray], slacks: np.ndarray, integers: np.ndarray | None = None
    ) -> None:
        self.model, self.costs, self.slacks = model, costs, slacks
        self.integers = np.empty(0, dtype=np.int64) if integers is None else np.asarray(integers, dtype=np.int64)
        self.incumbent: np.ndarray | None = None

    def minimize(self, term: str) -> None:
        self.model.set_objective(self.costs[term])

    def hold_slacks_at_zero(self, held: bool) -> None:
        (self.model.fix_zero if held else self.model.release)(self.slacks)

    def cap(self, term: str, upper: float) -> None:
        """Hold `term` at `upper`, and a relaxation term's slacks weight by weight (`by_weight`)."""
        cost = self.costs[term]
        self._hold(term, cost, upper)
        if term != COST and self.incumbent is not None:
            for cols in by_weight(cost):
                ones = np.zeros_like(cost)
                ones[cols] = 1.0
                self._hold(term, ones, cap_for(float(self.incumbent[cols].sum())))

    def _hold(self, term: str, cost: np.ndarray, upper: float) -> None:
        priced = np.flatnonzero(cost)
        idle = self.incumbent is None or float(np.max(self.incumbent[priced], initial=0.0)) <= IDLE_SLACK
        if term != COST and upper <= NOTHING and (cost >= 0).all() and idle:
            # A relaxation term prices non-negative slacks: holding it at nothing is holding
            # each slack at zero. Bounds say that exactly; a row with a bound of 1e-8 is one
            # HiGHS's MIP has mishandled (it proved a wrong optimum without presolve). Only
            # when the stage's plan needs none of them: a term whose classes weigh 10⁻⁴ per
            # kWh (`formulation.class_weight`) can be this small and still need a slack.
            self.model.fix_zero(priced)
        else:
            self.model.add_cap(cost, upper)

    def run(self, stage: str, time_limit_seconds: float, warm_start: bool) -> StageOutcome:
        outcome = self.model.run(stage, time_limit_seconds, self.incumbent if warm_start else None)
        if outcome.status.has_solution:
            self.incumbent = self.model.values()
            if len(self.integers) and polish_shortfall(outcome):
                outcome = self._polish(outcome, time_limit_seconds)
        return outcome

    def _polish(self, first: StageOutcome, time_limit_seconds: float) -> StageOutcome:
        assert self.incumbent is not None
        x = self.incumbent
        unchosen = self.integers[x[self.integers] < 0.5]
        self.model.fix_zero(unchosen)
        again = self.model.run(first.stage, time_limit_seconds - first.seconds, x)
        self.model.release(unchosen)
        better = again.status.has_solution and again.objective <= first.objective
        if better:
            self.incumbent = self.model.values()
        return polished(first, again if better else None)

    def current_value(self, term: str) -> float:
        return float(self.costs[term] @ self.incumbent) if self.incumbent is not None else float("inf")


def by_weight(cost: np.ndarray) -> list[np.ndarray]:
    """A relaxation term's columns grouped by their weight, when it has more than one.

    Why a stage's optimum is held weight by weight, not only as the weighted sum: the
    "shortfall" term weighs classes 10 ** (1 − p) per kWh (`formulation`), so a cap on the
    sum, with the room every cap needs above a solver's optimum (relative 1e-7, absolute
    below 1), is a cap of room / w kWh on a class weighing w: up to 0.01 kWh, which the
    later stages then spend — a miner's floor or a battery target traded for breach or
    cost, what the order forbids (and, in the portfolio's sum, one site's target for
    another site's cost). So once the stage is solved, the slacks of each weight (all cars
    of one priority, all steps of one load, a battery's target; across sites where they
    weigh alike) are held together at what the stage's plan gives them, in kWh (or kW-steps),
    with the same room. That is stricter than the sum only where slacks of different
    weights tie exactly at their weights' rate, where the plan's split stands; among slacks
    of one weight (two cars of one priority) the later stages still choose.
    """
    priced = np.flatnonzero(cost > 0)
    levels = np.unique(cost[priced])
    if len(levels) < 2:
        return []
    return [priced[cost[priced] == level] for level in levels]


def polish_shortfall(first: StageOutcome) -> bool:
    """Whether a "shortfall" stage of a MIP is polished: re-solved with the binaries its plan
    left at zero held there (the charger choice fixed, up to dropping a charger).

    The stage sums classes weighing 1 to 0.0001 per kWh (`formulation`), and a MIP stops
    within `mip_rel_gap` of the whole sum: the top class alone can hide a lower class's
    whole shortfall in that gap (a battery emptied below its target for nothing, then the
    room spent on cost). With the choice fixed the stage is an LP in all but name (its
    relaxation is exact: every chosen binary can be 1), solved to optimality, so every
    class is optimal for that choice. Both engines do this; a plan the polish cannot
    improve keeps the first solve.
    """
    return first.stage == SHORTFALL and first.status.has_solution and first.gap > 0


def polished(first: StageOutcome, again: StageOutcome | None) -> StageOutcome:
    """The stage's outcome after a polish (`again`, None when it found nothing better)."""
    if again is None:
        return first
    objective = again.objective
    gap = abs(objective - first.bound) / max(1e-10, abs(objective)) if objective != first.bound else 0.0
    return StageOutcome(first.stage, first.status, objective, first.bound, gap, first.seconds + again.seconds)


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
    integers = np.flatnonzero(matrix.integrality)
    stages, relaxed = solve_lexicographic(DirectStages(model, costs, cols.slacks, integers), cfg.time_limit_seconds)
    solve_s = time.perf_counter() - started
    final = stages[-1]

    started = time.perf_counter()
    if final.status.has_solution:
        x = model.values()
        schedule = schedule_frame(problem, cols, x)
        assignment = assign_chargers(problem, cols, x)
        by_session = {sid: float(max(x[c], 0.0)) for sid, c in cols.shortfall.items()}
        relaxation = relaxation_from(
            problem, x[cols.grid_import], x[cols.grid_export], by_session, tuple(relaxed), schedule=schedule
        )
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
    problem: SiteProblem,
    grid_import: np.ndarray,
    grid_export: np.ndarray,
    by_session: dict[str, float],
    stages: tuple[str, ...],
    *,
    schedule: pd.DataFrame | None = None,
) -> Relaxation:
    """Amounts read off the flows themselves, not the slack columns (a slack the cost stage
    leaves idle above zero would otherwise be reported as a breach that never happens).

    With the plan's `schedule` the flexible loads' floors and the final SOC are read off
    it too; without one (callers that predate them) they are reported as zero. With it,
    energy not served that the lexicographic driver did not flag (it lists a stage whose
    weighted optimum exceeds 1e-6, and classes weigh down to 10⁻⁵ per kWh) still puts
    "shortfall" among the `stages` once it exceeds 1e-6 kWh.
    """
    dt, limit = problem.dt_h, problem.import_limit_kw
    finite = np.isfinite(limit)
    safe = np.where(finite, limit, 0.0)
    above = np.where(finite, np.clip(grid_import - safe, 0.0, None), 0.0)
    within = np.minimum(above, problem.site.grid.breach_margin * safe)
    over_export = np.clip(grid_export - problem.export_limit_kw, 0.0, None)
    by_load, soc_short = floor_shortfalls(problem, schedule) if schedule is not None else ({}, 0.0)
    if schedule is not None and SHORTFALL not in stages:
        ev_short = sum(
            max(0.0, w.need_kwh - float(schedule[ev_column(w.session_id)].sum()) * dt) for w in problem.sessions
        )
        if ev_short + sum(by_load.values()) + soc_short > _UNSERVED_KWH:
            stages = (*(t for t in stages if t == OVER), SHORTFALL, *(t for t in stages if t != OVER))
    return Relaxation(
        over_limit_kwh=float(((above - within).sum() + over_export.sum()) * dt),
        ev_shortfall_kwh=float(sum(by_session.values())),
        breach_kwh=float(within.sum() * dt),
        shortfall_by_session=by_session,
        stages=stages,
        flex_shortfall_kwh=float(sum(by_load.values())),
        soc_shortfall_kwh=soc_short,
        flex_shortfall_by_load=by_load,
    )


def floor_shortfalls(problem: SiteProblem, schedule: pd.DataFrame) -> tuple[dict[str, float], float]:
    """kWh each flexible load ran below its `min_kw`, and kWh the final SOC ended below its
    target, in `schedule` (below HiGHS's feasibility tolerance, 1e-7, reads as none)."""
    dt = problem.dt_h
    by_load = {}
    for load in problem.site.flexible_loads:
        below = np.clip(load.min_kw - schedule[flex_column(load.id)].to_numpy(dtype=float), 0.0, None)
        below[below <= _NOISE] = 0.0
        by_load[load.id] = float(below.sum() * dt)
    soc_short = 0.0
    b = problem.site.battery
    if b is not None and problem.steps:
        target = max(b.soc_min_kwh, problem.soc_final_min_kwh)
        soc_short = max(0.0, target - float(schedule[SOC].iloc[-1]))
        soc_short = soc_short if soc_short > _NOISE else 0.0
    return by_load, soc_short
