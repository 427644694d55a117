"""Properties of every optimized schedule on random small sites (hypothesis).

Physical rules hold at every step, and the optimum is never beaten by a baseline in the
lexicographic order BUNDLE.md defines: over-limit, weighted EV shortfall, breach, then
the weighted objective.
"""

from __future__ import annotations

import numpy as np
from factories.problems import make_problem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitenode.baselines import BASELINES
from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import GRID_EXPORT, GRID_IMPORT, check_schedule, ev_column

kw = st.floats(0, 30, allow_nan=False).map(lambda x: round(x, 2))


@st.composite
def sites(draw: st.DrawFn) -> SiteProblem:
    steps = draw(st.integers(3, 10))
    site: dict = {"grid": {}}
    if draw(st.booleans()):
        site["grid"]["import_limit_kw"] = draw(st.floats(15, 80).map(lambda x: round(x, 1)))
        site["grid"]["breach_margin"] = draw(st.sampled_from([0.0, 0.1, 0.3]))
    if draw(st.booleans()):
        site["grid"]["export_limit_kw"] = draw(st.floats(0, 20).map(lambda x: round(x, 1)))
    if draw(st.booleans()):
        cap = draw(st.floats(5, 60).map(lambda x: round(x, 1)))
        site["battery"] = {
            "capacity_kwh": cap, "soc_initial_kwh": round(cap * draw(st.floats(0, 1)), 2),
            "max_charge_kw": draw(st.floats(1, 30)), "max_discharge_kw": draw(st.floats(1, 30)),
            "charge_efficiency": draw(st.floats(0.8, 1)), "discharge_efficiency": draw(st.floats(0.8, 1)),
            "degradation_cost_per_kwh": draw(st.floats(0, 0.05)),
        }
    site["pv"] = {"curtailable": draw(st.booleans())}
    if draw(st.booleans()):
        site["flexible_loads"] = [{"id": "miner", "min_kw": 0, "max_kw": draw(st.floats(1, 20)), "value_per_kwh": draw(st.floats(0, 0.4))}]
    n_ac, n_dc = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    chargers = [{"id": f"ac{i}", "max_kw": 11, "kind": "ac"} for i in range(n_ac)] + [{"id": f"dc{i}", "max_kw": 40, "kind": "dc"} for i in range(n_dc)]
    site["chargers"] = chargers
    sessions = []
    for i in range(draw(st.integers(0, 4))):
        a = draw(st.integers(0, steps - 1))
        d = draw(st.integers(a + 1, steps + 2))
        named = chargers and draw(st.booleans())
        sessions.append({"session_id": f"s{i}", "arrival": a, "departure": d, "energy_kwh": draw(st.floats(0, 60)),
                         "max_kw": draw(st.sampled_from([7.0, 11.0, 22.0, 50.0])), "priority": draw(st.integers(1, 3)),
                         **({"charger_id": draw(st.sampled_from([c["id"] for c in chargers]))} if named else {})})
    run: dict = {"objective": {"cost": 1.0, "carbon": draw(st.sampled_from([0.0, 0.1])), "peak": draw(st.sampled_from([0.0, 0.5]))}}
    if draw(st.booleans()):
        run["tariff"] = {"demand_charges": [{"rate_per_kw": draw(st.floats(0, 10)), "schedule": {"start_time": "02:00", "end_time": "05:59"}}]}
    return make_problem(site, load=draw(st.lists(kw, min_size=steps, max_size=steps)), pv=draw(st.lists(kw, min_size=steps, max_size=steps)),
                        prices=draw(st.lists(st.floats(0, 0.4), min_size=steps, max_size=steps)),
                        export_prices=draw(st.lists(st.floats(-0.05, 0.2), min_size=steps, max_size=steps)),
                        sessions=sessions, run=run, extra={"carbon_kg_per_kwh": [0.3] * steps})


def lexicographic_key(p: SiteProblem, frame) -> tuple[float, float, float, float]:
    dt, limit, margin = p.dt_h, p.import_limit_kw, p.site.grid.breach_margin
    imp, exp = frame[GRID_IMPORT].to_numpy(), frame[GRID_EXPORT].to_numpy()
    finite = np.isfinite(limit)
    safe = np.where(finite, limit, 0.0)
    over = np.where(finite, np.clip(imp - safe * (1 + margin), 0, None), 0.0).sum() * dt
    over += np.clip(exp - p.export_limit_kw, 0, None).sum() * dt
    shortfall = sum(max(0.0, w.need_kwh - frame[ev_column(w.session_id)].sum() * dt) / w.session.priority for w in p.sessions)
    breach = np.where(finite, np.clip(np.minimum(imp - safe, safe * margin), 0, None), 0.0).sum() * dt
    return over, shortfall, breach, compute_metrics(p, frame).weighted_objective(p)


def not_worse(opt: tuple, other: tuple, gap: float) -> bool:
    for a, b in zip(opt[:3], other[:3], strict=True):
        tol = 1e-5 * max(1.0, abs(b))
        if a < b - tol:
            return True
        if a > b + tol:
            return False
    return opt[3] <= other[3] + 1e-5 * max(1.0, abs(other[3])) + gap * max(1.0, abs(other[3]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites())
def test_optimum_is_physical_and_never_beaten_by_a_baseline(problem: SiteProblem) -> None:
    plan = optimize_site(problem)
    assert plan.result.status.has_solution
    assert check_schedule(problem, plan.schedule, limits=False) == []
    opt = lexicographic_key(problem, plan.schedule)
    assert opt[0] == np.float64(opt[0]) and opt[0] >= -1e-9
    gap = plan.result.gap if plan.result.num_integer else 0.0
    for name, baseline in BASELINES.items():
        frame = baseline(problem)
        assert check_schedule(problem, frame, limits=False) == [], name
        assert not_worse(opt, lexicographic_key(problem, frame), gap), (name, opt, lexicographic_key(problem, frame))


@settings(max_examples=25, deadline=None)
@given(sites())
def test_relaxation_report_matches_the_schedule(problem: SiteProblem) -> None:
    plan = optimize_site(problem)
    over, _, breach, _ = lexicographic_key(problem, plan.schedule)
    assert abs(plan.relaxation.over_limit_kwh - over) < 1e-6
    assert abs(plan.relaxation.breach_kwh - breach) < 1e-6
    # metrics' breach_kwh counts everything above the limit, within the margin or not
    above_export = max(0.0, float((plan.schedule[GRID_EXPORT] - problem.export_limit_kw).clip(lower=0).sum() * problem.dt_h))
    total = plan.relaxation.breach_kwh + plan.relaxation.over_limit_kwh - above_export
    assert abs(compute_metrics(problem, plan.schedule).breach_kwh - total) < 1e-5
    if not plan.relaxation.relaxed:
        assert plan.relaxation.ev_shortfall_kwh < 1e-6 and breach < 1e-6 and over < 1e-6
