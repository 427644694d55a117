"""The Pyomo formulation and the direct one agree on random sites and on hand cases."""

import pytest
from factories.problems import make_problem
from factories.strategies import sites
from hypothesis import HealthCheck, given, settings

from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.pyomo_model import optimize_site_pyomo
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import CHARGE, check_schedule


def agree(problem: SiteProblem) -> None:
    direct, pyomo = optimize_site(problem), optimize_site_pyomo(problem)
    assert direct.result.status == pyomo.result.status
    assert check_schedule(problem, direct.schedule, limits=False) == []
    assert check_schedule(problem, pyomo.schedule, limits=False) == []
    for field in ("over_limit_kwh", "ev_shortfall_kwh", "breach_kwh"):
        assert getattr(direct.relaxation, field) == pytest.approx(getattr(pyomo.relaxation, field), abs=1e-4), field
    a = compute_metrics(problem, direct.schedule).weighted_objective(problem)
    b = compute_metrics(problem, pyomo.schedule).weighted_objective(problem)
    gap = max(direct.result.gap, pyomo.result.gap, problem.solver.mip_rel_gap if direct.result.num_integer else 0.0)
    assert a == pytest.approx(b, rel=1e-4 + gap, abs=1e-4)
    assert direct.result.num_integer == pyomo.result.num_integer


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites(circuits=True))
def test_both_engines_agree(problem: SiteProblem) -> None:
    agree(problem)


def test_hand_case_arbitrage_in_pyomo():
    battery = {"capacity_kwh": 10, "soc_initial_kwh": 0, "soc_final_min_kwh": 0, "max_charge_kw": 10, "max_discharge_kw": 10,
               "charge_efficiency": 0.9, "discharge_efficiency": 0.9}
    p = make_problem({"battery": battery}, load=[0, 0], prices=[0.1, 0.3], export_prices=[0.1, 0.3])
    plan = optimize_site_pyomo(p)
    assert plan.result.objective == pytest.approx(-1.43)
    assert plan.schedule[CHARGE].tolist() == pytest.approx([10, 0])


def test_hand_case_relaxation_in_pyomo():
    sessions = [
        {"session_id": "urgent", "arrival": 0, "departure": 2, "energy_kwh": 15, "max_kw": 10, "priority": 1},
        {"session_id": "later", "arrival": 0, "departure": 2, "energy_kwh": 15, "max_kw": 10, "priority": 2},
    ]
    p = make_problem({"grid": {"import_limit_kw": 10}}, load=[0, 0], sessions=sessions)
    plan = optimize_site_pyomo(p)
    assert plan.relaxation.shortfall_by_session == pytest.approx({"urgent": 0, "later": 10}, abs=1e-6)
    assert plan.relaxation.stages == ("shortfall",)
