"""`HighsModel` over many solves of one instance: HiGHS's time limit counts on a run clock
that keeps running across every run of the instance, which column generation re-solves
hundreds of times."""

from __future__ import annotations

import time

import numpy as np
from factories.problems import make_problem

from sitenode.optimizer.formulation import add_site
from sitenode.optimizer.highs import HighsModel
from sitenode.optimizer.lexicographic import COST
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.result import SolverStatus

STEPS = 96
BATTERY = {"capacity_kwh": 200, "soc_initial_kwh": 100, "max_charge_kw": 50, "max_discharge_kw": 50}


def loaded(time_limit_seconds: float) -> tuple[HighsModel, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    problem = make_problem(
        {"battery": BATTERY}, rng.uniform(10, 40, STEPS), step_minutes=15, prices=rng.uniform(0.05, 0.3, STEPS)
    )
    lp = LinearProgram()
    cols = add_site(lp, problem)
    model = HighsModel(lp.matrix(), time_limit_seconds=time_limit_seconds)
    model.set_objective(lp.cost(COST))
    return model, cols.grid_import, lp.cost(COST)[cols.grid_import]


def test_re_solves_keep_working_long_after_the_models_time_limit_has_passed_on_its_clock():
    model, flows, base = loaded(time_limit_seconds=0.05)
    assert model.run(COST, 0.05).status is SolverStatus.OPTIMAL
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    statuses = []
    while time.perf_counter() - started < 0.5 or len(statuses) < 20:  # well past 0.05 s of solving
        model.set_costs(flows, base * rng.uniform(0.5, 1.5, len(flows)))
        statuses.append(model.resolve())
    assert set(statuses) == {SolverStatus.OPTIMAL}, statuses
    # and a staged run after all that still gets its own budget, not what is left of the first
    assert model.run(COST, 0.05).status is SolverStatus.OPTIMAL
