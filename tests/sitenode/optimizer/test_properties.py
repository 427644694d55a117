"""Properties of every optimized schedule on random small sites (hypothesis).

Every physical rule holds at every step, and no feasible alternative beats the optimum in
the lexicographic order of BUNDLE.md: over-limit, energy not served weighted by priority
(EV shortfall, flexible loads below their floors, the final SOC below its target: see
`formulation`), breach within the margin, then the weighted objective.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from conftest import make_problem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitenode.baselines import BASELINES
from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.formulation import shortfall_weights
from sitenode.optimizer.solve import Plan, floor_shortfalls, optimize_site
from sitenode.schedule import (
    CURTAIL,
    GRID_EXPORT,
    GRID_IMPORT,
    PV,
    SOC,
    balance_residual,
    check_schedule,
    ev_column,
    flex_column,
    new_schedule,
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Key = tuple[float, float, float, float]


def money(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi).map(lambda x: round(x, 3))


def kws(n: int, hi: float) -> st.SearchStrategy[list[float]]:
    return st.lists(st.floats(0, hi).map(lambda x: round(x, 1)), min_size=n, max_size=n)


@st.composite
def sites(draw: st.DrawFn) -> SiteProblem:
    """A small site with any mix of assets, limits, tariffs and EV sessions."""
    steps = draw(st.integers(2, 8))
    step_minutes = draw(st.sampled_from([30, 60]))
    site: dict[str, Any] = {"grid": {}, "pv": {"curtailable": draw(st.booleans())}}
    if draw(st.booleans()):
        site["grid"] = {
            "import_limit_kw": draw(st.floats(10, 60).map(round)),
            "breach_margin": draw(st.sampled_from([0.0, 0.1, 0.3])),
        }
    if draw(st.booleans()):
        site["grid"]["export_limit_kw"] = draw(st.floats(0, 20).map(round))
    if draw(st.booleans()):
        cap = draw(st.floats(5, 50).map(round))
        lo, hi = round(cap * draw(st.floats(0, 0.2)), 2), round(cap * draw(st.floats(0.8, 1)), 2)
        initial = round(draw(st.floats(lo, hi)), 2)
        battery = site["battery"] = {
            "capacity_kwh": cap,
            "soc_min_kwh": lo,
            "soc_max_kwh": hi,
            "soc_initial_kwh": initial,
            "max_charge_kw": draw(st.floats(1, 30).map(round)),
            "max_discharge_kw": draw(st.floats(1, 30).map(round)),
            "charge_efficiency": draw(money(0.8, 1)),
            "discharge_efficiency": draw(money(0.8, 1)),
            "degradation_cost_per_kwh": draw(money(0, 0.05)),
        }
        # reachable by idling, or (sometimes) only by charging, which a tight limit may not allow
        by_charging = min(
            hi, initial + battery["max_charge_kw"] * battery["charge_efficiency"] * steps * step_minutes / 60
        )
        top = initial if draw(st.booleans()) else math.floor(by_charging * 100) / 100
        battery["soc_final_min_kwh"] = round(draw(st.floats(lo, max(lo, top))), 2) if top > lo else lo
    if draw(st.booleans()):
        site["flexible_loads"] = [
            {
                "id": "miner",
                "min_kw": draw(st.sampled_from([0, 1, 2])),
                "max_kw": draw(st.floats(2, 20).map(round)),
                "value_per_kwh": draw(money(0, 0.4)),
                "priority": draw(st.integers(1, 10)),
            }
        ]
    chargers = [{"id": f"ac{i}", "max_kw": 11, "kind": "ac"} for i in range(draw(st.integers(0, 2)))]
    chargers += [{"id": f"dc{i}", "max_kw": 40, "kind": "dc"} for i in range(draw(st.integers(0, 2)))]
    site["chargers"] = chargers
    sessions = []
    for i in range(draw(st.integers(0, 4))):
        arrival = draw(st.integers(0, steps - 1))
        session = {
            "session_id": f"s{i}",
            "arrival": arrival,
            "departure": draw(st.integers(arrival + 1, steps + 2)),
            "energy_kwh": draw(st.floats(0, 60).map(round)),
            "max_kw": draw(st.sampled_from([7.0, 11.0, 22.0, 50.0])),
            "priority": draw(st.integers(1, 3)),
        }
        if chargers and draw(st.booleans()):
            session["charger_id"] = draw(st.sampled_from([c["id"] for c in chargers]))
        sessions.append(session)
    run: dict[str, Any] = {
        "objective": {"carbon": draw(st.sampled_from([0.0, 0.1])), "peak": draw(st.sampled_from([0.0, 0.5]))}
    }
    if draw(st.booleans()):
        classes = ("fleet", "facility", "battery", "mining", "export")
        run["priorities"] = dict(zip(classes, draw(st.permutations(range(1, 6))), strict=True))
    if draw(st.booleans()):
        first = draw(st.integers(0, steps - 1))
        window = {
            "start_time": f"{first * step_minutes // 60:02d}:{first * step_minutes % 60:02d}",
            "end_time": "23:59",
        }
        run["tariff"] = {"demand_charges": [{"rate_per_kw": draw(money(0, 10)), "schedule": window}]}
    return make_problem(
        site,
        run,
        load=draw(kws(steps, 30)),
        pv=draw(kws(steps, 30)),
        sessions=sessions,
        step_minutes=step_minutes,
        prices=draw(st.lists(money(0, 0.4), min_size=steps, max_size=steps)),
        export_prices=draw(st.lists(money(-0.05, 0.2), min_size=steps, max_size=steps)),
        carbon_kg_per_kwh=draw(st.lists(money(0, 0.5), min_size=steps, max_size=steps)),
    )


def unserved(p: SiteProblem, frame: pd.DataFrame) -> float:
    """Energy not served, weighted by priority: the "shortfall" term read off a schedule."""
    by_session, by_load, battery = shortfall_weights(p)
    dt = p.dt_h
    total = sum(
        max(0.0, w.need_kwh - frame[ev_column(w.session_id)].sum() * dt) * by_session[w.session_id] for w in p.sessions
    )
    loads, soc_short = floor_shortfalls(p, frame)
    return total + sum(kwh * by_load[i] for i, kwh in loads.items()) + soc_short * battery


def lexicographic_key(p: SiteProblem, frame: pd.DataFrame) -> Key:
    """(over-limit kWh, energy not served weighted by priority, breach kWh within the margin, objective)."""
    dt, limit, margin = p.dt_h, p.import_limit_kw, p.site.grid.breach_margin
    imp, exp = frame[GRID_IMPORT].to_numpy(), frame[GRID_EXPORT].to_numpy()
    finite = np.isfinite(limit)
    safe = np.where(finite, limit, 0.0)
    over = np.where(finite, np.clip(imp - safe * (1 + margin), 0, None), 0.0).sum() * dt
    over += np.clip(exp - p.export_limit_kw, 0, None).sum() * dt
    shortfall = unserved(p, frame)
    breach = np.where(finite, np.clip(np.minimum(imp - safe, safe * margin), 0, None), 0.0).sum() * dt
    return float(over), float(shortfall), float(breach), compute_metrics(p, frame).weighted_objective(p)


def not_worse(opt: Key, other: Key, gap: float) -> bool:
    """Lexicographically opt <= other, with the solver's tolerance and a MIP's gap."""
    for a, b in zip(opt, other, strict=True):
        tol = (1e-6 + gap) * max(1.0, abs(b))
        if a < b - tol:
            return True
        if a > b + tol:
            return False
    return True


def mip_gap(plan: Plan) -> float:
    return max((s.gap for s in plan.result.stages), default=0.0) if plan.result.num_integer else 0.0


def full_power_on_arrival(p: SiteProblem) -> tuple[pd.DataFrame, dict[str, str]]:
    """A simple feasible plan: battery idle, each EV at full power from arrival until full on
    the first free charger, flexible loads on when their value beats the price, the grid
    settling the rest (PV curtailed where it may be and export would not pay or not fit)."""
    s = new_schedule(p)
    site, dt = p.site, p.dt_h
    named = {w.session.charger_id for w in p.sessions if w.session.charger_id}
    rating = {c.id: c.max_kw for c in site.chargers}
    busy_until = {c.id: 0 for c in site.chargers if c.id not in named}  # pools never use named chargers
    drawn = {c.id: np.zeros(p.steps) for c in site.chargers}
    assignment: dict[str, str] = {}
    for w in sorted(p.sessions, key=lambda w: w.first):
        charger = w.session.charger_id
        if charger is None and site.chargers:
            charger = next((c for c, t in busy_until.items() if t <= w.first), None)
            if charger is None:
                continue
            busy_until[charger] = w.stop
        ev, left = np.zeros(p.steps), w.cap_kwh
        for t in range(w.first, w.stop):
            room = rating[charger] - drawn[charger][t] if charger else w.max_kw
            ev[t] = max(0.0, min(w.max_kw, room, left / dt))
            left -= ev[t] * dt
        if charger:
            drawn[charger] += ev
            assignment[w.session_id] = charger
        s[ev_column(w.session_id)] = ev
    for load in site.flexible_loads:
        s[f"flex_{load.id}_kw"] = np.where(load.value_per_kwh > p.import_price, load.max_kw, load.min_kw)
    net = balance_residual(s)  # demand minus supply
    s[GRID_IMPORT] = np.clip(net, 0, None)
    surplus = np.clip(-net, 0, None)
    if site.pv is not None and site.pv.curtailable:
        keep = np.where(p.export_price < 0, 0.0, np.minimum(surplus, p.export_limit_kw))
        s[CURTAIL] = np.minimum(surplus - keep, s[PV].to_numpy())
    s[GRID_EXPORT] = surplus - s[CURTAIL].to_numpy()
    return s, assignment


@PROPERTY
@given(sites())
def test_the_optimum_keeps_every_rule_and_nothing_simple_beats_it(problem: SiteProblem) -> None:
    plan = optimize_site(problem)
    assert plan.result.status.has_solution
    if plan.result.num_integer:
        assert plan.result.gap <= problem.solver.mip_rel_gap + 1e-9
    # limits hold, with the margin, unless fixed load or uncurtailable PV forced them over;
    # floors and the final SOC target, unless the plan says it gave them way
    within = plan.relaxation.over_limit_kwh < 1e-9
    kept = plan.relaxation.flex_shortfall_kwh + plan.relaxation.soc_shortfall_kwh == 0
    assert check_schedule(problem, plan.schedule, limits=within, assignment=plan.charger_assignment, floors=kept) == []
    opt = lexicographic_key(problem, plan.schedule)

    alternative, assignment = full_power_on_arrival(problem)  # the battery idles: it may miss its final target
    assert check_schedule(problem, alternative, limits=False, assignment=assignment, floors=False) == []
    assert not_worse(opt, lexicographic_key(problem, alternative), mip_gap(plan)), (
        opt,
        lexicographic_key(problem, alternative),
    )


@PROPERTY
@given(sites())
def test_no_baseline_that_keeps_the_limits_beats_the_optimum(problem: SiteProblem) -> None:
    plan = optimize_site(problem)
    opt = lexicographic_key(problem, plan.schedule)
    for name, baseline in BASELINES.items():
        frame = baseline(problem)
        assert check_schedule(problem, frame, limits=False) == [], name  # baselines may ignore limits, nothing else
        if check_schedule(problem, frame) == []:
            other = lexicographic_key(problem, frame)
            assert not_worse(opt, other, mip_gap(plan)), (name, opt, other)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites())
def test_the_relaxation_report_matches_the_schedule(problem: SiteProblem) -> None:
    plan = optimize_site(problem)
    over, _, breach, _ = lexicographic_key(problem, plan.schedule)
    # HiGHS keeps each row to 1e-7: summed over a horizon, kWh agree to 1e-6 relative, not absolute
    assert abs(plan.relaxation.over_limit_kwh - over) < 1e-6 * max(1.0, over)
    assert abs(plan.relaxation.breach_kwh - breach) < 1e-6 * max(1.0, breach)
    delivered = {w.session_id: plan.schedule[ev_column(w.session_id)].sum() * problem.dt_h for w in problem.sessions}
    for w in problem.sessions:
        expected = max(0.0, w.need_kwh - delivered[w.session_id])
        assert abs(plan.relaxation.shortfall_by_session[w.session_id] - expected) < 1e-6
    for load in problem.site.flexible_loads:
        below = np.clip(load.min_kw - plan.schedule[flex_column(load.id)].to_numpy(), 0, None).sum() * problem.dt_h
        assert abs(plan.relaxation.flex_shortfall_by_load[load.id] - below) < 1e-6
    assert abs(plan.relaxation.flex_shortfall_kwh - sum(plan.relaxation.flex_shortfall_by_load.values())) < 1e-9
    if problem.site.battery is not None:
        target = max(problem.site.battery.soc_min_kwh, problem.soc_final_min_kwh)
        assert abs(plan.relaxation.soc_shortfall_kwh - max(0.0, target - plan.schedule[SOC].iloc[-1])) < 1e-6
    else:
        assert plan.relaxation.soc_shortfall_kwh == 0
    # metrics' breach_kwh counts all import above the limit, within the margin or beyond it
    export_over = float(
        np.clip(plan.schedule[GRID_EXPORT].to_numpy() - problem.export_limit_kw, 0, None).sum() * problem.dt_h
    )
    assert abs(compute_metrics(problem, plan.schedule).breach_kwh - (breach + over - export_over)) < 1e-5
    if not plan.relaxation.relaxed:
        assert plan.relaxation.ev_shortfall_kwh < 1e-6 and breach < 1e-6 and over < 1e-6
        assert plan.relaxation.flex_shortfall_kwh < 1e-6 and plan.relaxation.soc_shortfall_kwh < 1e-6
