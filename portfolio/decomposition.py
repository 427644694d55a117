"""The coupled problem of `portfolio.coupled`, decomposed: Dantzig–Wolfe over sites on Ray.

Same problem, same interface (`CoupledSolver`), same `PortfolioPlan`; only the solver
behind it differs. The portfolio's program is block-angular: each site's own program
X_s (`formulation.add_site`, untouched) and a few coupling rows over the sites' grid
flows, one per step of every feeder (Σ import − export <= cap) and of every flex event's
window (Σ import <= target). Nothing else joins two sites.

Why Dantzig–Wolfe (and not ADMM)
--------------------------------
* **Exact and finite for this structure.** Every X_s of an LP site is a polytope, so the
  master over convex combinations of site plans is the coupled LP itself (Minkowski–Weyl);
  column generation with exact pricing ends after finitely many columns at its optimum,
  with or without the dual smoothing used here (Wentges 1997; Pessoa, Sadykov, Uchoa and
  Vanderbeck 2018 prove finite convergence of smoothing with the mis-pricing rule below).
  ADMM converges only asymptotically and its iterates break the coupling rows until the
  end, so a feeder cap would need a projection step with no bound behind it.
* **A certified bound at every iteration.** For any row prices μ >= 0 the Lagrangian
  L(μ) = Σ_s min_{x∈X_s} (c_s + μA_s)·x − μ·b is a lower bound on the coupled optimum
  (weak duality); the site optima the pricing step computes anyway give it for free. The
  upper bound is a plan that keeps every coupling row, so gap = (UB − LB)/|UB| is proven,
  not estimated, and the stopping rule is that gap <= `gap`.
* **Only prices change between iterations.** Pricing changes the cost of a site's 2T
  import/export columns and nothing else, so every site keeps its loaded HiGHS model and
  re-solves from its last basis (primal simplex: a cost change leaves the basis primal
  feasible). A site whose prices did not change (all its rows slack) is not re-solved.
* **Feasible schedules by construction.** The master holds the coupling rows exactly, with
  a margin of a few micro-kW per row. Its solution gives every site a budget per coupled
  row (Σ_k λ_k a_k, which add up to at most the cap); the final step re-solves each site
  within its budget (a convex combination of its plans is feasible there, so the re-solve
  is feasible and at most as costly) — or keeps its own optimum when that fits the budget.
  Every coupling row is then checked on the extracted schedules (1e-6 kW); a plan that
  failed the check would never be returned (the monolithic solve would be).

Blocks: sites joined by coupling rows, directly or through one another, form a block with a
master of its own (a feeder and its sites, unless an event spans feeders). Blocks share
nothing, so the bound is a sum of per-block bounds, each the best of its own, and a block
whose gap is closed stops pricing while the others go on.

Stabilization: pricing runs at Wentges-smoothed prices, α·μ_center + (1 − α)·μ_master with
μ_center the prices of the block's best bound, turned toward that point's subgradient, with α
adjusted each round (automatic directional smoothing, Pessoa et al. 2018), and clipped to a
kW-step's energy value. A round that yields no column of negative reduced cost at μ_master is
a mis-pricing: the next round prices at μ_master itself, which yields a column or proves the
master optimal (finite convergence, as above). The master carries an artificial slack per row
priced far above any marginal value a kW can have (a Phase-1 in one: the master is always
feasible and its prices bounded; any μ >= 0 still gives a valid bound), and is seeded with
plans that keep the rows together: each site re-planned within a proportional share of each
row, so in the common case it keeps every row from its first solve.

Stopping rule: gap = (UB − LB)/|UB| <= `gap`, UB the master's objective with its artificials
at zero, LB the sum of the blocks' best bounds (plus the optima of sites in no coupling row).
After the final step UB is the "cost" term of the very schedules returned, with the peak charge
they make (each re-solve is at most as costly as its share of the master's plan). At the
iteration or time limit the plan is returned with its gap and status ``time_limit``, as a MIP
at its time limit would be.

Relaxation (the lexicographic order of `coupled`): whenever the portfolio can be served the
order's first attempt — every slack at zero, minimum cost — is the whole answer, and that is
the problem decomposed here. When it cannot (a coupled site that cannot keep its own limits,
or coupling rows no combination of site plans keeps: artificial slack left at the master's
optimum under a raised price), the solver hands the portfolio to `MonolithicSolver` and
reports method ``"monolithic-fallback"``. Pricing the slacks with big penalties instead would
trade a feeder overflow against EV energy at some exchange rate, which the order forbids,
and relaxed portfolios are the rare, alarming case where exactness matters more than speed.
A site that is in no coupling row and needs its own relaxation keeps its own lexicographic
optimum (which is what the portfolio order gives it: nothing couples it to the others).
With a peak price every site is coupled; one that is in no cap or target row still keeps
its own relaxation if it is an LP: the portfolio's stages then cap the sum of independent
per-site minima, so they hold each such site at its own stage optima, and its model (whose
pricing re-solves keep the caps its stages added) is exactly that set. A MIP site's pricing
LP has no such caps, so a peak-coupled MIP that needs relaxation sends the solve to the
monolithic solver, as a feeder site does.

Charger-choice MIPs (depots choosing among charger pools): a MIP site prices on its LP
relaxation, a valid lower bound of its MIP at any prices, so the bound stays certified (and
includes the integrality gap). At the end it solves its MIP within its budget. When a budget
(from the relaxation) admits no integer plan, the site settles on the integer plan closest to
it (over-budget kW priced), its charger choice is held, and its block runs more rounds: with
the choice held the site's program is a polytope again, so its plans mix exactly and the LP
sites make room. Only if no mix then keeps the rows does the monolithic solve take over.

Coincident peak
---------------
With a price p > 0 (``coincident_peak_price_per_kw``, `coupled`'s epigraph P >= Σ_s net_s[t])
the master holds one more column, P >= 0 at cost p, and one row per step,
Σ_s Σ_k λ_sk net_sk[t] − P <= 0, with neither margin nor artificial (P keeps them feasible;
an artificial would only undercut p). Their prices π_t >= 0 go to the sites exactly as a
feeder row's do: site s pays π_t on its net import at t in its pricing re-solve. Every site
is in these rows, so with a peak price the linked sites form one block, all of them.

*The bound stays certified.* Keeping P in the master's part, the Lagrangian is

    L(μ, π) = Σ_s min_{x∈X_s} (c_s + μA_s + πN_s)·x − μ·b + min_{P>=0} (p − Σ_t π_t)·P,

a lower bound on the coupled optimum for all μ, π >= 0 (weak duality, as before); its last
term is 0 when Σ_t π_t <= p and −∞ otherwise. The master's own prices satisfy it: P's reduced
cost p − Σ_t π_t is >= 0 at the master's optimum (LP dual feasibility of a column at its lower
bound, or 0 when basic). Wentges-smoothed prices are convex combinations of such points, but
the directional step can leave the set, so every pricing point has its peak prices scaled to
sum to at most p first (`_Block.dual_feasible`; the same scaling absorbs the master's dual
tolerance). Any point of the set gives a valid bound, and a point outside, should one ever
reach `_Block.priced`, counts as −∞, never as a bound. The mis-pricing rounds still price at
the master's own prices, so finite convergence is kept. Separation prices are clipped per
row at p on peak rows and at a kW-step's energy value plus p on cap rows (relieving a cap
by a kW can lower the peak by a kW), and the artificials' penalty grows by 100 p likewise.

*The plan.* The master gives each site a share of the peak rows as of any other row
(Σ_k λ_k net_k / Σ_k λ_k); the final re-solve within every share keeps Σ_s net_s[t] <= P at
each step, so the realized peak is at most the master's P, every feeder cap holds exactly as
before, and UB — the sites' "cost" terms plus p × the peak read off the pushed schedules —
is at most the master's objective. The seed plans (`_Run._share`) take no share of the peak
rows: they are priced, not capped.

Ray: sites are spread over a few actors (`SiteBatch`, one per CPU of the cluster by default),
each holding the models of many sites for the whole solve — far cheaper than one actor per
site. Prices go out as one numpy vector per round; proposals come back as net flows per step
and costs; full schedules only at the end. Actors persist between solves of one solver; the
models are rebuilt for each solve (each solve has new problems). A worker lost mid-solve
sends that solve to the monolithic solver and new workers are started for the next one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import resource
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from portfolio.coupled import (
    CapCheck,
    Coupling,
    MonolithicSolver,
    PortfolioPlan,
    ScheduleEncoder,
    SitePlan,
    TargetCheck,
    check_cap,
    check_peak_price,
    check_target,
    common_index,
    event_coupling,
    feeder_coupling,
    import_shares,
    portfolio_peak,
)
from portfolio.model import Feeder, FlexEvent, FlexState
from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.extract import assign_chargers, schedule_frame
from sitenode.optimizer.formulation import SiteColumns, add_site
from sitenode.optimizer.highs import VERSION, HighsModel
from sitenode.optimizer.lexicographic import BREACH, COST, OVER, SHORTFALL, solve_lexicographic
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.result import SolveResult, SolverStatus, StageOutcome
from sitenode.optimizer.solve import DirectStages, Plan, relaxation_from
from sitenode.schedule import GRID_EXPORT, GRID_IMPORT

log = logging.getLogger(__name__)

FALLBACK = "monolithic-fallback"
METHOD = "decomposition"
PEAK = "coincident-peak"  # the peak rows' `Coupling`: priced, never checked as a cap
CHECK_KW = 1e-6  # every coupling row holds on the extracted schedules within this
# The master keeps each row this far inside its bound (per kW of solver tolerance each
# site's re-solve may add): the margin is a few micro-kW, the guarantee is exact.
_MARGIN_KW, _MARGIN_PER_SITE_KW = 1e-6, 5e-7
_BUDGET_ROOM_KW = 1e-7  # within the master's per-site margin
_STALL = 1e-9  # reduced cost (relative) below which a column improves the master


# ---- what a worker holds and returns -------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """Where one site enters one coupling: master rows `rows` at steps `steps`."""

    rows: np.ndarray
    steps: np.ndarray
    net: bool  # a feeder row (import − export) or an event row (import)


@dataclass(eq=False)
class _Site:
    problem: SiteProblem
    cols: SiteColumns
    model: HighsModel  # the site's own program (with its binaries): alone and final solves
    pricing: HighsModel  # the LP pricing re-solves: `model` itself, or its relaxation for a MIP
    cost: np.ndarray  # the "cost" term
    x: np.ndarray | None  # the site's optimum alone
    stages: tuple[str, ...]  # relaxation stages its optimum alone needed
    links: tuple[Link, ...] = ()
    budget_rows: np.ndarray | None = None  # rows of `pricing` on the coupled flows, open (<= inf) but in a budget solve
    adjust: np.ndarray | None = None  # price adjustment on [import, export] of the last pricing
    z: float = math.nan  # pricing optimum at `adjust`
    final: np.ndarray | None = None  # a MIP site's plan within its budget (see `settle`)


@dataclass(frozen=True)
class Alone:
    """A site's own optimum (slacks at zero when it can be served), from its worker."""

    site_id: str
    status: SolverStatus
    stages: tuple[str, ...]
    objective: float  # "cost" term
    bound: float  # its MIP bound (the objective for an LP)
    alone_cost: float  # compute_metrics total_cost
    grid_import: np.ndarray  # as the schedule reads (the REDUCE_BY baseline)
    grid_export: np.ndarray
    is_mip: bool
    num_cols: int
    num_rows: int
    seconds: float


@dataclass(frozen=True)
class Priced:
    """One pricing round of one worker: every linked site's optimum, new plans of re-solved ones."""

    ids: np.ndarray  # global ids of the worker's linked sites
    z: np.ndarray  # their pricing optima at the round's prices
    solved: np.ndarray  # ids re-solved this round (their prices changed)
    cost: np.ndarray  # "cost" term of each re-solved site's plan
    imports: np.ndarray  # (len(solved), T)
    exports: np.ndarray
    failed: tuple[int, ...]
    seconds: float


@dataclass(frozen=True)
class Part:
    """A site's final plan, from its worker."""

    site_id: str
    ok: bool
    schedule: pd.DataFrame | None
    assignment: dict[str, str]
    shortfall: dict[str, float]
    stages: tuple[str, ...]
    cost_term: float
    coupled_cost: float
    resolved: bool  # re-solved within a budget (else its optimum alone)
    encoded: bytes | None = None  # the schedule as the solver's encoder made it (None without one)


def _flow_rows(cols: SiteColumns, links: Sequence[Link]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR rows of a site's coupled flows, one per link and step: import (− export on a feeder)."""
    starts: list[int] = []
    indices: list[int] = []
    values: list[float] = []
    for link in links:
        for t in link.steps:
            starts.append(len(indices))
            indices.append(cols.grid_import[t])
            values.append(1.0)
            if link.net:
                indices.append(cols.grid_export[t])
                values.append(-1.0)
    return np.asarray(starts, dtype=np.int64), np.asarray(indices, dtype=np.int64), np.asarray(values)


class SiteBatch:
    """The sites one worker holds, with their models, for a whole solve (a Ray actor's body)."""

    def __init__(self, encode: ScheduleEncoder | None = None) -> None:
        self.sites: dict[str, _Site] = {}
        self.linked: dict[int, str] = {}
        self.encode = encode

    def load(self, items: list[tuple[str, SiteProblem]], threads: int = 1) -> list[Alone]:
        """Build every site's model and solve it alone, exactly as `optimize_site` does."""
        self.sites, self.linked = {}, {}
        out: list[Alone] = []
        for sid, problem in items:
            started = time.perf_counter()
            lp = LinearProgram()
            cols = add_site(lp, problem)
            matrix = lp.matrix()
            cfg = problem.solver
            model = HighsModel(
                matrix, time_limit_seconds=cfg.time_limit_seconds, mip_rel_gap=cfg.mip_rel_gap, threads=threads
            )
            costs = {name: lp.cost(name) for name in (COST, OVER, SHORTFALL, BREACH)}
            integers = np.flatnonzero(matrix.integrality)
            stages, relaxed = solve_lexicographic(
                DirectStages(model, costs, cols.slacks, integers), cfg.time_limit_seconds
            )
            final = stages[-1]
            x = model.values() if final.status.has_solution else None
            pricing = model
            if model.has_integers:
                pricing = HighsModel(
                    dataclasses.replace(matrix, integrality=np.zeros_like(matrix.integrality)), threads=threads
                )
                pricing.set_objective(costs[COST])
                pricing.fix_zero(cols.slacks)
            frame = schedule_frame(problem, cols, x)
            self.sites[sid] = _Site(problem, cols, model, pricing, costs[COST], x, tuple(relaxed))
            out.append(
                Alone(
                    site_id=sid,
                    status=final.status,
                    stages=tuple(relaxed),
                    objective=final.objective,
                    bound=final.bound,
                    alone_cost=compute_metrics(problem, frame).total_cost if x is not None else math.nan,
                    grid_import=frame[GRID_IMPORT].to_numpy(),
                    grid_export=frame[GRID_EXPORT].to_numpy(),
                    is_mip=model.has_integers,
                    num_cols=matrix.num_cols,
                    num_rows=matrix.num_rows,
                    seconds=time.perf_counter() - started,
                )
            )
        return out

    def link(self, links: dict[str, tuple[int, tuple[Link, ...], float]]) -> None:
        """Site id -> (global id, its rows in the master, its optimum at zero prices)."""
        for sid, (gid, site_links, z0) in links.items():
            site = self.sites[sid]
            site.links, site.z = site_links, z0
            site.adjust = np.zeros(2 * site.problem.steps)
            self.linked[gid] = sid
            starts, indices, values = _flow_rows(site.cols, site_links)
            first = site.pricing.num_rows()
            site.pricing.add_rows(np.full(len(starts), np.inf), starts, indices, values)
            site.budget_rows = np.arange(first, first + len(starts))

    def fix_choice(self, sids: Sequence[str]) -> None:
        """Hold these MIP sites' charger choice where their settled plan has it: their pricing LP
        is then exactly their program for that choice (a polytope), so from here on they are LP
        sites of the decomposition, and any convex combination of their plans keeps the choice."""
        for sid in sids:
            site = self.sites[sid]
            assert site.final is not None
            binaries = np.array([y for choice in site.cols.choice.values() for y in choice.values()], dtype=np.int64)
            if len(binaries):
                held = np.round(site.final[binaries])
                site.pricing.set_col_bounds(binaries, held, held)
            site.final, site.adjust = None, None

    def share(self, budgets: dict[int, np.ndarray]) -> dict[int, tuple[float, np.ndarray, np.ndarray]]:
        """Each site's cheapest plan (of its LP) within a budget on its coupled flows: global id ->
        (cost, imports, exports); a site that cannot keep its budget is left out."""
        out = {}
        for gid, budget in budgets.items():
            site = self.sites[self.linked[gid]]
            x = self._budgeted(site, budget)
            if x is not None:
                out[gid] = (float(site.cost @ x), x[site.cols.grid_import], x[site.cols.grid_export])
        return out

    def _budgeted(self, site: _Site, budget: np.ndarray) -> np.ndarray | None:
        """Solve the pricing LP at the site's own costs with its budget rows closed at `budget`."""
        assert site.budget_rows is not None
        flows = np.concatenate([site.cols.grid_import, site.cols.grid_export])
        site.pricing.set_costs(flows, site.cost[flows])
        site.adjust = None  # the next pricing re-solves it
        site.pricing.set_row_upper(site.budget_rows, budget)
        ok = site.pricing.resolve(primal=False) is SolverStatus.OPTIMAL
        x = site.pricing.values() if ok else None
        site.pricing.set_row_upper(site.budget_rows, np.full(len(budget), np.inf))
        return x

    def price(self, mu: np.ndarray) -> Priced:
        """Re-solve every linked site whose prices changed; its optimum and plan."""
        started = time.perf_counter()
        ids = np.fromiter(self.linked, dtype=np.int64, count=len(self.linked))
        z = np.empty(len(ids))
        solved, cost, imports, exports, failed = [], [], [], [], []
        for i, (gid, sid) in enumerate(self.linked.items()):
            site = self.sites[sid]
            T = site.problem.steps
            adjust = np.zeros(2 * T)
            for link in site.links:
                adjust[link.steps] += mu[link.rows]
                if link.net:
                    adjust[T + link.steps] -= mu[link.rows]
            if site.adjust is not None and np.array_equal(adjust, site.adjust):
                z[i] = site.z
                continue
            flows = np.concatenate([site.cols.grid_import, site.cols.grid_export])
            site.pricing.set_costs(flows, site.cost[flows] + adjust)
            status = site.pricing.resolve()
            if status is not SolverStatus.OPTIMAL:
                failed.append(gid)
                site.adjust = None
                z[i] = -math.inf
                continue
            x = site.pricing.values()
            site.adjust, site.z = adjust, site.pricing.objective()
            z[i] = site.z
            solved.append(gid)
            cost.append(float(site.cost @ x))
            imports.append(x[site.cols.grid_import])
            exports.append(x[site.cols.grid_export])
        T = next(iter(self.sites.values())).problem.steps if self.sites else 0
        return Priced(
            ids=ids,
            z=z,
            solved=np.asarray(solved, dtype=np.int64),
            cost=np.asarray(cost),
            imports=np.asarray(imports).reshape(len(solved), T),
            exports=np.asarray(exports).reshape(len(solved), T),
            failed=tuple(failed),
            seconds=time.perf_counter() - started,
        )

    def settle(
        self, budgets: dict[str, list[np.ndarray]], penalty: float, time_limit_seconds: float
    ) -> dict[str, tuple[bool, float, np.ndarray, np.ndarray]]:
        """MIP sites' plans (with their binaries) within their budgets: site id -> (kept the budget,
        cost, imports, exports). A MIP that cannot keep its budget (the budget came from its LP
        relaxation) pays `penalty` per kW over it instead; the driver then fixes such plans and
        lets the LP sites make room. A site with no plan at all is left out."""
        started = time.perf_counter()
        out = {}
        for sid, budget in budgets.items():
            site = self.sites[sid]
            left = max(1.0, time_limit_seconds - (time.perf_counter() - started))
            x, kept = self._within_mip(site, budget, penalty, left)
            site.final = x
            if x is not None:
                out[sid] = (kept, float(site.cost @ x), x[site.cols.grid_import], x[site.cols.grid_export])
        return out

    def _within_mip(
        self, site: _Site, budget: list[np.ndarray], penalty: float, time_limit_seconds: float
    ) -> tuple[np.ndarray | None, bool]:
        starts, indices, values = _flow_rows(site.cols, site.links)
        model, room = site.model, np.concatenate(budget)
        model.set_objective(site.cost)
        first = model.num_rows()
        model.add_rows(room, starts, indices, values)
        limit = min(time_limit_seconds, site.problem.solver.time_limit_seconds)
        outcome = model.run(COST, limit)
        if outcome.status.has_solution:
            return model.values(), True
        n = len(room)  # over the budget, at a price: one slack per budget row
        model.add_columns(np.full(n, penalty), np.arange(n), np.arange(first, first + n), -np.ones(n))
        outcome = model.run(COST, limit)
        return (model.values()[: len(site.cost)] if outcome.status.has_solution else None), False

    def finish(self, budgets: dict[str, list[np.ndarray] | None], time_limit_seconds: float) -> list[Part]:
        """Every site's final plan: a MIP's settled plan, an LP re-solved within its budget, or
        the site's own optimum (no budget: its own optimum fits in it)."""
        out = []
        for sid, site in self.sites.items():
            budget = budgets.get(sid)
            x: np.ndarray | None
            if site.final is not None:
                x, resolved = site.final, True
            elif budget is None or site.x is None:
                x, resolved = site.x, False
            else:
                x, resolved = self._within(site, budget), True
            out.append(self._part(sid, site, x, resolved))
        return out

    def _within(self, site: _Site, budget: list[np.ndarray]) -> np.ndarray | None:
        """An LP site's cheapest plan keeping its coupled flows within `budget` (one array per link)."""
        room = np.concatenate(budget)
        x = self._budgeted(site, room)
        # the budget is a convex combination of this LP's own plans: only solver tolerance can
        # refuse it, and the master's margin covers a hair more room
        return x if x is not None else self._budgeted(site, room + _BUDGET_ROOM_KW)

    def _part(self, sid: str, site: _Site, x: np.ndarray | None, resolved: bool) -> Part:
        problem, cols = site.problem, site.cols
        if x is None:
            return Part(sid, False, None, {}, {}, site.stages, math.nan, math.nan, resolved)
        frame = schedule_frame(problem, cols, x)
        shortfall = {s: float(max(x[c], 0.0)) for s, c in cols.shortfall.items()}
        assignment = assign_chargers(problem, cols, x)
        # encoded here, in the worker, while the site is at hand: the portfolio then only adds
        # what every site of the solve shares
        encoded = (
            self.encode(frame.columns.tolist(), frame.to_numpy(dtype=float), assignment)
            if self.encode is not None
            else None
        )
        return Part(
            site_id=sid,
            ok=True,
            schedule=frame,
            assignment=assignment,
            shortfall=shortfall,
            stages=site.stages,
            cost_term=float(site.cost @ x),
            coupled_cost=compute_metrics(problem, frame).total_cost,
            resolved=resolved,
            encoded=encoded,
        )

    def peak_rss_mb(self) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the master ----------------------------------------------------------------------------


class _Master:
    """Restricted master: λ per site plan, one convexity row per site, coupling rows with artificials.

    With a coincident-peak price p, rows `peak` (positions among the R coupling rows, bound 0)
    are Σ λ·net − P <= 0 over one column P >= 0 of cost p, and their artificials are held at
    zero: P itself keeps them feasible, and an artificial there would only undercut p. P's
    reduced cost p − Σ_{t in peak} μ_t is >= 0 at every optimum of this LP, so its row prices
    sum to at most p (the bound in `_Block.priced` needs exactly that).

    Folded feeders (`fold`): a peak row holds every site's net flow at its step, so every λ
    column is in 96 more rows, and the basis of a thousand-site master is as dense as those
    rows. Where a feeder's row r at step t covers sites' net flow too, the master holds the
    equivalent program with r written as an equality with its slack u_r >= 0 and the peak
    row replaced by itself minus r (so its feeder sites' λ leave it; u_r and r's artificial
    enter it with opposite signs). Row operations on an LP change neither its optimum nor
    its primal solution, and its prices map back exactly: μ_r = μ'_r − μ'_t, μ_t = μ'_t
    (`solve`), μ_r >= 0 being u_r's reduced cost. A peak row then holds one slack and one
    artificial per feeder instead of every site's λ; at 1,000 sites the master's time fell
    from 1,894 s (19 rounds) to 363 s (27 rounds) (`bench/portfolio_solve.py`, README).
    """

    def __init__(
        self,
        rhs: np.ndarray,
        penalty: np.ndarray,
        num_sites: int,
        peak: np.ndarray | None = None,
        price: float = 0.0,
        fold: np.ndarray | None = None,
    ) -> None:
        R = len(rhs)
        peak = np.empty(0, dtype=np.int64) if peak is None else peak
        fold = np.full(R, -1, dtype=np.int64) if fold is None else np.asarray(fold, dtype=np.int64)
        folded = np.flatnonzero(fold >= 0)
        lp = LinearProgram()
        held = np.zeros(R, dtype=bool)
        held[peak] = True
        art = lp.add_cols(R, upper=np.where(held, 0.0, np.inf))
        terms: list[tuple[np.ndarray, np.ndarray, float | np.ndarray]] = [(np.arange(R), art, -1.0)]
        cost = penalty.copy()
        if len(peak):
            top = lp.add_cols(1)
            terms.append((peak, np.repeat(top, len(peak)), -1.0))
            cost = np.append(cost, price)
        lower, upper = np.full(R, -np.inf), rhs.astype(float).copy()
        if len(folded):
            slack = lp.add_cols(len(folded))
            terms += [(folded, slack, 1.0), (fold[folded], slack, -1.0), (fold[folded], art[folded], 1.0)]
            cost = np.append(cost, np.zeros(len(folded)))
            lower[folded] = rhs[folded]
            np.subtract.at(upper, fold[folded], rhs[folded])
        lp.add_rows(R, terms, lower=lower, upper=upper)
        lp.add_rows(num_sites, [], lower=1.0, upper=1.0)
        self.model = HighsModel(lp.matrix())
        self.model.set_objective(cost)
        self.R, self.S, self.rhs = R, num_sites, rhs.copy()
        self.fold, self.folded = fold, folded
        self.first = lp.num_cols  # the first λ column: after the artificials (and P, and the folds' slacks)
        self.penalty = penalty.copy()
        self.site_of: list[int] = []  # per λ column, its site
        self.cost: list[float] = []
        self.avals: list[np.ndarray] = []  # per λ column, its values on its site's rows
        self.solves = 0

    @property
    def num_plans(self) -> int:
        return len(self.site_of)

    def add(
        self, gids: Sequence[int], costs: Sequence[float], avals: Sequence[np.ndarray], site_rows: list[np.ndarray]
    ) -> None:
        if not len(gids):
            return
        starts, indices, values = [0], [], []
        for gid, a in zip(gids, avals, strict=True):
            rows = site_rows[gid]
            self.site_of.append(gid)
            self.avals.append(a)
            a = self._folded(rows, a)
            keep = np.abs(a) >= 1e-12
            indices += [rows[keep], np.array([self.R + gid])]
            values += [a[keep], np.ones(1)]
            starts.append(starts[-1] + int(keep.sum()) + 1)
        self.cost += list(costs)
        self.model.add_columns(
            np.asarray(costs, dtype=float), np.asarray(starts[:-1]), np.concatenate(indices), np.concatenate(values)
        )

    def _folded(self, rows: np.ndarray, a: np.ndarray) -> np.ndarray:
        """A column's values on `rows` in the folded program: on a peak row, minus its folded rows'."""
        if not len(self.folded):
            return a
        into = self.fold[rows]
        inside = into >= 0
        if not inside.any():
            return a
        out = a.copy()
        where = np.full(self.R, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        targets = where[into[inside]]
        # a site is in a peak row whenever it is in a row folded into it (every site is in all)
        np.subtract.at(out, targets, a[inside])
        return out

    def fix(self, site: int, cost: float, avals: np.ndarray, site_rows: list[np.ndarray]) -> None:
        """Drop every column of `site` (held at zero) for one new one."""
        others = np.array([self.first + k for k, g in enumerate(self.site_of) if g == site], dtype=np.int64)
        if len(others):
            self.model.set_col_bounds(others, np.zeros(len(others)), np.zeros(len(others)))
        self.add([site], [cost], [avals], site_rows)

    def raise_penalty(self, factor: float) -> None:
        self.penalty *= factor
        self.model.set_costs(np.arange(self.R), self.penalty)

    def solve(self) -> tuple[SolverStatus, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Status, objective, λ, artificials, row prices μ >= 0 and convexity duals σ."""
        status = self.model.resolve(primal=self.solves > 0)
        self.solves += 1
        if status is not SolverStatus.OPTIMAL:
            return status, math.nan, np.empty(0), np.empty(0), np.empty(0), np.empty(0)
        x = self.model.values()
        y = self.model.row_duals()
        # HiGHS: a row dual is d(objective)/d(bound), <= 0 on a binding "<=" row
        mu = -y[: self.R]
        if len(self.folded):
            mu[self.folded] -= mu[self.fold[self.folded]]  # back to the rows as given (see the class doc)
        mu = np.clip(mu, 0.0, None)
        return (
            status,
            self.model.objective(),
            np.clip(x[self.first :], 0.0, None),
            np.clip(x[: self.R], 0.0, None),
            mu,
            y[self.R :],
        )


@dataclass(eq=False)
class _Block:
    """Sites joined by coupling rows, directly or through each other, with their own master.

    Blocks share nothing, so the Lagrangian bound is a sum of one bound per block: each
    block keeps the best of its own, and a block whose gap is closed stops pricing (its
    prices no longer change, so its sites are not re-solved).
    """

    sites: np.ndarray  # ids into the linked sites
    rows: np.ndarray  # global row ids, ascending
    rhs: np.ndarray  # the rows' bounds
    local_rows: dict[int, np.ndarray]  # site id -> its rows, as positions in `rows`
    z0: np.ndarray  # per site, its bound alone (pricing at zero prices)
    peak: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # positions of coincident-peak rows
    price: float = 0.0  # the coincident-peak price: what the peak rows' prices sum to at most
    alone_a: dict[int, np.ndarray] = field(default_factory=dict)  # per site, its flows alone on its rows
    alone_activity: np.ndarray = field(default_factory=lambda: np.empty(0))
    scale: np.ndarray | float = math.inf  # per row, where separation prices are clipped
    master: _Master | None = None
    lower: float = 0.0
    upper: float = 0.0
    done: bool = False
    feasible: bool = True
    objective: float = math.nan
    exact_next: bool = False
    raised: bool = False
    center: np.ndarray = field(default_factory=lambda: np.empty(0))
    sep: np.ndarray = field(default_factory=lambda: np.empty(0))
    alpha: float = 0.5
    smoothed: bool = False
    restricted: bool = False  # its MIP sites' charger choice is held: no more bounds from its rounds
    g_center: np.ndarray = field(default_factory=lambda: np.empty(0))
    mu: np.ndarray = field(default_factory=lambda: np.empty(0))
    sigma: np.ndarray = field(default_factory=lambda: np.empty(0))
    lam: np.ndarray = field(default_factory=lambda: np.empty(0))

    def solve_master(self) -> None:
        assert self.master is not None
        status, objective, self.lam, art, self.mu, self.sigma = self.master.solve()
        if status is not SolverStatus.OPTIMAL:
            raise _Fallback(f"a master LP ended {status}")
        self.objective = objective
        self.feasible = float(art.sum()) <= 1e-7
        self.upper = objective if self.feasible else math.inf

    def separation(self) -> np.ndarray:
        """Prices for the next pricing round: Wentges smoothing toward the best bound's prices,
        turned toward that point's subgradient (directional smoothing, Pessoa et al. 2018)."""
        if self.exact_next or self.restricted:  # a restricted block runs plain Dantzig–Wolfe
            self.sep, self.smoothed = self.dual_feasible(self.mu.copy()), False
            return self.sep
        center, out, a = self.center, self.mu, self.alpha
        tilde = a * center + (1 - a) * out
        toward, g = out - center, self.g_center
        sep = tilde
        norm_t, norm_g = float(np.linalg.norm(toward)), float(np.linalg.norm(g))
        if norm_t > 0 and norm_g > 0:
            beta = max(0.0, float(toward @ g) / (norm_t * norm_g))
            rho = beta * (center + norm_t / norm_g * g) + (1 - beta) * out
            step = float(np.linalg.norm(rho - center))
            if step > 0:
                sep = center + float(np.linalg.norm(tilde - center)) / step * (rho - center)
        self.sep, self.smoothed = self.dual_feasible(np.minimum(np.clip(sep, 0.0, None), self.scale)), True
        return self.sep

    def dual_feasible(self, mu: np.ndarray) -> np.ndarray:
        """`mu` with its peak rows' prices scaled to sum to at most the peak price.

        The Lagrangian term of the peak column is min_{P>=0} (p − Σ_peak μ)·P: zero when the
        prices sum to at most p, −inf otherwise. The master's own prices meet it up to its dual
        tolerance; a smoothed point, moved along a subgradient, need not. Any point of the set
        gives a valid bound, so the point is brought into it (by scaling, which keeps the
        prices' shape over the steps) rather than the bound thrown away.
        """
        if not len(self.peak):
            return mu
        total = float(mu[self.peak].sum())
        if total <= self.price:
            return mu
        out = mu.copy()
        out[self.peak] *= self.price / total
        return out

    def _peak_term(self, mu: np.ndarray) -> float:
        """min over P >= 0 of (p − Σ_peak μ)·P (0 or −inf; see `dual_feasible`)."""
        if not len(self.peak):
            return 0.0
        return 0.0 if float(mu[self.peak].sum()) <= self.price * (1 + 1e-12) else -math.inf

    def subgradient(self, activity: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """A supergradient of the bound at `mu`: rows' activity − bound, and on the peak rows
        activity − P* with P* a minimizer of the peak term: 0 while the prices sum to less than
        p, else (any P >= 0 then) the peak the plans make, which points along that face."""
        g = activity - self.rhs
        if len(self.peak) and float(mu[self.peak].sum()) >= self.price * (1 - 1e-9):
            g[self.peak] -= max(0.0, float(activity[self.peak].max()))
        return g

    def activity(self, plans: list[np.ndarray]) -> np.ndarray:
        """Σ of the sites' flows on the block's rows, each site at its plan in `plans`."""
        total = np.zeros(len(self.rows))
        for g in self.sites:
            np.add.at(total, self.local_rows[int(g)], plans[int(g)])
        return total

    def priced(self, z: np.ndarray, new: dict[int, list[tuple[float, np.ndarray]]], plans: list[np.ndarray]) -> None:
        """Take a pricing round: the bound at its prices, and columns that improve the master."""
        assert self.master is not None
        bound = float(z[self.sites].sum() - self.sep @ self.rhs) + self._peak_term(self.sep)
        g = self.subgradient(self.activity(plans), self.sep)  # of the bound at the round's prices
        if self.restricted:
            bound = -math.inf  # prices of a restricted program bound only that program
        if self.smoothed:
            # automatic smoothing: nearer the master's prices when they lie uphill of the round's
            self.alpha = (
                max(0.0, self.alpha - 0.1)
                if float(g @ (self.mu - self.sep)) > 0
                else min(0.9, self.alpha + 0.1 * (1 - self.alpha))
            )
        if bound > self.lower:
            self.lower, self.center, self.g_center = bound, self.sep.copy(), g

        ids, costs, avals = [], [], []
        for k, site in enumerate(self.sites):
            for cost, a in new.get(int(site), ()):
                reduced = cost + float(self.mu[self.local_rows[int(site)]] @ a) - self.sigma[k]
                if reduced < -_STALL * max(1.0, abs(cost)):
                    ids.append(k)
                    costs.append(cost)
                    avals.append(a)
        self.master.add(ids, costs, avals, [self.local_rows[int(g)] for g in self.sites])
        if ids:
            self.exact_next = False
        elif self.smoothed:
            self.exact_next = True  # mis-pricing: the next round prices at the master's own duals
        elif self.feasible:
            # nothing prices out at the master's duals: its optimum is the block's (a bound too,
            # unless sites are held at settled plans)
            self.lower = self.lower if self.restricted else max(self.lower, self.objective)
            self.done = True
        elif not self.raised:
            self.master.raise_penalty(100.0)
            self.raised = True
        else:
            raise _Fallback("no combination of site plans keeps the coupling rows")

    def shares(self) -> dict[int, np.ndarray]:
        """A budget per site on the block's rows that adds up to the master's bounds (see `_Run._share`)."""
        assert self.master is not None
        cap = self.master.rhs
        excess = np.clip(self.alone_activity - cap, 0.0, None)
        room = np.clip(cap - self.alone_activity, 0.0, None)
        drawn, count = np.zeros(len(self.rows)), np.zeros(len(self.rows))
        for g, a in self.alone_a.items():
            np.add.at(drawn, self.local_rows[g], np.clip(a, 0.0, None))
            np.add.at(count, self.local_rows[g], 1.0)
        out = {}
        soft = np.zeros(len(self.rows), dtype=bool)
        soft[self.peak] = True  # peak rows are priced, not capped: no share of them
        for g, a in self.alone_a.items():
            loc = self.local_rows[g]
            part = np.where(
                drawn[loc] > 0, np.clip(a, 0.0, None) / np.where(drawn[loc] > 0, drawn[loc], 1.0), 1.0 / count[loc]
            )
            out[g] = np.where(soft[loc], np.inf, a - excess[loc] * part + room[loc] / count[loc])
        return out

    def seed(self, found: dict[int, tuple[float, np.ndarray, np.ndarray]], avals: Any) -> None:
        """Add the sites' plans within their shares to the master (see `_Run._share`)."""
        assert self.master is not None
        ids = [k for k, g in enumerate(self.sites) if int(g) in found]
        columns = [avals(int(self.sites[k]), *found[int(self.sites[k])][1:]) for k in ids]
        self.master.add(
            ids, [found[int(self.sites[k])][0] for k in ids], columns, [self.local_rows[int(g)] for g in self.sites]
        )

    def restrict(self, settled: dict[int, tuple[float, np.ndarray]]) -> None:
        """Its MIP sites keep the charger choice of their settled plans (global id -> cost, flows on
        its rows): their plans so far (of the relaxation) leave the master, the settled ones
        join it, and the rounds go on with every site an LP."""
        assert self.master is not None
        for k, g in enumerate(self.sites):
            if int(g) in settled:
                cost, a = settled[int(g)]
                self.master.fix(k, cost, a, [self.local_rows[int(h)] for h in self.sites])
        self.restricted = True
        self.done = self.exact_next = self.raised = False

    def budgets(
        self, linked: list[str], links: dict[str, list[Link]], alone_a: list[np.ndarray]
    ) -> dict[str, list[np.ndarray] | None]:
        """Per site, its share of each of its rows (None: its optimum alone fits in it)."""
        if self.master is None:
            return {linked[int(g)]: None for g in self.sites}
        n = len(self.sites)
        share = [np.zeros(len(alone_a[int(g)])) for g in self.sites]
        for k, site in enumerate(self.master.site_of):
            if self.lam[k] > 0:
                share[site] += self.lam[k] * self.master.avals[k]
        total = np.bincount(self.master.site_of, weights=self.lam, minlength=n)
        out: dict[str, list[np.ndarray] | None] = {}
        for k, g in enumerate(self.sites):
            sid = linked[int(g)]
            room = share[k] / total[k] if total[k] > 0 else alone_a[int(g)]
            if (alone_a[int(g)] <= room + 1e-9).all():
                out[sid] = None
                continue
            pieces, first = [], 0
            for lk in links[sid]:
                pieces.append(room[first : first + len(lk.rows)])
                first += len(lk.rows)
            out[sid] = pieces
        return out


def _blocks(
    linked: list[str],
    site_rows: list[np.ndarray],
    couplings: list[Coupling],
    rhs: np.ndarray,
    members: np.ndarray,
    alone_a: list[np.ndarray],
    alone: list[Alone],
    problems: list[SiteProblem],
    peak_rows: np.ndarray | None = None,
    price: float = 0.0,
) -> list[_Block]:
    """Split the linked sites into blocks; a block whose sites' plans alone keep its rows is done.

    `peak_rows` (global, with `price`): the coincident-peak rows, which every site shares, so
    with a peak price all linked sites form one block. Such a block is done at once only when
    the sites alone never import on balance (then P = 0 and their plans alone are optimal)."""
    soft = np.zeros(len(rhs), dtype=bool)
    if peak_rows is not None:
        soft[peak_rows] = True
    parent = list(range(len(linked)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    gid = {sid: i for i, sid in enumerate(linked)}
    for c in couplings:
        first = root(gid[c.site_ids[0]])
        for sid in c.site_ids[1:]:
            parent[root(gid[sid])] = first
    groups: dict[int, list[int]] = {}
    for i in range(len(linked)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for sites in groups.values():
        rows = np.unique(np.concatenate([site_rows[g] for g in sites]))
        local = {g: np.searchsorted(rows, site_rows[g]) for g in sites}
        z0 = np.array([alone[g].bound for g in sites])
        activity = np.zeros(len(rows))
        for g in sites:
            np.add.at(activity, local[g], alone_a[g])
        peak = np.flatnonzero(soft[rows])
        block_price = price if len(peak) else 0.0
        # alone, the portfolio pays the peak charge of the sites' plans alone
        alone_peak = max(0.0, float(activity[peak].max())) if len(peak) else 0.0
        block = _Block(
            np.array(sites),
            rows,
            rhs[rows],
            local,
            z0,
            peak=peak,
            price=block_price,
            lower=float(z0.sum()),
            upper=float(sum(alone[g].objective for g in sites)) + block_price * alone_peak,
        )
        block.alone_a, block.alone_activity = {g: alone_a[g] for g in sites}, activity
        if (activity <= block.rhs).all():
            block.done = True
        else:
            # the margin keeps caps a hair inside their bounds; a peak row is no cap (P absorbs it)
            margin = np.where(soft[rows], 0.0, _MARGIN_KW + _MARGIN_PER_SITE_KW * members[rows])
            # relieving a cap by a kW can also lower the peak by a kW: worth up to p more
            penalty = np.full(len(rows), _penalty([problems[g] for g in sites]) + 100.0 * block_price)
            block.master = _Master(
                block.rhs - margin, penalty, len(sites), peak, block_price, _folds(couplings, rows, peak)
            )
            block.master.add(
                list(range(len(sites))),
                [alone[g].objective for g in sites],
                [alone_a[g] for g in sites],
                [local[g] for g in sites],
            )
            block.center = np.zeros(len(rows))
            block.g_center = block.subgradient(activity, block.center)
            # a cap's price: a kW-step's energy value, plus p where it can move the peak; a peak
            # row's: at most p (they sum to at most p)
            energy = _energy_value([problems[g] for g in sites])
            block.scale = np.where(soft[rows], block_price, energy + block_price)
        out.append(block)
    return out


def _folds(couplings: list[Coupling], rows: np.ndarray, peak: np.ndarray) -> np.ndarray | None:
    """Per row of a block (global ids `rows`), the position of the peak row its feeder row folds
    into (see `_Master`), or −1; None without peak rows.

    `couplings` are laid out in the master's rows in order (`_Run.run`), the peak's last with a
    row per step. A row folds when it bounds its sites' net flow, and at each step only rows of
    disjoint site sets fold (a site in two folded rows would re-enter the peak row negated).
    """
    if not len(peak):
        return None
    fold = np.full(len(rows), -1, dtype=np.int64)
    used: dict[int, set[str]] = {}
    first = 0
    for c in couplings:
        own = np.arange(first, first + len(c.steps))  # its global rows
        first += len(c.steps)
        if c.name == PEAK or not c.net or not np.isin(own, rows).all():
            continue
        at = np.searchsorted(rows, own)
        members = set(c.site_ids)
        for k, t in enumerate(c.steps):
            taken = used.setdefault(int(t), set())
            if taken.isdisjoint(members) and np.isfinite(c.bound[k]):
                fold[at[k]] = peak[int(t)]
                taken |= members
    return fold


# ---- the solver ----------------------------------------------------------------------------


@dataclass
class SolveStats:
    """Where a decomposed solve's time went (the last solve's, on `DecompositionSolver.stats`)."""

    load_seconds: float = 0.0  # build and solve every site alone, in the workers
    share_seconds: float = 0.0  # the first plans within shares of the rows
    master_seconds: float = 0.0
    pricing_seconds: float = 0.0  # wall time of the pricing rounds
    settle_seconds: float = 0.0  # MIP sites' plans within their budgets
    settled_over: int = 0  # MIP sites whose budget (from their LP relaxation) their binaries could not keep
    finish_seconds: float = 0.0  # budget re-solves and extraction, in the workers
    iterations: int = 0
    columns: int = 0
    resolved_sites: int = 0  # sites re-solved in the final step (the rest keep their optimum alone)
    max_coupling_violation_kw: float = 0.0
    fallback_reason: str = ""
    workers: int = 0
    history: list[tuple[float, float, float]] = field(default_factory=list)  # (seconds, lower, upper) per iteration


class DecompositionSolver:
    """`CoupledSolver` by Dantzig–Wolfe decomposition, site subproblems in Ray actors (module doc).

    `address`: a Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``); None reads
    RAY_ADDRESS and otherwise starts a local instance with `num_cpus` CPUs on first use. An
    already initialized Ray is used as it is. `workers`: actors (default: the cluster's CPUs);
    `use_ray=False` runs the same workers in this process (debugging, profiling).
    """

    def __init__(
        self,
        *,
        gap: float = 1e-3,
        max_iterations: int = 200,
        time_limit_seconds: float = 120.0,
        address: str | None = None,
        num_cpus: int | None = None,
        workers: int | None = None,
        smoothing: float = 0.5,
        runtime_env: dict[str, Any] | None = None,
        use_ray: bool = True,
        monolithic: MonolithicSolver | None = None,
        encode: ScheduleEncoder | None = None,
    ) -> None:
        self.gap, self.max_iterations, self.time_limit_seconds = gap, max_iterations, time_limit_seconds
        self.address, self.num_cpus, self.workers, self.smoothing = address, num_cpus, workers, smoothing
        self.runtime_env, self.use_ray = runtime_env, use_ray
        self.monolithic = monolithic or MonolithicSolver(time_limit_seconds=time_limit_seconds)
        self.encode = encode  # given to the workers: each site's schedule is encoded where it is planned
        self.stats = SolveStats()
        self._actors: list[Any] = []

    # -- workers --------------------------------------------------------------------------

    def connect(self) -> None:
        """Start or join Ray and the workers now (else on the first solve)."""
        if self._actors:
            return
        if not self.use_ray:
            self._actors = [SiteBatch(self.encode) for _ in range(max(1, self.workers or 1))]
            return
        connect_ray(self.address, self.num_cpus, self.runtime_env)
        import ray

        count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(SiteBatch)
        self._actors = [actor.remote(self.encode) for _ in range(count)]
        self._call("peak_rss_mb", [()] * count)  # each worker up (its process started, imports done)

    def close(self) -> None:
        """End the workers (Ray itself stays up for others)."""
        if self.use_ray and self._actors:
            import ray

            for a in self._actors:
                ray.kill(a)
        self._actors = []

    def _call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`method(*args[i])` on worker i, in parallel; results in worker order."""
        if not self.use_ray:
            return [getattr(w, method)(*a) for w, a in zip(self._actors, args, strict=False)]
        import ray

        try:
            return ray.get([getattr(w, method).remote(*a) for w, a in zip(self._actors, args, strict=False)])
        except ray.exceptions.RayError as exc:
            # a lost or failed worker: start afresh next time; this solve goes monolithic
            log.warning("decomposition worker failed in %s: %s", method, exc)
            self.close()
            raise _Fallback(f"a worker failed ({type(exc).__name__})") from exc

    def worker_peak_rss_mb(self) -> list[float]:
        return [float(v) for v in self._call("peak_rss_mb", [()] * len(self._actors))]

    # -- the solve ------------------------------------------------------------------------

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
        index = common_index(problems)  # raises InvalidInput before any work
        price = check_peak_price(coincident_peak_price_per_kw)
        reserved = dict(reserved_kw or {})
        self.stats = SolveStats()
        if not problems:
            plan = self.monolithic.solve(problems, feeders, events, reserved_kw=reserved)
            return dataclasses.replace(plan, method=METHOD)
        try:
            return _Run(self, problems, feeders, events, index, started, price, reserved).run()
        except _Fallback as why:
            self.stats.fallback_reason = str(why)
            log.info("decomposition falls back to the monolithic solve: %s", why)
            plan = self.monolithic.solve(
                problems, feeders, events, coincident_peak_price_per_kw=price, reserved_kw=reserved
            )
            return dataclasses.replace(plan, method=FALLBACK, seconds=time.perf_counter() - started)


def connect_ray(
    address: str | None = None, num_cpus: int | None = None, runtime_env: dict[str, Any] | None = None
) -> None:
    """Use the running Ray, else join `address` (or RAY_ADDRESS), else start a local instance."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False, ignore_reinit_error=True, runtime_env=runtime_env)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
            runtime_env=runtime_env,
        )


class _Fallback(Exception):
    """The decomposition cannot give this portfolio's plan; the monolithic solve will."""


def _spread(problems: Mapping[str, SiteProblem], workers: int) -> list[list[str]]:
    """Sites to workers, heaviest first to the least loaded (work ~ sessions x steps)."""
    load = [0.0] * workers
    out: list[list[str]] = [[] for _ in range(workers)]
    weight = {sid: p.steps * (4 + 3 * len(p.sessions)) for sid, p in problems.items()}
    for sid in sorted(problems, key=lambda s: -weight[s]):
        w = int(np.argmin(load))
        out[w].append(sid)
        load[w] += weight[sid]
    return out


def _energy_value(problems: Sequence[SiteProblem]) -> float:
    """The most one kW over one step is worth in energy alone (import or export, carbon)."""
    return max(
        (
            p.dt_h
            * (
                p.objective.cost * (np.abs(p.import_price).max(initial=0) + np.abs(p.export_price).max(initial=0))
                + p.objective.carbon * np.abs(p.carbon_kg_per_kwh).max(initial=0)
            )
            for p in problems
        ),
        default=1.0,
    )


def _penalty(problems: Sequence[SiteProblem]) -> float:
    """A price per kW and step above any marginal value a coupling row can have in practice.

    Relieving one kW at one step costs at most about a step's energy at the dearest price,
    the revenue or value given up (export, flexible load, degradation) and a kW more of
    each demand-charge window or peak weight; a hundred times the largest such sum.
    """
    worst = 1.0
    for p in problems:
        w, dt = p.objective, p.dt_h
        energy = dt * (
            w.cost * (np.abs(p.import_price).max(initial=0) + np.abs(p.export_price).max(initial=0))
            + w.carbon * np.abs(p.carbon_kg_per_kwh).max(initial=0)
        )
        flex = dt * w.cost * max((f.value_per_kwh for f in p.site.flexible_loads), default=0.0)
        wear = dt * w.cost * (p.site.battery.degradation_cost_per_kwh if p.site.battery else 0.0)
        demand = w.cost * sum(d.rate_per_kw for d in p.demand_windows) + w.peak
        worst = max(worst, energy + flex + 2 * wear + demand)
    return 100.0 * worst


class _Run:
    """One decomposed solve (state of the iterations)."""

    def __init__(
        self,
        solver: DecompositionSolver,
        problems: Mapping[str, SiteProblem],
        feeders: Sequence[Feeder],
        events: Sequence[FlexEvent],
        index: pd.DatetimeIndex,
        started: float,
        price: float = 0.0,
        reserved: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.s, self.problems, self.feeders, self.index, self.started = solver, problems, feeders, index, started
        self.reserved = reserved or {}  # feeder id -> kW per step kept out of its cap for absent members
        self.events = [e for e in events if e.state is not FlexState.CANCELLED]
        self.price = price  # of the coincident peak, per kW
        self.stats = solver.stats
        self._z: np.ndarray | None = None

    def left(self) -> float:
        return self.s.time_limit_seconds - (time.perf_counter() - self.started)

    def run(self) -> PortfolioPlan:
        s, problems, stats = self.s, self.problems, self.stats
        T = len(self.index)
        try:
            s.connect()
        except Exception as exc:  # noqa: BLE001 - no workers: the monolithic solve still serves
            raise _Fallback(f"no workers ({exc})") from exc
        batches = _spread(problems, len(s._actors))
        stats.workers = len(s._actors)
        t0 = time.perf_counter()
        alone_lists = s._call("load", [([(sid, problems[sid]) for sid in b],) for b in batches])
        stats.load_seconds = time.perf_counter() - t0
        alone: dict[str, Alone] = {a.site_id: a for lst in alone_lists for a in lst}

        baseline = {sid: a.grid_import for sid, a in alone.items()}
        feeder_rows = [feeder_coupling(f, problems, T, self.reserved.get(f.feeder_id)) for f in self.feeders]
        event_rows = [event_coupling(e, problems, self.index, baseline) for e in self.events]
        couplings = [c for c in feeder_rows + event_rows if c.site_ids and len(c.steps)]
        # the coincident peak: rows Σ_s net_s[t] − P <= 0 over every site, last in the master
        peak = [Coupling(PEAK, tuple(problems), np.arange(T), np.zeros(T), net=True)] if self.price > 0 and T else []

        # master rows and each site's links
        rhs_parts, sizes = [], []
        links: dict[str, list[Link]] = {}
        first = 0
        for c in couplings + peak:
            n = len(c.steps)
            rows = np.arange(first, first + n)
            for sid in c.site_ids:
                links.setdefault(sid, []).append(Link(rows, c.steps, c.net))
            rhs_parts.append(c.bound)
            sizes.append(np.full(n, len(c.site_ids)))
            first += n
        R = first
        peak_rows = np.arange(R - T, R) if peak else None
        rhs = np.concatenate(rhs_parts) if rhs_parts else np.empty(0)
        members = np.concatenate(sizes) if sizes else np.empty(0)
        linked = [sid for sid in problems if sid in links]
        gid = {sid: i for i, sid in enumerate(linked)}

        # a site in a cap or target row must be servable as it is (see the module doc); one the
        # peak alone links may keep its own relaxation if it is an LP: its model then holds its
        # stages' optima, and pricing it is pricing its relaxed program (a polytope)
        hard = {sid for c in couplings for sid in c.site_ids}
        bad = [
            sid
            for sid in linked
            if not alone[sid].status.has_solution or (alone[sid].stages and (sid in hard or alone[sid].is_mip))
        ]
        if bad:
            raise _Fallback(f"coupled site(s) {', '.join(sorted(bad)[:5])} cannot be served without relaxation")
        if any(not a.status.has_solution for a in alone.values()):
            raise _Fallback("a site has no plan of its own")

        free_lb = sum(alone[sid].bound for sid in problems if sid not in links)
        free_ub = sum(alone[sid].objective for sid in problems if sid not in links)
        site_rows = [np.concatenate([lk.rows for lk in links[sid]]) for sid in linked]

        def avals(sid: str, imp: np.ndarray, exp: np.ndarray) -> np.ndarray:
            return np.concatenate([imp[lk.steps] - exp[lk.steps] if lk.net else imp[lk.steps] for lk in links[sid]])

        self._avals = avals
        alone_a = [avals(sid, alone[sid].grid_import, alone[sid].grid_export) for sid in linked]

        blocks = _blocks(
            linked,
            site_rows,
            couplings + peak,
            rhs,
            members,
            alone_a,
            [alone[sid] for sid in linked],
            [self.problems[sid] for sid in linked],
            peak_rows,
            self.price,
        )
        busy = [b for b in blocks if not b.done]
        if busy:
            ids = {g for b in busy for g in b.sites}
            s._call(
                "link",
                [
                    ({sid: (gid[sid], tuple(links[sid]), alone[sid].bound) for sid in b if gid.get(sid) in ids},)
                    for b in batches
                ],
            )
            t0 = time.perf_counter()
            self._share(busy, batches, gid, linked)
            stats.share_seconds = time.perf_counter() - t0
        plans = list(alone_a)
        iterations = self._iterate(blocks, busy, linked, site_rows, free_lb, free_ub, avals, R, plans, 0)
        budgets = self._settle(blocks, batches, linked, links, alone, alone_a, gid, plans)
        if budgets is None:  # some MIP could not keep its budget: more rounds with charger choices held
            again = [b for b in blocks if b.restricted]
            iterations = self._iterate(blocks, again, linked, site_rows, free_lb, free_ub, avals, R, plans, iterations)
            budgets = {}
            for b in blocks:
                budgets.update(b.budgets(linked, links, alone_a))
        lower = free_lb + sum(b.lower for b in blocks)
        stats.iterations = iterations

        t0 = time.perf_counter()
        part_lists = s._call("finish", [({sid: budgets.get(sid) for sid in b}, max(self.left(), 5.0)) for b in batches])
        stats.finish_seconds = time.perf_counter() - t0
        parts: dict[str, Part] = {p.site_id: p for lst in part_lists for p in lst}
        failed = [sid for sid, p in parts.items() if not p.ok]
        if failed:
            raise _Fallback(f"no plan within its budget for site(s) {', '.join(sorted(failed)[:5])}")
        stats.resolved_sites = sum(p.resolved for p in parts.values())
        frames = {sid: parts[sid].schedule for sid in problems}
        violation = _worst_violation(couplings, frames)
        stats.max_coupling_violation_kw = violation
        if violation > CHECK_KW:
            raise _Fallback(f"a coupling row is off by {violation:.3g} kW on the extracted schedules")
        # the charge of the peak the pushed schedules make (each re-solve within its share of
        # the peak rows too, so it is at most the master's P)
        upper = float(sum(p.cost_term for p in parts.values())) + self.price * portfolio_peak(frames)
        gap = max(0.0, (upper - lower) / max(abs(upper), 1e-9))
        return self._plan(alone, parts, feeder_rows, event_rows, upper, lower, gap, iterations)

    def _settle(
        self,
        blocks: list[_Block],
        batches: list[list[str]],
        linked: list[str],
        links: dict[str, list[Link]],
        alone: dict[str, Alone],
        alone_a: list[np.ndarray],
        gid: dict[str, int],
        plans: list[np.ndarray],
    ) -> dict[str, list[np.ndarray] | None] | None:
        """Every site's budget from the masters; MIP sites settle on a plan with their binaries within
        theirs. None when some MIP could not keep its budget: the blocks of such sites then hold
        their MIP sites' charger choices as settled (`_Block.restrict`) for more rounds."""
        budgets: dict[str, list[np.ndarray] | None] = {}
        for b in blocks:
            budgets.update(b.budgets(linked, links, alone_a))
        mips = {sid: room for sid, room in budgets.items() if room is not None and alone[sid].is_mip}
        if not mips:
            return budgets
        penalty = max(_penalty([self.problems[sid] for sid in mips]), 1.0)
        t0 = time.perf_counter()
        settled: dict[str, tuple[bool, float, np.ndarray, np.ndarray]] = {}
        for part in self.s._call(
            "settle",
            [({sid: mips[sid] for sid in batch if sid in mips}, penalty, max(self.left(), 5.0)) for batch in batches],
        ):
            settled.update(part)
        self.stats.settle_seconds += time.perf_counter() - t0
        missing = sorted(set(mips) - set(settled))
        if missing:
            raise _Fallback(f"no plan with its charger choice for site(s) {', '.join(missing[:5])}")
        over = {sid for sid, (kept, *_rest) in settled.items() if not kept}
        if not over:
            return budgets
        self.stats.settled_over = len(over)
        held = []
        for b in blocks:
            members = {linked[int(g)] for g in b.sites}
            if members & over:
                plans_of = {
                    gid[sid]: (settled[sid][1], self._avals(sid, settled[sid][2], settled[sid][3]))
                    for sid in members
                    if sid in settled
                }
                b.restrict(plans_of)
                for g, (_cost, a) in plans_of.items():
                    plans[g] = a
                held += [linked[g] for g in plans_of]
        self.s._call("fix_choice", [([sid for sid in batch if sid in held],) for batch in batches])
        return None

    def _share(self, busy: list[_Block], batches: list[list[str]], gid: dict[str, int], linked: list[str]) -> None:
        """Seed every busy block with plans that keep its rows together: each site re-plans within
        a share of each row (its own flow alone, cut where the row is exceeded in proportion to
        what it draws there, plus an equal part of the room left). The master is then feasible
        from its first solve whenever every site can keep its share: no Phase-1 rounds."""
        budgets: dict[int, np.ndarray] = {}
        for b in busy:
            budgets.update(b.shares())
        found: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}
        for part in self.s._call(
            "share", [({gid[sid]: budgets[gid[sid]] for sid in batch if gid.get(sid) in budgets},) for batch in batches]
        ):
            found.update(part)
        for b in busy:
            b.seed(found, lambda g, imp, exp: self._avals(linked[g], imp, exp))

    def _iterate(
        self,
        blocks: list[_Block],
        busy: list[_Block],
        linked: list[str],
        site_rows: list[np.ndarray],
        free_lb: float,
        free_ub: float,
        avals: Any,
        R: int,
        plans: list[np.ndarray],
        rounds: int,
    ) -> int:
        """Rounds of master solves and pricing until the gap is closed; the number of rounds so far.

        `plans`: each linked site's latest pricing plan on its rows (updated in place)."""
        s, stats = self.s, self.stats
        sep = np.zeros(R)
        if self._z is None:  # each linked site's pricing optimum at the latest prices it saw
            self._z = np.zeros(len(linked))
            for b in blocks:
                self._z[b.sites] = b.z0
        z = self._z
        rounds += 1
        stats.history.append(
            (
                time.perf_counter() - self.started,
                free_lb + sum(b.lower for b in blocks),
                free_ub + sum(b.upper for b in blocks),
            )
        )
        while busy:
            t0 = time.perf_counter()
            for b in busy:
                b.solve_master()
            stats.master_seconds += time.perf_counter() - t0
            lower = free_lb + sum(b.lower for b in blocks)
            upper = free_ub + sum(b.upper for b in blocks)
            stats.history.append((time.perf_counter() - self.started, lower, upper))
            allowed = s.gap * max(abs(upper) if math.isfinite(upper) else abs(lower), 1e-9) - max(
                free_ub - free_lb, 0.0
            )
            if math.isfinite(upper) and upper - lower <= allowed:
                break
            for b in busy:
                b.done = b.done or (b.feasible and b.upper - b.lower <= allowed * len(b.sites) / len(linked))
            busy = [b for b in busy if not b.done]
            if not busy:
                break
            if rounds >= s.max_iterations or self.left() <= 0:
                if any(not b.feasible for b in blocks):
                    raise _Fallback("the coupling rows were not met within the iteration or time limit")
                break
            rounds += 1
            for b in busy:
                sep[b.rows] = b.separation()
            t0 = time.perf_counter()
            priced: list[Priced] = s._call("price", [(sep,)] * len(s._actors))
            stats.pricing_seconds += time.perf_counter() - t0
            if any(p.failed for p in priced):
                raise _Fallback("a site's pricing re-solve failed")
            new: dict[int, list[tuple[float, np.ndarray]]] = {}
            for p in priced:
                z[p.ids] = p.z
                for k, g in enumerate(p.solved):
                    a = avals(linked[g], p.imports[k], p.exports[k])
                    new[int(g)] = [(float(p.cost[k]), a)]
                    plans[int(g)] = a
            for b in busy:
                b.priced(z, new, plans)
            stats.columns = sum(b.master.num_plans for b in blocks if b.master is not None)
        return rounds

    def _plan(
        self,
        alone: dict[str, Alone],
        parts: dict[str, Part],
        feeder_rows: list[Coupling],
        event_rows: list[Coupling],
        upper: float,
        lower: float,
        gap: float,
        iterations: int,
    ) -> PortfolioPlan:
        problems, stats = self.problems, self.stats
        status = SolverStatus.OPTIMAL if gap <= self.s.gap + 1e-12 else SolverStatus.TIME_LIMIT
        seconds = time.perf_counter() - self.started
        # the monolithic program's size: the sites', a slack per coupling row, P and its rows
        peak_size = len(self.index) if self.price > 0 else 0
        num_cols = (
            sum(a.num_cols for a in alone.values())
            + sum(len(c.steps) for c in feeder_rows + event_rows)
            + (1 if peak_size else 0)
        )
        num_rows = (
            sum(a.num_rows for a in alone.values()) + sum(len(c.steps) for c in feeder_rows + event_rows) + peak_size
        )
        result = SolveResult(
            status=status,
            objective=upper,
            bound=lower,
            gap=gap,
            build_seconds=stats.load_seconds,
            solve_seconds=stats.master_seconds + stats.pricing_seconds,
            extract_seconds=stats.finish_seconds,
            highs_seconds=stats.master_seconds + stats.pricing_seconds,
            num_cols=num_cols,
            num_rows=num_rows,
            num_nonzeros=0,
            num_integer=0,
            engine="highs-dantzig-wolfe",
            solver_version=VERSION,
            time_limit_seconds=self.s.time_limit_seconds,
            mip_rel_gap=self.s.gap,
            stages=(StageOutcome(COST, status, upper, lower, gap, seconds),),
        )
        frames: dict[str, pd.DataFrame] = {}
        for sid in problems:
            schedule = parts[sid].schedule
            assert schedule is not None  # _run fell back to the monolithic solve for any site without one
            frames[sid] = schedule
        caps = tuple(check_cap(f.feeder_id, c, frames) for f, c in zip(self.feeders, feeder_rows, strict=True))
        targets = tuple(check_target(e, c, frames) for e, c in zip(self.events, event_rows, strict=True))
        shares = import_shares(problems, feeder_rows, frames)
        sites = {}
        for sid, problem in problems.items():
            part = parts[sid]
            imp, exp = frames[sid][GRID_IMPORT].to_numpy(), frames[sid][GRID_EXPORT].to_numpy()
            relaxation = relaxation_from(problem, imp, exp, part.shortfall, part.stages, schedule=frames[sid])
            sites[sid] = SitePlan(
                site_id=sid,
                plan=Plan(frames[sid], result, relaxation, part.assignment),
                alone_cost=alone[sid].alone_cost,
                coupled_cost=part.coupled_cost,
                import_share_kw=shares[sid],
                encoded=part.encoded,
            )
        relaxed = tuple(t for t in (OVER, SHORTFALL, BREACH) if any(t in p.stages for p in parts.values()))
        peak = portfolio_peak(frames)
        alone_peak = portfolio_peak(
            {sid: pd.DataFrame({GRID_IMPORT: a.grid_import, GRID_EXPORT: a.grid_export}) for sid, a in alone.items()}
        )
        objective = float(sum(s.coupled_cost for s in sites.values())) + self.price * peak
        alone_objective = float(sum(s.alone_cost for s in sites.values())) + self.price * alone_peak
        return PortfolioPlan(
            index=self.index,
            sites=sites,
            objective=objective,
            alone_objective=alone_objective,
            coupling_cost=objective - alone_objective,
            feeders=caps,
            events=targets,
            relaxed=relaxed,
            status=str(status),
            seconds=seconds,
            num_cols=num_cols,
            num_rows=num_rows,
            method=METHOD,
            bound=lower,
            gap=gap,
            iterations=iterations,
            peak_kw=peak,
            peak_charge=self.price * peak,
            alone_peak_kw=alone_peak,
        )


def _worst_violation(couplings: list[Coupling], frames: dict[str, pd.DataFrame]) -> float:
    """The largest excess (kW) of any coupling row on the extracted schedules."""
    worst = 0.0
    for c in couplings:
        total = np.zeros(len(c.steps))
        for sid in c.site_ids:
            total += frames[sid][GRID_IMPORT].to_numpy()[c.steps]
            if c.net:
                total -= frames[sid][GRID_EXPORT].to_numpy()[c.steps]
        worst = max(worst, float(np.max(total - c.bound, initial=0.0)))
    return worst


__all__ = [
    "FALLBACK",
    "METHOD",
    "CapCheck",
    "DecompositionSolver",
    "SiteBatch",
    "SolveStats",
    "TargetCheck",
    "connect_ray",
]
