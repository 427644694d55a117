"""The Pyomo formulation and the direct one agree on random sites (the hand-computed
cases in test_known_answers run on both engines too)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories.strategies import sites
from hypothesis import HealthCheck, given, settings

from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.formulation import shortfall_weights
from sitenode.optimizer.lexicographic import SHORTFALL
from sitenode.optimizer.pyomo_model import optimize_site_pyomo
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import check_schedule


def agree(problem: SiteProblem) -> None:
    direct, pyomo = optimize_site(problem), optimize_site_pyomo(problem)
    assert direct.result.status == pyomo.result.status
    for plan in (direct, pyomo):
        within = plan.relaxation.over_limit_kwh < 1e-9
        kept = plan.relaxation.flex_shortfall_kwh + plan.relaxation.soc_shortfall_kwh == 0
        assert (
            check_schedule(problem, plan.schedule, limits=within, assignment=plan.charger_assignment, floors=kept) == []
        )
    assert direct.relaxation.stages == pyomo.relaxation.stages
    # Energy not served is one weighted term (see formulation). The engines hold it, weight
    # by weight (solve.by_weight), to the caps' room (~1e-7, relative above 1, absolute below;
    # the direct engine's caps keep more), and a MIP's stage to its gap, where the engines may
    # pick different charger choices: bounded by moving `room` of weight into any class, a
    # class weighing w per kWh agrees to `room / w` kWh; the breach and over-limit amounts,
    # which a later stage may trade against the lightest class kWh for kWh, to that and
    # their own stage's gap.
    by_session, by_load, battery = shortfall_weights(problem)
    room = 5e-7
    for plan in (direct, pyomo):
        for s in plan.result.stages:
            if s.stage == SHORTFALL:
                room = max(room, 5e-7 * max(1.0, s.objective) + 2 * s.gap * s.objective)
    lightest = min([*by_session.values(), *by_load.values(), battery])
    for field, weights in (
        ("ev_shortfall_kwh", by_session),
        ("flex_shortfall_kwh", by_load),
        ("soc_shortfall_kwh", {"": battery}),
    ):
        tol = 1e-4 + room / min(weights.values(), default=1.0)
        assert getattr(direct.relaxation, field) == pytest.approx(getattr(pyomo.relaxation, field), abs=tol), field
    for field, stage in (("over_limit_kwh", "over"), ("breach_kwh", "breach")):
        gap = max(
            (s.gap * s.objective for p in (direct, pyomo) for s in p.result.stages if s.stage == stage), default=0.0
        )
        tol = 1e-4 + room / lightest + 2 * gap
        assert getattr(direct.relaxation, field) == pytest.approx(getattr(pyomo.relaxation, field), abs=tol), field
    a = compute_metrics(problem, direct.schedule).weighted_objective(problem)
    b = compute_metrics(problem, pyomo.schedule).weighted_objective(problem)
    gap = max(direct.result.gap, pyomo.result.gap, problem.solver.mip_rel_gap if direct.result.num_integer else 0.0)
    assert a == pytest.approx(b, rel=1e-4 + gap, abs=1e-4)
    assert direct.result.num_integer == pyomo.result.num_integer


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites(circuits=True))
def test_both_engines_agree(problem: SiteProblem) -> None:
    agree(problem)


def test_a_pyomo_solve_first_in_a_process_leaves_the_direct_engine_working() -> None:
    # HiGHS sizes one thread pool per process at its first run; a later run asking for another
    # thread count does not run at all. In a fresh process (a test worker's first test may be
    # a Pyomo one), a Pyomo solve first once left every direct solve after it "unknown".
    script = (
        "from conftest import make_problem\n"
        "from sitenode.optimizer.pyomo_model import optimize_site_pyomo\n"
        "from sitenode.optimizer.solve import optimize_site\n"
        "p = make_problem({'grid': {'import_limit_kw': 10}}, {}, load=[0, 0],"
        " sessions=[{'session_id': 'car', 'arrival': 0, 'departure': 2, 'energy_kwh': 30, 'max_kw': 22}])\n"
        "print(optimize_site_pyomo(p).result.status, optimize_site(p).result.status)\n"
    )
    tests = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    assert out.stdout.split() == ["optimal", "optimal"]
