"""The Pyomo formulation and the direct one agree on random sites (the hand-computed
cases in test_known_answers run on both engines too)."""

import pytest
from factories.strategies import sites
from hypothesis import HealthCheck, given, settings

from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.pyomo_model import optimize_site_pyomo
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import check_schedule


def agree(problem: SiteProblem) -> None:
    direct, pyomo = optimize_site(problem), optimize_site_pyomo(problem)
    assert direct.result.status == pyomo.result.status
    for plan in (direct, pyomo):
        within = plan.relaxation.over_limit_kwh < 1e-9
        assert check_schedule(problem, plan.schedule, limits=within, assignment=plan.charger_assignment) == []
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
