"""A site's linear program, built straight into arrays (see `lp.LinearProgram`).

Variables per step t (all kW, non-negative, named as the schedule's columns):
grid import and export, battery charge, discharge and SOC (kWh, end of step), PV
curtailment, each flexible load, each EV session on each charger pool it may use.
Rows per step: the energy balance

    load + Σev + Σflex + charge + export = (pv − curtail) + discharge + import

the SOC recursion, import/export limits, export at most what the site generates
(PV used plus battery discharge), circuit and charger limits, demand-charge epigraphs.
Slack families make every plan feasible and are priced only in their own named terms,
never in "cost":

* ``over``      import or export beyond the limit *and* its margin (physically needed
                only when fixed load alone exceeds the connection, or uncurtailable PV
                the export limit),
* ``shortfall`` energy not served, weighted by priority (below),
* ``breach``    import above the limit, within `breach_margin`.

`lexicographic.solve_lexicographic` minimizes them in that order, then "cost". Its
first attempt holds every slack at zero (`SiteColumns.slacks`), so a site that can serve
everything gets exactly the plan it would get without them: priorities only decide who
gives way when the site cannot serve every consumer.

Energy not served, weighted by priority (Module 11's consumer priorities,
`run_config.priorities`, 1 most important). A class of priority p weighs
W(p) = 10 ** (1 − p) per kWh (`class_weight`: 1 → 1, 2 → 0.1, 3 → 0.01, 4 → 0.001,
5 → 0.0001), so a class is worth ten times the next:

* fleet    EV energy short of a session's need, ``shortfall[session]`` (kWh), weighted
           W(priorities.fleet) / session.priority: the session's own priority refines
           within the class. With fleet first (the default) that is exactly the
           1/priority EV shortfall weighed before priorities reached the optimizer;
* mining   each flexible load's `min_kw` is a floor the plan may go below by
           ``flex_shortfall[load][t]`` (kW, at most min_kw; only loads with min_kw > 0
           have it), weighted W(priorities.mining) / load.priority per kWh: the load's
           own priority (1..10, default 4) refines within the class the same way;
* battery  the final SOC target max(soc_min_kwh, soc_final_min_kwh) may be missed by
           ``soc_shortfall`` (kWh, at most the target above soc_min_kwh), weighted
           W(priorities.battery). `soc_min_kwh` stays a hard bound at every step: it is
           the battery's own limit (and backup reserve); an idle battery always keeps it,
           so it never makes a plan infeasible and is nothing to trade;
* facility fixed load cannot fall short: it is served, if need be, by going over the
           limit, which the "over" stage (first, physically forced) decides; its priority
           cannot reorder that;
* export   is never owed, so nothing can fall short of it.

With the defaults (fleet 1, battery 3, mining 4), 1 kWh for a priority-1 car weighs as
much as 100 kWh of the battery's final target and 4 000 kWh of a priority-4 miner's floor.
This is a weighting, not a strict lexicographic order between classes: a large enough
amount of a lower class outweighs a small one of a higher, and the session and load
priorities make classes overlap. A strict order would need one stage per class, ordered
per site; the portfolio's coupled model (`portfolio.coupled`) minimizes this one term
summed over sites whose orders differ, which a weighted sum with one scale for every site
expresses and a per-site stage order cannot.

Why 10 ** (1 − p) and not a scale with the bottom class at 1 (10 ** (5 − p)): the top
class keeps the weights EV shortfall always had, so a site without floors or a battery
target solves the program it solved before, coefficient for coefficient; at 10 000 per
kWh HiGHS's MIP (charger choice) has returned wrong "optimal" stages on random sites that
it solves right at this scale. The price is paid at the bottom, where HiGHS's absolute
tolerances (1e-7) read as 1e-7 / w kWh in a class weighing w. Two things keep that from
becoming a trade against cost (see `solve`): once the stage is solved, the slacks of each
weight are held at what the stage's plan gives them, not only the weighted sum
(`DirectStages.cap`); and the stage of a MIP is polished with the charger choice held
(`polish_shortfall`), or the MIP gap, relative to the whole sum, would let the top class
hide a lower class's shortfall.

The stage keeps its name, "shortfall" (the portfolio prices slacks by term name). The
breach margin comes after it, so the margin is used before anyone falls short — for a
mining floor or a battery target as for a car, as when floors and targets were hard
constraints (then they could even force "over"; now they give way instead).

Charger choice (the fleet charge scheduler's MIP): sessions without a charger pick
one *pool* of identical chargers (same kind, rating and circuits) for their whole
stay, a binary per session and pool. Identical chargers are interchangeable, so
counting sessions per pool at every arrival (the moments where an interval graph's
cliques peak, in real arrival and departure times: see `present_at_arrivals`) is enough
for a charger-by-charger assignment to exist; one binary per charger would only make
the solver search symmetric copies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sitenode.model.problem import SessionWindow, SiteProblem
from sitenode.optimizer.lexicographic import BREACH, COST, OVER, SHORTFALL
from sitenode.optimizer.lp import INF, LinearProgram


@dataclass(frozen=True)
class Pool:
    """Identical, interchangeable chargers that no session names explicitly."""

    key: str
    kind: str
    max_kw: float
    charger_ids: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    """EV power columns of one session on one pool or charger, for steps first..first+len-1."""

    session_id: str
    first: int
    cols: np.ndarray
    upper_kw: float
    pool: str | None = None  # None: a named charger, or a site without chargers


def class_weight(priority: int) -> float:
    """Weight per kWh not served of a consumer class of `priority` (1 most important)."""
    return 10.0 ** (1 - priority)


def shortfall_weights(problem: SiteProblem) -> tuple[dict[str, float], dict[str, float], float]:
    """Per kWh not served: per session id, per flexible load id, and of the final SOC target.

    Both engines price the "shortfall" term with exactly these numbers (see the module doc).
    """
    pr = problem.priorities
    sessions = {w.session_id: class_weight(pr.fleet) / w.session.priority for w in problem.sessions}
    loads = {f.id: class_weight(pr.mining) / f.priority for f in problem.site.flexible_loads}
    return sessions, loads, class_weight(pr.battery)


@dataclass(eq=False)
class SiteColumns:
    """Where a site's variables sit in the program: what extraction and coupling need."""

    problem: SiteProblem
    grid_import: np.ndarray
    grid_export: np.ndarray
    breach: np.ndarray
    over: np.ndarray
    charge: np.ndarray | None = None
    discharge: np.ndarray | None = None
    soc: np.ndarray | None = None
    curtail: np.ndarray | None = None
    flex: dict[str, np.ndarray] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    shortfall: dict[str, int] = field(default_factory=dict)
    choice: dict[str, dict[str, int]] = field(default_factory=dict)  # session -> pool -> binary
    pools: dict[str, Pool] = field(default_factory=dict)
    # load id -> per step, kW below its min_kw (only loads with min_kw > 0)
    flex_shortfall: dict[str, np.ndarray] = field(default_factory=dict)
    # kWh below the final SOC target: one column, or none without a target above soc_min
    soc_shortfall: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def slacks(self) -> np.ndarray:
        """Every slack column: what the first, slack-free attempt holds at zero."""
        short = np.fromiter(self.shortfall.values(), dtype=np.int64, count=len(self.shortfall))
        return np.concatenate(
            [self.over, self.breach, short, *self.flex_shortfall.values(), self.soc_shortfall]
        ).astype(np.int64)


def charger_pools(problem: SiteProblem) -> dict[str, Pool]:
    site = problem.site
    named = {w.session.charger_id for w in problem.sessions if w.session.charger_id}
    leaves = site.circuit_leaves()
    groups: dict[tuple[str, float, frozenset[str]], list[str]] = defaultdict(list)
    for c in site.chargers:
        if c.id not in named:
            circuits = frozenset(cid for cid, members in leaves.items() if c.id in members)
            groups[(c.kind, c.max_kw, circuits)].append(c.id)
    return {
        f"{kind}-{kw:g}kw-{i}": Pool(f"{kind}-{kw:g}kw-{i}", kind, kw, tuple(ids))
        for i, ((kind, kw, _), ids) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0]))
    }


def add_site(lp: LinearProgram, problem: SiteProblem, price_adjust: np.ndarray | None = None) -> SiteColumns:
    """Add one site's variables, rows and named costs to `lp`.

    `price_adjust` (currency/kWh per step) is added to the import price in "cost": the
    hook a coordinating portfolio uses to price its coupling rows.
    """
    p, site, T, dt = problem, problem.site, problem.steps, problem.dt_h
    steps = np.arange(T)
    limit = p.import_limit_kw
    finite = np.isfinite(limit)
    margin = site.grid.breach_margin

    imp = lp.add_cols(T)
    exp = lp.add_cols(T)
    breach = lp.add_cols(T, upper=np.where(finite, margin * np.where(finite, limit, 0.0), 0.0))
    over_imp = lp.add_cols(T, upper=np.where(finite, INF, 0.0))
    cols = SiteColumns(p, imp, exp, breach, over_imp)
    # balance terms, appended to as assets are added: (step, column, sign)
    balance: list[tuple[np.ndarray, np.ndarray, float]] = [(steps, imp, 1.0), (steps, exp, -1.0)]

    lim_rows = np.flatnonzero(finite)
    if len(lim_rows):
        local = np.arange(len(lim_rows))
        lp.add_rows(
            len(lim_rows),
            [(local, imp[lim_rows], 1.0), (local, breach[lim_rows], -1.0), (local, over_imp[lim_rows], -1.0)],
            upper=limit[lim_rows],
        )
    if np.isfinite(p.export_limit_kw):
        over_exp = lp.add_cols(T)
        lp.add_rows(T, [(steps, exp, 1.0), (steps, over_exp, -1.0)], upper=p.export_limit_kw)
        cols.over = np.concatenate([over_imp, over_exp])
    lp.add_cost(OVER, cols.over, dt)
    lp.add_cost(BREACH, breach, dt)

    w = p.objective
    import_cost = (w.cost * p.import_price + w.carbon * p.carbon_kg_per_kwh) * dt
    if price_adjust is not None:
        import_cost = import_cost + np.asarray(price_adjust, dtype=float) * dt
    lp.add_cost(COST, imp, import_cost)
    lp.add_cost(COST, exp, -w.cost * p.export_price * dt)

    if site.battery is not None:
        _add_battery(lp, p, cols, balance)
    if site.pv is not None and site.pv.curtailable:
        cols.curtail = lp.add_cols(T, upper=p.pv_kw)
        balance.append((steps, cols.curtail, -1.0))
    _, load_weight, _ = shortfall_weights(p)
    for load in site.flexible_loads:
        f = lp.add_cols(T, upper=load.max_kw)
        cols.flex[load.id] = f
        balance.append((steps, f, -1.0))
        lp.add_cost(COST, f, -w.cost * load.value_per_kwh * dt)
        if load.min_kw > 0:
            # flex + short >= min_kw: the floor, relaxable in the "shortfall" stage
            short = lp.add_cols(T, upper=load.min_kw)
            cols.flex_shortfall[load.id] = short
            lp.add_rows(T, [(steps, f, 1.0), (steps, short, 1.0)], lower=load.min_kw)
            lp.add_cost(SHORTFALL, short, load_weight[load.id] * dt)
    _add_sessions(lp, p, cols)
    for seg in cols.segments:
        balance.append((seg.first + np.arange(len(seg.cols)), seg.cols, -1.0))
    lp.add_rows(T, balance, lower=p.load_kw - p.pv_kw, upper=p.load_kw - p.pv_kw)
    # One meter cannot pass imported power straight back out: export only what the site
    # makes. Without it an export price above the import price makes the plan unbounded.
    own = [(steps, exp, 1.0)]
    if cols.discharge is not None:
        own.append((steps, cols.discharge, -1.0))
    if cols.curtail is not None:
        own.append((steps, cols.curtail, 1.0))
    lp.add_rows(T, own, upper=p.pv_kw)
    _add_circuits(lp, p, cols)

    for dw in p.demand_windows:
        where = np.flatnonzero(dw.mask)
        if dw.rate_per_kw * w.cost <= 0 or not len(where):
            continue
        peak = lp.add_cols(1, lower=dw.floor_kw)
        lp.add_rows(
            len(where),
            [(np.arange(len(where)), imp[where], 1.0), (np.arange(len(where)), np.repeat(peak, len(where)), -1.0)],
            upper=0.0,
        )
        lp.add_cost(COST, peak, w.cost * dw.rate_per_kw)
    if w.peak > 0:
        peak = lp.add_cols(1)
        lp.add_rows(T, [(steps, imp, 1.0), (steps, np.repeat(peak, T), -1.0)], upper=0.0)
        lp.add_cost(COST, peak, w.peak)
    return cols


def _add_battery(lp: LinearProgram, p: SiteProblem, cols: SiteColumns, balance: list) -> None:
    b = p.site.battery
    assert b is not None
    T, dt, steps = p.steps, p.dt_h, np.arange(p.steps)
    ch = lp.add_cols(T, upper=b.max_charge_kw if b.max_charge_kw is not None else INF)
    dis = lp.add_cols(T, upper=b.max_discharge_kw if b.max_discharge_kw is not None else INF)
    soc = lp.add_cols(T, lower=b.soc_min_kwh, upper=b.soc_max)
    target = max(b.soc_min_kwh, p.soc_final_min_kwh)
    if target > b.soc_min_kwh:
        # soc[T-1] + short >= target: the final SOC target, relaxable in the "shortfall" stage
        short = lp.add_cols(1, upper=target - b.soc_min_kwh)
        lp.add_rows(
            1, [(np.zeros(1, dtype=np.int64), soc[-1:], 1.0), (np.zeros(1, dtype=np.int64), short, 1.0)], lower=target
        )
        lp.add_cost(SHORTFALL, short, shortfall_weights(p)[2])
        cols.soc_shortfall = short
    # soc[t] - soc[t-1] - ηc·dt·ch[t] + dt/ηd·dis[t] = 0, with soc[-1] the initial SOC
    rhs = np.zeros(T)
    rhs[0] = p.soc_initial_kwh
    lp.add_rows(
        T,
        [
            (steps, soc, 1.0),
            (steps[1:], soc[:-1], -1.0),
            (steps, ch, -b.charge_efficiency * dt),
            (steps, dis, dt / b.discharge_efficiency),
        ],
        lower=rhs,
        upper=rhs,
    )
    balance += [(steps, dis, 1.0), (steps, ch, -1.0)]
    if b.degradation_cost_per_kwh > 0:
        lp.add_cost(COST, np.concatenate([ch, dis]), p.objective.cost * b.degradation_cost_per_kwh * dt)
    cols.charge, cols.discharge, cols.soc = ch, dis, soc


def present_at_arrivals(windows: list[SessionWindow]) -> list[list[SessionWindow]]:
    """At each arrival, the sessions that hold a charger then (those that may charge at all).

    A car holds its charger from arrival to departure, not only in the whole steps it
    charges in: one that leaves at 01:30 and one that arrives at 01:15 never share a step
    of an hourly plan, yet cannot share a plug.
    """
    live = [w for w in windows if w.stop > w.first]
    arrivals = sorted({w.session.arrival for w in live})
    return [[w for w in live if w.session.arrival <= t < w.session.departure] for t in arrivals]


def max_concurrency(windows: list[SessionWindow], T: int) -> int:
    """The most sessions holding chargers at once (`T`, the step count, is no longer needed)."""
    return max((len(present) for present in present_at_arrivals(windows)), default=0)


def _add_sessions(lp: LinearProgram, p: SiteProblem, cols: SiteColumns) -> None:
    dt = p.dt_h
    pooled = [w for w in p.sessions if w.session.charger_id is None and p.site.chargers]
    pools = charger_pools(p) if pooled else {}
    cols.pools = pools
    # one pool that never holds more sessions than chargers needs no binaries
    use_binaries = len(pools) > 1 or any(
        max_concurrency(pooled, p.steps) > len(pool.charger_ids) for pool in pools.values()
    )

    session_weight, _, _ = shortfall_weights(p)
    for w in p.sessions:
        n = w.stop - w.first
        short = int(lp.add_cols(1, upper=w.need_kwh)[0])
        cols.shortfall[w.session_id] = short
        lp.add_cost(SHORTFALL, np.array([short]), session_weight[w.session_id])
        segs: list[Segment] = []
        if n > 0 and (w.session.charger_id is not None or not p.site.chargers):
            segs.append(Segment(w.session_id, w.first, lp.add_cols(n, upper=w.max_kw), w.max_kw))
        elif n > 0:
            for key, pool in pools.items():
                ub = min(w.max_kw, pool.max_kw)
                segs.append(Segment(w.session_id, w.first, lp.add_cols(n, upper=ub), ub, key))
        if use_binaries and segs and segs[0].pool is not None:
            choice: dict[str, int] = {}
            for seg in segs:
                assert seg.pool is not None  # a pooled session has a segment per pool, each naming it
                y = int(lp.add_cols(1, upper=1.0, integer=True)[0])
                choice[seg.pool] = y
                local = np.arange(n)
                lp.add_rows(n, [(local, seg.cols, 1.0), (local, np.full(n, y), -seg.upper_kw)], upper=0.0)
            lp.add_rows(
                1,
                [(np.zeros(len(choice), dtype=np.int64), np.fromiter(choice.values(), dtype=np.int64), 1.0)],
                upper=1.0,
            )
            cols.choice[w.session_id] = choice
        cols.segments += segs
        # need <= Σ ev·dt + shortfall, and Σ ev·dt <= cap
        terms = [(np.zeros(len(s.cols), dtype=np.int64), s.cols, dt) for s in segs]
        if w.need_kwh >= w.cap_kwh:
            lp.add_rows(
                1, [*terms, (np.zeros(1, dtype=np.int64), np.array([short]), 1.0)], lower=w.need_kwh, upper=w.need_kwh
            )
        else:
            lp.add_rows(1, [*terms, (np.zeros(1, dtype=np.int64), np.array([short]), 1.0)], lower=w.need_kwh)
            if terms:
                lp.add_rows(1, terms, upper=w.cap_kwh)

    if use_binaries:
        cliques = present_at_arrivals(pooled)
        for key, pool in pools.items():
            rows, ys = [], []
            for r, present in enumerate(cliques):
                for w in present:
                    if key in cols.choice.get(w.session_id, {}):
                        rows.append(r)
                        ys.append(cols.choice[w.session_id][key])
            if rows:
                lp.add_rows(len(cliques), [(np.array(rows), np.array(ys), 1.0)], upper=float(len(pool.charger_ids)))

    by_charger: dict[str, list[Segment]] = defaultdict(list)
    charger_of = {w.session_id: w.session.charger_id for w in p.sessions}
    for seg in cols.segments:
        named = charger_of.get(seg.session_id)
        if seg.pool is None and named:
            by_charger[named].append(seg)
    for charger_id, segs in by_charger.items():
        charger = p.site.charger(charger_id)
        assert charger is not None
        if len(segs) > 1:
            cap_rows(lp, p.steps, segs, charger.max_kw)


def cap_rows(
    lp: LinearProgram, T: int, segs: list[Segment], cap_kw: float, extra: Sequence[tuple[np.ndarray, float]] = ()
) -> None:
    """Σ of the segments' power (plus per-step `extra` columns) <= cap_kw, where it can bind."""
    reach = np.zeros(T)
    for seg in segs:
        reach[seg.first : seg.first + len(seg.cols)] += seg.upper_kw
    for _cols, upper in extra:
        reach += upper
    binding = reach > cap_kw + 1e-9
    if not binding.any():
        return
    row_of = np.cumsum(binding) - 1
    terms = []
    for seg in segs:
        t = seg.first + np.arange(len(seg.cols))
        keep = binding[t]
        terms.append((row_of[t[keep]], seg.cols[keep], 1.0))
    for col_per_step, _ in extra:
        t = np.flatnonzero(binding)
        terms.append((row_of[t], col_per_step[t], 1.0))
    lp.add_rows(int(binding.sum()), terms, upper=cap_kw)


def _add_circuits(lp: LinearProgram, p: SiteProblem, cols: SiteColumns) -> None:
    site = p.site
    if not site.circuits:
        return
    leaves = site.circuit_leaves()
    charger_of = {w.session_id: w.session.charger_id for w in p.sessions}
    for circuit in site.circuits:
        members = leaves[circuit.id]
        segs = [
            s
            for s in cols.segments
            if (s.pool is None and charger_of.get(s.session_id) in members)
            or (s.pool is not None and set(cols.pools[s.pool].charger_ids) <= members)
        ]
        extra = [
            (cols.flex[m], next(f.max_kw for f in site.flexible_loads if f.id == m)) for m in members if m in cols.flex
        ]
        cap_rows(lp, p.steps, segs, circuit.max_kw, extra)
