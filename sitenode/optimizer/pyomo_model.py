"""The site model in Pyomo: the second formulation, and the one a larger Pyomo model embeds.

Same variables, rows and named terms as `formulation` (read its docstring for the
model), written with Pyomo components rather than arrays. Two uses:

* a cross-check: a property test solves random sites with both and compares,
* composition: `add_site_block` fills a `Block` with one site, whose `grid_import[t]`
  a portfolio model can couple across sites, with Expressions `cost`, `over`,
  `shortfall_total` and `breach_total` to build objectives from.

Energy not served, weighted by priority, as there: per session `shortfall[s]` (kWh),
per flexible load with min_kw > 0 and step `flex_shortfall[i, t]` (kW below min_kw, with
`flex_floor[i, t]`: flex + short >= min_kw), and `soc_shortfall` (kWh below the final SOC
target, with `soc_final`) when the target lies above soc_min_kwh; the weights are
`formulation.shortfall_weights`, the same numbers the direct engine uses.

Solved with HiGHS through Pyomo's persistent highspy interface, so the lexicographic
stages re-solve the loaded model instead of rebuilding it. Building Pyomo objects per
term is what makes this engine slower than the direct one on long horizons (see
bench/optimizer.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict

import numpy as np
import pandas as pd
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs
from pyomo.core.expr.numvalue import NumericValue
from pyomo.core.expr.relational_expr import RelationalExpression
from pyomo.core.expr.visitor import identify_variables
from pyomo.repn.standard_repn import generate_standard_repn

from sitenode.model.problem import SiteProblem
from sitenode.optimizer.extract import colour_pools
from sitenode.optimizer.formulation import (
    charger_pools,
    max_concurrency,
    present_at_arrivals,
    shortfall_weights,
)
from sitenode.optimizer.lexicographic import (
    BREACH,
    COST,
    OVER,
    SHORTFALL,
    cap_for,
    solve_lexicographic,
)
from sitenode.optimizer.result import SolveResult, SolverStatus, StageOutcome
from sitenode.optimizer.solve import (
    IDLE_SLACK,
    NOTHING,
    Plan,
    Relaxation,
    by_weight,
    polish_shortfall,
    polished,
    relaxation_from,
)
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    SOC,
    ev_column,
    flex_column,
    schedule_columns,
)

NonNeg = pyo.NonNegativeReals


def add_site_block(b: pyo.Block, problem: SiteProblem, price_adjust: np.ndarray | None = None) -> None:
    """Fill `b` with one site's variables, constraints and named Expressions."""
    p, site, T, dt = problem, problem.site, problem.steps, problem.dt_h
    w = p.objective
    steps = range(T)
    limit = p.import_limit_kw
    margin = site.grid.breach_margin
    b.T = pyo.Set(initialize=steps, ordered=True)
    b.grid_import = pyo.Var(b.T, within=NonNeg)
    b.grid_export = pyo.Var(b.T, within=NonNeg)
    b.breach = pyo.Var(b.T, within=NonNeg, bounds=lambda _, t: (0, margin * limit[t] if math.isfinite(limit[t]) else 0))
    b.over_import = pyo.Var(b.T, within=NonNeg, bounds=lambda _, t: (0, None if math.isfinite(limit[t]) else 0))
    finite = [t for t in steps if math.isfinite(limit[t])]
    b.import_limit = pyo.Constraint(
        finite, rule=lambda b, t: b.grid_import[t] - b.breach[t] - b.over_import[t] <= limit[t]
    )
    over_terms = [b.over_import[t] for t in steps]
    if math.isfinite(p.export_limit_kw):
        b.over_export = pyo.Var(b.T, within=NonNeg)
        b.export_limit = pyo.Constraint(b.T, rule=lambda b, t: b.grid_export[t] - b.over_export[t] <= p.export_limit_kw)
        over_terms += [b.over_export[t] for t in steps]

    supply: dict[int, list] = {t: [b.grid_import[t]] for t in steps}
    demand: dict[int, list] = {t: [b.grid_export[t]] for t in steps}
    own_export: dict[int, list] = {t: [] for t in steps}
    cost_terms: list = []
    adjust = np.zeros(T) if price_adjust is None else np.asarray(price_adjust, dtype=float)
    for t in steps:
        cost_terms.append(
            ((w.cost * p.import_price[t] + w.carbon * p.carbon_kg_per_kwh[t]) * dt + adjust[t] * dt) * b.grid_import[t]
        )
        cost_terms.append(-w.cost * p.export_price[t] * dt * b.grid_export[t])

    bat = site.battery
    if bat is not None:
        b.charge = pyo.Var(b.T, within=NonNeg, bounds=(0, bat.max_charge_kw))
        b.discharge = pyo.Var(b.T, within=NonNeg, bounds=(0, bat.max_discharge_kw))
        b.soc = pyo.Var(b.T, bounds=(bat.soc_min_kwh, bat.soc_max))
        target = max(bat.soc_min_kwh, p.soc_final_min_kwh)
        if target > bat.soc_min_kwh:
            b.soc_shortfall = pyo.Var(within=NonNeg, bounds=(0, target - bat.soc_min_kwh))
            b.soc_final = pyo.Constraint(expr=b.soc[T - 1] + b.soc_shortfall >= target)

        def soc_rule(b: pyo.Block, t: int) -> RelationalExpression:
            before = p.soc_initial_kwh if t == 0 else b.soc[t - 1]
            return (
                b.soc[t]
                == before + bat.charge_efficiency * dt * b.charge[t] - dt / bat.discharge_efficiency * b.discharge[t]
            )

        b.soc_balance = pyo.Constraint(b.T, rule=soc_rule)
        for t in steps:
            supply[t].append(b.discharge[t])
            demand[t].append(b.charge[t])
            own_export[t].append(b.discharge[t])
            cost_terms.append(w.cost * bat.degradation_cost_per_kwh * dt * (b.charge[t] + b.discharge[t]))
    curtail = None
    if site.pv is not None and site.pv.curtailable:
        b.curtail = pyo.Var(b.T, within=NonNeg, bounds=lambda _, t: (0, p.pv_kw[t]))
        curtail = b.curtail
    loads = {f.id: f for f in site.flexible_loads}
    b.flex = pyo.Var(list(loads), b.T, within=NonNeg, bounds=lambda _, i, t: (0, loads[i].max_kw))
    for i, f in loads.items():
        for t in steps:
            demand[t].append(b.flex[i, t])
            cost_terms.append(-w.cost * f.value_per_kwh * dt * b.flex[i, t])
    floors = [i for i, f in loads.items() if f.min_kw > 0]
    b.flex_shortfall = pyo.Var(floors, b.T, within=NonNeg, bounds=lambda _, i, t: (0, loads[i].min_kw))
    b.flex_floor = pyo.Constraint(
        floors, b.T, rule=lambda b, i, t: b.flex[i, t] + b.flex_shortfall[i, t] >= loads[i].min_kw
    )

    _add_sessions(b, p, demand)

    def balance_rule(b: pyo.Block, t: int) -> RelationalExpression:
        used_pv = p.pv_kw[t] - (curtail[t] if curtail is not None else 0)
        return p.load_kw[t] + sum(demand[t]) == used_pv + sum(supply[t])

    b.balance = pyo.Constraint(b.T, rule=balance_rule)

    def own_rule(b: pyo.Block, t: int) -> RelationalExpression:
        used_pv = p.pv_kw[t] - (curtail[t] if curtail is not None else 0)
        return b.grid_export[t] <= used_pv + sum(own_export[t])

    b.export_own = pyo.Constraint(b.T, rule=own_rule)
    _add_circuits(b, p)

    windows = [(i, dw) for i, dw in enumerate(p.demand_windows) if dw.rate_per_kw * w.cost > 0 and dw.mask.any()]
    b.window_peak = pyo.Var(
        [i for i, _ in windows], within=NonNeg, bounds=lambda _, i: (p.demand_windows[i].floor_kw, None)
    )
    b.window_rows = pyo.ConstraintList()
    for k, dw in windows:
        for t in np.flatnonzero(dw.mask).tolist():
            b.window_rows.add(b.grid_import[t] <= b.window_peak[k])
        cost_terms.append(w.cost * dw.rate_per_kw * b.window_peak[k])
    if w.peak > 0:
        b.peak = pyo.Var(within=NonNeg)
        b.peak_rows = pyo.Constraint(b.T, rule=lambda b, t: b.grid_import[t] <= b.peak)
        cost_terms.append(w.peak * b.peak)

    b.cost = pyo.Expression(expr=pyo.quicksum(cost_terms))
    b.over = pyo.Expression(expr=dt * pyo.quicksum(over_terms))
    b.breach_total = pyo.Expression(expr=dt * pyo.quicksum(b.breach[t] for t in steps))
    session_weight, load_weight, battery_weight = shortfall_weights(p)
    unserved = [session_weight[s] * b.shortfall[s] for s in b.sessions]
    unserved += [load_weight[i] * dt * b.flex_shortfall[i, t] for i in floors for t in steps]
    if hasattr(b, "soc_shortfall"):
        unserved.append(battery_weight * b.soc_shortfall)
    b.shortfall_total = pyo.Expression(expr=pyo.quicksum(unserved))


def _add_sessions(b: pyo.Block, p: SiteProblem, demand: dict[int, list]) -> None:
    dt = p.dt_h
    has_chargers = bool(p.site.chargers)
    pooled = [w for w in p.sessions if w.session.charger_id is None and has_chargers]
    pools = charger_pools(p) if pooled else {}
    binaries = len(pools) > 1 or any(
        max_concurrency(pooled, p.steps) > len(pool.charger_ids) for pool in pools.values()
    )
    keys: list[tuple[str, str, int]] = []  # (session, pool or "", step)
    upper: dict[tuple[str, str, int], float] = {}
    for w in p.sessions:
        options = (
            [("", w.max_kw)]
            if (w.session.charger_id is not None or not has_chargers)
            else [(k, min(w.max_kw, pool.max_kw)) for k, pool in pools.items()]
        )
        for key, ub in options:
            for t in range(w.first, w.stop):
                keys.append((w.session_id, key, t))
                upper[(w.session_id, key, t)] = ub
    by_id = {w.session_id: w for w in p.sessions}
    b.sessions = pyo.Set(initialize=[w.session_id for w in p.sessions], ordered=True)
    b.priority = pyo.Param(b.sessions, initialize={w.session_id: w.session.priority for w in p.sessions})
    b.shortfall = pyo.Var(b.sessions, within=NonNeg, bounds=lambda _, s: (0, by_id[s].need_kwh))
    b.ev_keys = pyo.Set(initialize=keys, dimen=3, ordered=True)
    b.ev = pyo.Var(b.ev_keys, within=NonNeg, bounds=lambda _, s, k, t: (0, upper[(s, k, t)]))
    per_session: dict[str, list] = defaultdict(list)
    for s, k, t in keys:
        per_session[s].append(b.ev[s, k, t])
        demand[t].append(b.ev[s, k, t])
    b.energy = pyo.ConstraintList()
    for w in p.sessions:
        delivered = dt * pyo.quicksum(per_session[w.session_id]) if per_session[w.session_id] else 0
        if w.need_kwh >= w.cap_kwh:
            b.energy.add(delivered + b.shortfall[w.session_id] == w.need_kwh)
        else:
            b.energy.add(delivered + b.shortfall[w.session_id] >= w.need_kwh)
            if per_session[w.session_id]:
                b.energy.add(delivered <= w.cap_kwh)
    choice_keys = [(w.session_id, k) for w in pooled for k in pools if w.stop > w.first] if binaries else []
    b.choice = pyo.Var(choice_keys, within=pyo.Binary)
    b.choice_rows = pyo.ConstraintList()
    for s, k in choice_keys:
        for t in range(by_id[s].first, by_id[s].stop):
            b.choice_rows.add(b.ev[s, k, t] <= upper[(s, k, t)] * b.choice[s, k])
    for s in {s for s, _ in choice_keys}:
        b.choice_rows.add(pyo.quicksum(b.choice[s, k] for k in pools) <= 1)
    if choice_keys:
        for k, pool in pools.items():
            for present in present_at_arrivals(pooled):
                b.choice_rows.add(pyo.quicksum(b.choice[w.session_id, k] for w in present) <= len(pool.charger_ids))
    b.pools = pools
    # sessions sharing a named charger share its rating
    b.charger_rows = pyo.ConstraintList()
    named: dict[str, list[str]] = defaultdict(list)
    for w in p.sessions:
        if w.session.charger_id:
            named[w.session.charger_id].append(w.session_id)
    for cid, sids in named.items():
        if len(sids) < 2:
            continue
        cap = p.site.charger(cid).max_kw  # type: ignore[union-attr]
        for t in range(p.steps):
            terms = [b.ev[s, "", t] for s in sids if (s, "", t) in upper]
            if sum(upper[(s, "", t)] for s in sids if (s, "", t) in upper) > cap + 1e-9:
                b.charger_rows.add(pyo.quicksum(terms) <= cap)


def _add_circuits(b: pyo.Block, p: SiteProblem) -> None:
    b.circuit_rows = pyo.ConstraintList()
    leaves = p.site.circuit_leaves()
    charger_of = {w.session_id: w.session.charger_id for w in p.sessions}
    loads = {f.id: f for f in p.site.flexible_loads}
    for circuit in p.site.circuits:
        members = leaves[circuit.id]
        for t in range(p.steps):
            terms, reach = [], 0.0
            for s, k, tt in b.ev_keys:
                if tt != t:
                    continue
                inside = charger_of.get(s) in members if k == "" else set(b.pools[k].charger_ids) <= members
                if inside:
                    terms.append(b.ev[s, k, t])
                    reach += b.ev[s, k, t].ub
            for m in members:
                if m in loads:
                    terms.append(b.flex[m, t])
                    reach += loads[m].max_kw
            if reach > circuit.max_kw + 1e-9:
                b.circuit_rows.add(pyo.quicksum(terms) <= circuit.max_kw)


_TERMS = {COST: "cost", OVER: "over", SHORTFALL: "shortfall_total", BREACH: "breach_total"}


class _PyomoStages:
    """The staged-model interface over a Pyomo model and the persistent HiGHS interface."""

    def __init__(self, model: pyo.ConcreteModel, problem: SiteProblem) -> None:
        self.m, self.site = model, model.site
        self.solver = Highs()
        self.solver.config.load_solutions = False
        self.solver.config.raise_exception_on_nonoptimal_result = False
        self.solver.config.rel_gap = problem.solver.mip_rel_gap
        # HiGHS sizes one thread pool per process, at the first run, from that run's `threads`;
        # a later run asking for another count fails ("Not Set"). The direct engine runs
        # with 1 (HighsModel's default): left at Pyomo's default (all cores), a Pyomo solve
        # first in a process made every later direct solve fail.
        self.solver.config.threads = 1
        self.m.caps = pyo.ConstraintList()
        self.slacks = [
            v
            for name in ("breach", "over_import", "over_export", "shortfall", "flex_shortfall", "soc_shortfall")
            if hasattr(self.site, name)
            for v in getattr(self.site, name).values()
        ]
        self.has_solution = False
        self._highs_total = 0.0

    def minimize(self, term: str) -> None:
        if hasattr(self.m, "objective"):
            self.m.del_component(self.m.objective)
        self.m.objective = pyo.Objective(expr=getattr(self.site, _TERMS[term]))

    def hold_slacks_at_zero(self, held: bool) -> None:
        for v in self.slacks:
            v.fix(0) if held else v.unfix()

    def cap(self, term: str, upper: float) -> None:
        """As `solve.DirectStages.cap`: the term, and its slacks weight by weight (`solve.by_weight`)."""
        expr = getattr(self.site, _TERMS[term])
        self._hold(term, expr, upper)
        if term != COST and self.has_solution:
            repn = generate_standard_repn(expr.expr, compute_values=True)
            coefs = np.array([float(c) for c in repn.linear_coefs])
            for idx in by_weight(coefs):
                slacks = [repn.linear_vars[i] for i in idx]
                self._hold(term, pyo.quicksum(slacks), cap_for(sum(float(v.value or 0.0) for v in slacks)))

    def _hold(self, term: str, expr: NumericValue, upper: float) -> None:
        """As `solve.DirectStages.cap`: a relaxation term whose stage needs none of its slacks
        holds them at zero (a cap row of 1e-8 leaves a class weighing 10⁻⁵ per kWh a
        thousandth of a kWh); any other cap is a row at `upper`.

        The row keeps the driver's room only, not the direct engine's extra room
        (`HighsModel.add_cap`): tried with it, HiGHS's MIP called some capped programs
        infeasible that it solves at the driver's room (and some the other way round:
        the room of a MIP cap is a lottery; this one is the one both engines were tested
        with before priorities). The engines' later stages may thus spend slightly
        different room (see test_pyomo_equivalence).
        """
        if term != COST and upper <= NOTHING:
            slacks = list(identify_variables(getattr(expr, "expr", expr), include_fixed=False))
            if all(abs(v.value or 0.0) <= IDLE_SLACK for v in slacks):
                for v in slacks:
                    v.fix(0)
                return
        self.m.caps.add(expr <= upper)

    def run(self, stage: str, time_limit_seconds: float, warm_start: bool) -> StageOutcome:
        outcome = self._solve(stage, time_limit_seconds)
        if len(self.site.choice) and polish_shortfall(outcome):
            # as the direct engine (see `solve.polish_shortfall`): the charger choice held
            unchosen = [v for v in self.site.choice.values() if (v.value or 0.0) < 0.5]
            kept = [(v, v.value) for v in self.m.component_data_objects(pyo.Var, descend_into=True)]
            for v in unchosen:
                v.fix(0)
            again = self._solve(stage, time_limit_seconds - outcome.seconds)
            for v in unchosen:
                v.unfix()
            better = again.status.has_solution and again.objective <= outcome.objective
            if again.status.has_solution and not better:
                for v, value in kept:
                    v.set_value(value, skip_validation=True)
            outcome = polished(outcome, again if better else None)
        return outcome

    def _solve(self, stage: str, time_limit_seconds: float) -> StageOutcome:
        outcome = self._solve_once(stage, time_limit_seconds)
        if outcome.status is SolverStatus.INFEASIBLE and self.has_solution:
            # An earlier stage's plan keeps every cap, so this program is feasible: HiGHS's
            # presolve has called such capped programs infeasible (as the direct engine's
            # HighsModel.run says); solved once more without it, as there.
            self.solver.config.solver_options["presolve"] = "off"
            try:
                again = self._solve_once(stage, time_limit_seconds - outcome.seconds)
            finally:
                self.solver.config.solver_options["presolve"] = "choose"
            outcome = dataclasses.replace(again, seconds=outcome.seconds + again.seconds)
        return outcome

    def _solve_once(self, stage: str, time_limit_seconds: float) -> StageOutcome:
        self.solver.config.time_limit = max(time_limit_seconds, 0.05)
        started = time.perf_counter()
        results = self.solver.solve(self.m)
        # HiGHS's own run time (cumulative over the persistent instance); the wall time
        # of solve() also holds Pyomo's translation of the model into HiGHS
        highs_total = getattr(results.timing_info, "highs_time", None)
        if highs_total is None:
            seconds = time.perf_counter() - started
        else:
            seconds, self._highs_total = float(highs_total) - self._highs_total, float(highs_total)
        feasible = results.solution_status in (SolutionStatus.feasible, SolutionStatus.optimal)
        status = {
            TerminationCondition.convergenceCriteriaSatisfied: SolverStatus.OPTIMAL,
            TerminationCondition.maxTimeLimit: SolverStatus.TIME_LIMIT if feasible else SolverStatus.ERROR,
            TerminationCondition.provenInfeasible: SolverStatus.INFEASIBLE,
            TerminationCondition.locallyInfeasible: SolverStatus.INFEASIBLE,
            TerminationCondition.infeasibleOrUnbounded: SolverStatus.INFEASIBLE,
            TerminationCondition.unbounded: SolverStatus.UNBOUNDED,
        }.get(results.termination_condition, SolverStatus.UNKNOWN)
        if not status.has_solution:
            return StageOutcome(stage, status, float("nan"), float("nan"), 0.0, seconds)
        results.solution_loader.load_vars()
        self.has_solution = True
        objective = float(results.incumbent_objective)
        bound = results.objective_bound
        bound = objective if bound is None or not math.isfinite(bound) else float(bound)
        gap = abs(objective - bound) / max(1e-10, abs(objective)) if objective != bound else 0.0
        return StageOutcome(stage, status, objective, bound, gap, seconds)

    def current_value(self, term: str) -> float:
        return float(pyo.value(getattr(self.site, _TERMS[term]))) if self.has_solution else float("inf")


def optimize_site_pyomo(problem: SiteProblem, *, price_adjust: np.ndarray | None = None) -> Plan:
    """The same plan as `optimize_site`, built with Pyomo; same relaxation order."""
    started = time.perf_counter()
    model = pyo.ConcreteModel()
    model.site = pyo.Block()
    add_site_block(model.site, problem, price_adjust)
    stages_model = _PyomoStages(model, problem)
    build_s = time.perf_counter() - started

    started = time.perf_counter()
    stages, relaxed = solve_lexicographic(stages_model, problem.solver.time_limit_seconds)
    solve_s = time.perf_counter() - started
    final = stages[-1]

    started = time.perf_counter()
    b = model.site
    if final.status.has_solution:
        schedule, assignment, relaxation = _extract(problem, b, relaxed)
    else:
        schedule = pd.DataFrame(schedule_columns(problem), index=problem.index) * np.nan
        assignment, relaxation = {}, Relaxation(stages=relaxed)
    extract_s = time.perf_counter() - started
    n_int = len(b.choice)
    return Plan(
        schedule,
        SolveResult(
            status=final.status,
            objective=final.objective,
            bound=final.bound,
            gap=final.gap,
            build_seconds=build_s,
            solve_seconds=solve_s,
            extract_seconds=extract_s,
            highs_seconds=sum(s.seconds for s in stages),
            num_cols=model.nvariables(),
            num_rows=model.nconstraints(),
            num_nonzeros=0,
            num_integer=n_int,
            engine="pyomo",
            solver_version=f"HiGHS {'.'.join(map(str, stages_model.solver.version()))}",
            time_limit_seconds=problem.solver.time_limit_seconds if n_int else None,
            mip_rel_gap=problem.solver.mip_rel_gap if n_int else None,
            stages=tuple(stages),
        ),
        relaxation,
        assignment,
    )


def _values(var: pyo.Var, steps: int) -> np.ndarray:
    return np.array([var[t].value or 0.0 for t in range(steps)], dtype=float)


def _extract(
    problem: SiteProblem, b: pyo.Block, relaxed: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[str, str], Relaxation]:
    T = problem.steps
    columns = schedule_columns(problem)
    clean = lambda a: np.maximum(np.where(np.abs(a) < 1e-9, 0.0, a), 0.0)  # noqa: E731 - solver noise
    columns[GRID_IMPORT] = clean(_values(b.grid_import, T))
    columns[GRID_EXPORT] = clean(_values(b.grid_export, T))
    if problem.site.battery is not None:
        columns[CHARGE], columns[DISCHARGE] = clean(_values(b.charge, T)), clean(_values(b.discharge, T))
        columns[SOC] = np.maximum(_values(b.soc, T), 0.0)
    if hasattr(b, "curtail"):
        columns[CURTAIL] = clean(_values(b.curtail, T))
    for f in problem.site.flexible_loads:
        columns[flex_column(f.id)] = clean(np.array([b.flex[f.id, t].value or 0.0 for t in range(T)]))
    energy: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s, k, t in b.ev_keys:
        value = max(b.ev[s, k, t].value or 0.0, 0.0)
        columns[ev_column(s)][t] += value if value > 1e-9 else 0.0
        if k:
            energy[s][k] += value
    pool_of: dict[str, str] = {}
    for w in problem.sessions:
        options = {k: b.choice[w.session_id, k].value for k in b.pools if (w.session_id, k) in b.choice}
        if options:
            best = max(options, key=lambda k: options[k] or 0.0)
            if (options[best] or 0.0) >= 0.5:
                pool_of[w.session_id] = best
        elif energy.get(w.session_id):
            pool_of[w.session_id] = max(energy[w.session_id], key=energy[w.session_id].__getitem__)
    by_session = {s: max(b.shortfall[s].value or 0.0, 0.0) for s in b.sessions}
    frame = pd.DataFrame(columns, index=problem.index)
    relaxation = relaxation_from(
        problem, columns[GRID_IMPORT], columns[GRID_EXPORT], by_session, relaxed, schedule=frame
    )
    return frame, colour_pools(problem, b.pools, pool_of), relaxation
