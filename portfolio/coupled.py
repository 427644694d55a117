"""The portfolio's coupled problem, solved as one HiGHS model (the monolithic reference).

The coupled problem is every site's own program (`formulation.add_site`, unchanged, one
block of columns per site in one `LinearProgram`) plus coupling rows over the sites'
grid flows, at each step t of the shared horizon:

* feeder ``f``:   Σ_{s in f} (import_s[t] − export_s[t]) − over_f[t]  <= cap_f[t] − reserved_f[t]
  (net import is what the transformer carries; a site's export relieves its neighbours).
  The sum runs over the members in the solve; ``reserved_f[t]`` (``reserved_kw``, default 0)
  is what the members not in it still hold: an absent node plans alone within the share it
  last acked, so that share is kept out of what the present sites may use
  (`reserved_for_absent`). It is not clipped: a reservation above the cap leaves a negative
  bound, which only the overflow slack meets (relaxed and reported, as any infeasible cap);
* ``CAP_AT`` event e, t in its window:    Σ_{s in e} import_s[t] − short_e[t] <= kw
* ``REDUCE_BY`` event e, t in its window: Σ_{s in e} import_s[t] − short_e[t]
  <= Σ_{s in e} baseline_s[t] − kw, with baseline_s the import of site s's own optimum
  (`optimize_site`, also what `alone_cost` is measured on);
* coincident peak, when its price p (``coincident_peak_price_per_kw``, currency per kW per
  horizon) is positive: one column P >= 0 and, at every step,
  Σ_{all s} (import_s[t] − export_s[t]) − P <= 0, with p·P in the "cost" term. P is then the
  portfolio's peak net import max(0, max_t Σ_s net_s[t]) — the epigraph of a max, as a
  site's own demand charge — and the charge is what a contract on the aggregate (a
  retailer's coincident-peak or capacity tariff) bills once per horizon. It is the
  portfolio's money, not any one site's: it enters the "cost" term unweighted (a site's own
  `Objective.cost` weight does not scale it) and is not split among the sites' costs.

A step belongs to an event's window when the step *starts* in [start, end). Events are
on import alone, as `portfolio.model` defines them; cancelled events are ignored.

Relaxation: an infeasible portfolio is relaxed and reported, never raised. The slacks
join the sites' own in `lexicographic.solve_lexicographic`, with the order extended:

0. ``over``      site limits beyond margin *and* feeder overflow ``over_f``: a feeder is
                 hardware like a site's connection, so it ranks with it;
1. ``shortfall`` EV energy, 2. ``breach`` within the sites' margins (the sites' own);
3. ``flex``      flex-event shortfall ``short_e``: a commercial promise gives way to
                 the cars and the sites' limits, never to cost;
4. ``cost``      Σ of the sites' weighted objectives.

Every slack is priced per kWh (kW × step hours), like the sites' own. As at a site, the
first attempt holds every slack at zero and is the answer whenever the portfolio can be
served; per-site schedules are extracted exactly as a site's own `Plan`. The peak column
is no slack: it is free in every relaxation stage and priced in the "cost" stage only.

Reported objectives include the peak charge: the plan's `objective` is Σ coupled_cost plus
p × the peak read off the extracted schedules (`peak_kw`), `alone_objective` is Σ alone_cost
plus p × the peak of the sites' plans alone (`alone_peak_kw`), and the solver's "cost" term,
bound and gap carry p·P. With p = 0 (the default) no column or row is added: the problem is
the one without the charge, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import pandas as pd

from portfolio.model import Feeder, FlexEvent, FlexKind, FlexState
from sitenode.errors import InvalidInput
from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.extract import assign_chargers, schedule_frame
from sitenode.optimizer.formulation import SiteColumns, add_site
from sitenode.optimizer.highs import VERSION, HighsModel
from sitenode.optimizer.lexicographic import (
    BREACH,
    COST,
    OVER,
    RELAXATION_ORDER,
    SHORTFALL,
    solve_lexicographic,
)
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.result import SolveResult, SolverStatus
from sitenode.optimizer.solve import DirectStages, Plan, Relaxation, optimize_site, relaxation_from
from sitenode.schedule import GRID_EXPORT, GRID_IMPORT

FLEX = "flex"
PORTFOLIO_ORDER = (*RELAXATION_ORDER, FLEX)
_TERMS = (COST, *PORTFOLIO_ORDER)
_RELAXED = 1e-6  # a site's slack term above this is a relaxation of that site (as solve_lexicographic)


def _tol(reference: float) -> float:
    # checks read extracted schedules: solver tolerance (1e-7) plus extraction's cleaning
    return 1e-6 * max(1.0, abs(reference))


@dataclass(frozen=True, eq=False)
class SitePlan:
    """One site's part of the portfolio plan."""

    site_id: str
    plan: Plan
    alone_cost: float  # compute_metrics total_cost of the site optimizing alone
    coupled_cost: float  # compute_metrics total_cost of its part of the coupled plan
    # per step, the import limit the node keeps when it falls back to local optimization
    import_share_kw: np.ndarray
    # the schedule as the solver's `encode` (a ScheduleEncoder) made it where the plan was
    # made; None when the solver has none or solved in this process
    encoded: bytes | None = None


# (columns, values steps x columns, charger assignment) -> bytes: how a site's schedule goes
# out, given to a solver whose workers make the plans (the portfolio's wire format stays its own)
ScheduleEncoder = Callable[[list[str], np.ndarray, dict[str, str]], bytes]


@dataclass(frozen=True)
class CapCheck:
    feeder_id: str
    max_excess_kw: float  # worst Σ net import − (cap − reserved) over the horizon, 0 when it holds
    holds: bool
    binding_steps: int  # steps at the cap less the reservation (within tolerance)
    # the most kept out of the cap at one step for the members absent from the solve (the
    # shares their nodes hold); the present sites' net import is checked against cap − reserved
    reserved_kw: float = 0.0


@dataclass(frozen=True)
class TargetCheck:
    event_id: str
    kind: str
    worst_shortfall_kw: float  # aggregate import above the target at the worst step of the window
    holds: bool


@dataclass(frozen=True, eq=False)
class PortfolioPlan:
    index: pd.DatetimeIndex
    sites: dict[str, SitePlan]
    objective: float  # Σ coupled_cost + peak_charge
    alone_objective: float  # Σ alone_cost + the peak charge of the sites' plans alone
    coupling_cost: float  # objective − alone_objective
    feeders: tuple[CapCheck, ...]
    events: tuple[TargetCheck, ...]
    relaxed: tuple[str, ...]  # relaxation stages that were needed, in PORTFOLIO_ORDER
    status: str
    seconds: float
    num_cols: int
    num_rows: int
    method: str = "monolithic"
    bound: float = math.nan  # bound on the coupled "cost" term (Σ sites' weighted objectives + peak charge)
    gap: float = 0.0
    iterations: int = 1
    peak_kw: float = 0.0  # max(0, max_t Σ_s net import) of the plan's schedules
    peak_charge: float = 0.0  # coincident_peak_price_per_kw × peak_kw
    alone_peak_kw: float = 0.0  # the same peak of the sites' plans alone

    @property
    def all_hold(self) -> bool:
        return all(c.holds for c in self.feeders) and all(e.holds for e in self.events)


class CoupledSolver(Protocol):
    """What the portfolio service calls; the monolithic solve and a decomposition both offer it.

    `MonolithicSolver` and `DecompositionSolver` also take ``coincident_peak_price_per_kw``
    (keyword, default 0: no charge) and ``reserved_kw`` (feeder id -> kW per step of the
    horizon kept out of that feeder's cap for its absent members, `reserved_for_absent`); see
    the module doc.
    """

    def solve(
        self,
        problems: Mapping[str, SiteProblem],
        feeders: Sequence[Feeder],
        events: Sequence[FlexEvent],
        *,
        coincident_peak_price_per_kw: float = 0.0,
        reserved_kw: Mapping[str, np.ndarray] | None = None,
    ) -> PortfolioPlan: ...


@dataclass(frozen=True)
class Coupling:
    """The coupling's inputs resolved to steps: which sites, and the bound per step."""

    name: str
    site_ids: tuple[str, ...]
    steps: np.ndarray  # steps the row applies to
    bound: np.ndarray  # one per entry of `steps`
    net: bool  # feeders bound import − export; events bound import alone
    reserved: np.ndarray | None = None  # feeders: kept out of the cap for absent members (bound = cap − reserved)


class MonolithicSolver:
    """One HiGHS model of all sites plus the coupling rows (see the module doc)."""

    def __init__(self, *, time_limit_seconds: float = 30.0, threads: int = 1) -> None:
        # the limit bounds the coupled solve; each site's solve alone keeps its own `solver` limits
        self.time_limit_seconds = time_limit_seconds
        self.threads = threads

    def solve(
        self,
        problems: Mapping[str, SiteProblem],
        feeders: Sequence[Feeder],
        events: Sequence[FlexEvent],
        *,
        coincident_peak_price_per_kw: float = 0.0,
        reserved_kw: Mapping[str, np.ndarray] | None = None,
    ) -> PortfolioPlan:
        started = time.perf_counter()
        index = common_index(problems)
        price = check_peak_price(coincident_peak_price_per_kw)
        reserved = reserved_kw or {}
        live = [e for e in events if e.state is not FlexState.CANCELLED]
        if not problems:
            return PortfolioPlan(
                index=index,
                sites={},
                objective=0.0,
                alone_objective=0.0,
                coupling_cost=0.0,
                feeders=tuple(
                    CapCheck(f.feeder_id, 0.0, True, 0, float(np.max(reserved.get(f.feeder_id, 0.0), initial=0.0)))
                    for f in feeders
                ),
                events=tuple(TargetCheck(e.event_id, str(e.kind), 0.0, True) for e in live),
                relaxed=(),
                status=str(SolverStatus.OPTIMAL),
                seconds=time.perf_counter() - started,
                num_cols=0,
                num_rows=0,
                bound=0.0,
            )
        # each site alone: its cost without the portfolio, and the REDUCE_BY baselines
        alone = {sid: optimize_site(p, threads=self.threads) for sid, p in problems.items()}
        baseline = {sid: plan.schedule[GRID_IMPORT].to_numpy() for sid, plan in alone.items()}
        feeder_rows = [feeder_coupling(f, problems, len(index), reserved.get(f.feeder_id)) for f in feeders]
        event_rows = [event_coupling(e, problems, index, baseline) for e in live]

        built = time.perf_counter()
        lp = LinearProgram()
        cols: dict[str, SiteColumns] = {}
        span: dict[str, tuple[int, int]] = {}
        for sid, problem in problems.items():
            first = lp.num_cols
            cols[sid] = add_site(lp, problem)
            span[sid] = (first, lp.num_cols)
        dt = next(iter(problems.values())).dt_h
        coupling_slacks = [_add_coupling(lp, c, cols, dt, OVER) for c in feeder_rows]
        coupling_slacks += [_add_coupling(lp, c, cols, dt, FLEX) for c in event_rows]
        if price > 0:  # at 0 the problem stays exactly the one without the charge
            _add_peak(lp, cols, len(index), price)
        matrix = lp.matrix()
        gap = min(p.solver.mip_rel_gap for p in problems.values())
        model = HighsModel(matrix, time_limit_seconds=self.time_limit_seconds, mip_rel_gap=gap, threads=self.threads)
        costs = {name: lp.cost(name) for name in _TERMS}
        slacks = np.concatenate([c.slacks for c in cols.values()] + coupling_slacks)
        build_s = time.perf_counter() - built

        solving = time.perf_counter()
        stages, relaxed = solve_lexicographic(
            DirectStages(model, costs, slacks, np.flatnonzero(matrix.integrality)),
            self.time_limit_seconds,
            PORTFOLIO_ORDER,
        )
        solve_s = time.perf_counter() - solving
        final = stages[-1]
        x = model.values() if final.status.has_solution else None

        extracting = time.perf_counter()
        result = SolveResult(
            status=final.status,
            objective=final.objective,
            bound=final.bound,
            gap=final.gap,
            build_seconds=build_s,
            solve_seconds=solve_s,
            extract_seconds=0.0,
            highs_seconds=sum(s.seconds for s in stages),
            num_cols=matrix.num_cols,
            num_rows=matrix.num_rows,
            num_nonzeros=matrix.num_nonzeros,
            num_integer=int(matrix.integrality.sum()),
            engine="highs-monolithic",
            solver_version=VERSION,
            time_limit_seconds=self.time_limit_seconds if model.has_integers else None,
            mip_rel_gap=gap if model.has_integers else None,
            stages=tuple(stages),
        )
        parts = {sid: _site_plan(problems[sid], cols[sid], span[sid], x, costs, relaxed, result) for sid in problems}
        frames = {sid: plan.schedule for sid, plan in parts.items()}
        cap_checks = tuple(check_cap(f.feeder_id, c, frames) for f, c in zip(feeders, feeder_rows, strict=True))
        target_checks = tuple(check_target(e, c, frames) for e, c in zip(live, event_rows, strict=True))
        shares = import_shares(problems, feeder_rows, frames)
        # one SolveResult describes the shared solve in every site's Plan
        result = dataclasses.replace(result, extract_seconds=time.perf_counter() - extracting)
        sites = {
            sid: SitePlan(
                site_id=sid,
                plan=dataclasses.replace(parts[sid], result=result),
                alone_cost=compute_metrics(problems[sid], alone[sid].schedule).total_cost,
                coupled_cost=compute_metrics(problems[sid], frames[sid]).total_cost,
                import_share_kw=shares[sid],
            )
            for sid in problems
        }
        peak, alone_peak = portfolio_peak(frames), portfolio_peak({sid: plan.schedule for sid, plan in alone.items()})
        objective = float(sum(s.coupled_cost for s in sites.values())) + price * peak
        alone_objective = float(sum(s.alone_cost for s in sites.values())) + price * alone_peak
        return PortfolioPlan(
            index=index,
            sites=sites,
            objective=objective,
            alone_objective=alone_objective,
            coupling_cost=objective - alone_objective,
            feeders=cap_checks,
            events=target_checks,
            relaxed=relaxed,
            status=str(final.status),
            seconds=time.perf_counter() - started,
            num_cols=matrix.num_cols,
            num_rows=matrix.num_rows,
            bound=final.bound,
            gap=final.gap,
            peak_kw=peak,
            peak_charge=price * peak,
            alone_peak_kw=alone_peak,
        )


def check_peak_price(value: float) -> float:
    """The coincident-peak price as a solve takes it: finite and >= 0, else InvalidInput naming it."""
    price = float(value)
    if not math.isfinite(price) or price < 0:
        raise InvalidInput.one("coincident_peak_price_per_kw", f"must be a finite number >= 0, got {value}")
    return price


def portfolio_peak(frames: Mapping[str, pd.DataFrame]) -> float:
    """max(0, max_t Σ_s (import − export)) of these schedules: the peak the charge bills."""
    if not frames:
        return 0.0
    net = sum(f[GRID_IMPORT].to_numpy() - f[GRID_EXPORT].to_numpy() for f in frames.values())
    return float(np.max(net, initial=0.0))


def common_index(problems: Mapping[str, SiteProblem]) -> pd.DatetimeIndex:
    """The shared horizon; coupling rows add up flows of the same step, so it must be one."""
    if not problems:
        return pd.DatetimeIndex([], tz="UTC", name="timestamp")
    (first_id, first), *rest = problems.items()
    for sid, p in rest:
        if p.step_minutes != first.step_minutes or not p.index.equals(first.index):
            raise InvalidInput.one(
                "problems",
                f"site {sid!r} has horizon {_horizon(p)}, site {first_id!r} has {_horizon(first)}: "
                "every site of a portfolio solve must share start, step and count",
            )
    return first.index


def _horizon(p: SiteProblem) -> str:
    start = p.index[0].isoformat() if p.steps else "-"
    return f"(start {start}, step {p.step_minutes} min, {p.steps} steps)"


def feeder_coupling(
    feeder: Feeder, problems: Mapping[str, SiteProblem], steps: int, reserved_kw: np.ndarray | None = None
) -> Coupling:
    """The feeder's row over the members in the solve, bound by its cap less `reserved_kw` (kW
    per step, what its absent members hold: `reserved_for_absent`), never clipped at zero."""
    # a site the feeder lists but the solve does not hold is not connected now: it is left out
    # of the row, and the share its node holds is what `reserved_kw` keeps out of the cap
    present = tuple(s for s in feeder.site_ids if s in problems)
    caps = np.array([feeder.cap_at(t) for t in range(steps)], dtype=float)
    if reserved_kw is None:
        return Coupling(feeder.feeder_id, present, np.arange(steps), caps, net=True)
    reserved = np.asarray(reserved_kw, dtype=float)
    if reserved.shape != (steps,) or not np.isfinite(reserved).all() or (reserved < 0).any():
        raise InvalidInput.one(
            "reserved_kw", f"feeder {feeder.feeder_id!r}: needs {steps} finite values >= 0, got shape {reserved.shape}"
        )
    return Coupling(feeder.feeder_id, present, np.arange(steps), caps - reserved, net=True, reserved=reserved)


@dataclass(frozen=True)
class HeldShare:
    """An import limit a node holds (the share of the schedule it last acked): per step from
    `start`, the last value holding beyond the end, as the node's own `ImportLimit` reads it."""

    start: datetime
    step_minutes: int
    values_kw: tuple[float, ...]

    def over(self, index: pd.DatetimeIndex) -> np.ndarray:
        if not self.values_kw or not len(index):
            return np.zeros(len(index))
        steps = ((index - pd.Timestamp(self.start)) / pd.Timedelta(minutes=self.step_minutes)).to_numpy()
        at = np.clip(np.floor(steps).astype(int), 0, len(self.values_kw) - 1)
        return np.asarray(self.values_kw, dtype=float)[at]


def reserved_for_absent(
    feeders: Sequence[Feeder], present: Collection[str], held: Mapping[str, HeldShare], index: pd.DatetimeIndex
) -> dict[str, np.ndarray]:
    """Per feeder, kW per step of `index` to keep out of its cap for its members not in the solve.

    A member absent from the solve (its link is down) plans alone within the share it holds,
    so Σ over the feeder's absent members of their share at each step is reserved. A member
    with no entry in `held` (it never acked a schedule: its node holds no share from the
    portfolio and plans within its own site's limit) is reserved nothing, and so is a step at
    which its share is no limit (not finite). Feeders with nothing reserved are left out.
    """
    out: dict[str, np.ndarray] = {}
    for feeder in feeders:
        absent = [s for s in feeder.site_ids if s not in present and s in held]
        if not absent:
            continue
        total = np.zeros(len(index))
        for site_id in absent:
            share = held[site_id].over(index)
            total += np.where(np.isfinite(share), np.clip(share, 0.0, None), 0.0)
        if total.any():
            out[feeder.feeder_id] = total
    return out


def event_coupling(
    event: FlexEvent, problems: Mapping[str, SiteProblem], index: pd.DatetimeIndex, baseline: dict[str, np.ndarray]
) -> Coupling:
    present = tuple(s for s in (event.site_ids or problems) if s in problems)
    window = np.flatnonzero([event.covers(t.to_pydatetime()) for t in index])
    if event.kind is FlexKind.CAP_AT:
        bound = np.full(len(window), event.kw)
    else:
        base = sum((baseline[s][window] for s in present), np.zeros(len(window)))
        bound = base - event.kw  # may be negative: then only the "flex" slack can meet it
    return Coupling(event.event_id, present, window, bound, net=False)


def _add_coupling(lp: LinearProgram, c: Coupling, cols: dict[str, SiteColumns], dt: float, term: str) -> np.ndarray:
    """One row per step of `c` with its own non-negative slack priced in `term`; the slack columns."""
    if not c.site_ids or not len(c.steps):
        return np.empty(0, dtype=np.int64)
    n = len(c.steps)
    local = np.arange(n)
    slack = lp.add_cols(n)
    terms = [(local, slack, -1.0)]
    for sid in c.site_ids:
        terms.append((local, cols[sid].grid_import[c.steps], 1.0))
        if c.net:
            terms.append((local, cols[sid].grid_export[c.steps], -1.0))
    lp.add_rows(n, terms, upper=c.bound)
    lp.add_cost(term, slack, dt)
    return slack


def _add_peak(lp: LinearProgram, cols: dict[str, SiteColumns], steps: int, price: float) -> None:
    """The coincident-peak epigraph: P >= Σ_s net_s[t] at every step, P >= 0, p·P in "cost"."""
    peak = lp.add_cols(1)
    local = np.arange(steps)
    terms: list[tuple[np.ndarray, np.ndarray, float | np.ndarray]] = [(local, np.repeat(peak, steps), -1.0)]
    for c in cols.values():
        terms += [(local, c.grid_import, 1.0), (local, c.grid_export, -1.0)]
    lp.add_rows(steps, terms, upper=0.0)
    lp.add_cost(COST, peak, price)


def _site_plan(
    problem: SiteProblem,
    cols: SiteColumns,
    span: tuple[int, int],
    x: np.ndarray | None,
    costs: dict[str, np.ndarray],
    relaxed: tuple[str, ...],
    result: SolveResult,
) -> Plan:
    """The site's part, shaped exactly like the Plan `optimize_site` returns."""
    if x is None:
        return Plan(schedule_frame(problem, cols, None), result, Relaxation(stages=relaxed), {})
    lo, hi = span
    # the site's own stages: a portfolio-wide term counts for a site only where its own slacks carry it
    own = tuple(t for t in relaxed if t in (OVER, SHORTFALL, BREACH) and float(costs[t][lo:hi] @ x[lo:hi]) > _RELAXED)
    by_session = {sid: float(max(x[c], 0.0)) for sid, c in cols.shortfall.items()}
    schedule = schedule_frame(problem, cols, x)
    relaxation = relaxation_from(problem, x[cols.grid_import], x[cols.grid_export], by_session, own, schedule=schedule)
    return Plan(schedule, result, relaxation, assign_chargers(problem, cols, x))


def _aggregate(c: Coupling, frames: dict[str, pd.DataFrame]) -> np.ndarray:
    total = np.zeros(len(c.steps))
    for sid in c.site_ids:
        frame = frames[sid]
        total += frame[GRID_IMPORT].to_numpy()[c.steps]
        if c.net:
            total -= frame[GRID_EXPORT].to_numpy()[c.steps]
    return total


def check_cap(feeder_id: str, c: Coupling, frames: dict[str, pd.DataFrame]) -> CapCheck:
    """The present sites' net import against the cap less what is reserved for the absent ones."""
    reserved = float(np.max(c.reserved, initial=0.0)) if c.reserved is not None else 0.0
    if not c.site_ids:
        return CapCheck(feeder_id, 0.0, True, 0, reserved)  # nothing connected carries nothing
    net = _aggregate(c, frames)
    excess = float(np.max(net - c.bound, initial=0.0)) if not np.isnan(net).any() else math.nan
    tol = np.array([_tol(b) for b in c.bound])
    binding = int(np.count_nonzero(net >= c.bound - tol))
    return CapCheck(feeder_id, excess, bool(np.all(net <= c.bound + tol)), binding, reserved)


def check_target(event: FlexEvent, c: Coupling, frames: dict[str, pd.DataFrame]) -> TargetCheck:
    if not c.site_ids or not len(c.steps):
        return TargetCheck(event.event_id, str(event.kind), 0.0, True)
    imports = _aggregate(c, frames)
    worst = float(np.max(imports - c.bound, initial=0.0)) if not np.isnan(imports).any() else math.nan
    holds = bool(np.all(imports <= c.bound + np.array([_tol(b) for b in c.bound])))
    return TargetCheck(event.event_id, str(event.kind), worst, holds)


def import_shares(
    problems: Mapping[str, SiteProblem], feeders: list[Coupling], frames: dict[str, pd.DataFrame]
) -> dict[str, np.ndarray]:
    """The import limit each node keeps when it plans alone, per step.

    Under a feeder: its planned net import (never below zero: a node cannot count on its
    own export when it replans) plus an equal share of the feeder's headroom, so the shares
    of a feeder's sites add up to its cap. Where the plan has importers lean on a
    neighbour's export (their net imports add up to more than the cap), a node planning
    alone cannot count on that export either: the importers' shares are scaled down to add
    up to the cap, since the cap is physical and the export may stop when its node replans.
    Under several feeders, the tightest; never above the site's own import limit.
    """
    shares = {sid: np.asarray(p.import_limit_kw, dtype=float).copy() for sid, p in problems.items()}
    for c in feeders:
        if not c.site_ids:
            continue
        base = {
            sid: np.clip(frames[sid][GRID_IMPORT].to_numpy() - frames[sid][GRID_EXPORT].to_numpy(), 0.0, None)
            for sid in c.site_ids
        }
        total = sum(base.values())
        bound = np.clip(c.bound, 0.0, None)
        headroom = np.clip(bound - total, 0.0, None) / len(c.site_ids)
        scale = np.where(total > bound, bound / np.maximum(total, 1e-12), 1.0)
        for sid in c.site_ids:
            shares[sid] = np.minimum(shares[sid], base[sid] * scale + headroom)
    return shares
