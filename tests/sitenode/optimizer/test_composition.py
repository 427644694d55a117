"""A site's model placed inside a larger one: what the portfolio will build on."""

import numpy as np
import pyomo.environ as pyo
import pytest
from factories.problems import make_problem

from sitenode.optimizer.formulation import add_site
from sitenode.optimizer.highs import HighsModel
from sitenode.optimizer.lexicographic import COST
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.pyomo_model import add_site_block
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import GRID_IMPORT

BATTERY = {"capacity_kwh": 20, "soc_initial_kwh": 10, "max_charge_kw": 10, "max_discharge_kw": 10}


def two_sites():
    a = make_problem({"battery": BATTERY}, load=[10, 20, 30, 10], prices=[0.1, 0.2, 0.4, 0.1])
    b = make_problem({}, load=[15, 15, 15, 15], prices=[0.1, 0.2, 0.4, 0.1])
    return a, b


def test_two_sites_under_one_feeder_cap_in_one_program():
    a, b = two_sites()
    cap = 40.0  # site a alone would import 30 + 15 = 45 in step 2
    lp = LinearProgram()
    cols = [add_site(lp, a), add_site(lp, b)]
    steps = np.arange(4)
    lp.add_rows(4, [(steps, cols[0].grid_import, 1.0), (steps, cols[1].grid_import, 1.0)], upper=cap)
    model = HighsModel(lp.matrix())
    model.set_objective(lp.cost(COST))
    model.fix_zero(np.concatenate([c.slacks for c in cols]))  # as the portfolio's first attempt: nothing relaxed
    outcome = model.run("cost")
    assert outcome.status == "optimal"
    x = model.values()
    total = x[cols[0].grid_import] + x[cols[1].grid_import]
    assert (total <= cap + 1e-6).all()
    alone = optimize_site(a).result.objective + optimize_site(b).result.objective
    assert outcome.objective >= alone - 1e-6  # coupling can only cost


def test_price_adjust_moves_import():
    # Alone, the battery (10 of 20 kWh) charges 10 at 0.1 in step 0, covers 10 kW in steps
    # 1 (0.2) and 2 (0.4), and refills at 0.1 in step 3. A portfolio price of +1 on steps
    # 0 and 3 makes those steps dear: the battery now covers them and refills in steps 1
    # and 2 (SOC 10 -> 0 -> 10 -> 20 -> 10).
    a, _ = two_sites()
    base = optimize_site(a).schedule[GRID_IMPORT].to_numpy()
    assert base.tolist() == pytest.approx([20, 10, 20, 20])
    shifted = optimize_site(a, price_adjust=np.array([1.0, 0, 0, 1.0])).schedule[GRID_IMPORT].to_numpy()
    assert shifted.tolist() == pytest.approx([0, 30, 40, 0])


def test_pyomo_blocks_compose_the_same_way():
    a, b = two_sites()
    m = pyo.ConcreteModel()
    m.a, m.b = pyo.Block(), pyo.Block()
    add_site_block(m.a, a)
    add_site_block(m.b, b)
    m.feeder = pyo.Constraint(range(4), rule=lambda m, t: m.a.grid_import[t] + m.b.grid_import[t] <= 40)
    m.objective = pyo.Objective(expr=m.a.cost + m.b.cost)
    for block in (m.a, m.b):
        for name in ("breach", "over_import", "shortfall", "flex_shortfall", "soc_shortfall"):
            for v in getattr(block, name).values() if hasattr(block, name) else ():
                v.fix(0)
    from pyomo.contrib.solver.solvers.highs import Highs

    Highs().solve(m)
    lp = LinearProgram()
    cols = [add_site(lp, a), add_site(lp, b)]
    lp.add_rows(4, [(np.arange(4), cols[0].grid_import, 1.0), (np.arange(4), cols[1].grid_import, 1.0)], upper=40)
    model = HighsModel(lp.matrix())
    model.set_objective(lp.cost(COST))
    model.fix_zero(np.concatenate([c.slacks for c in cols]))
    assert pyo.value(m.objective) == pytest.approx(model.run("cost").objective, abs=1e-6)
