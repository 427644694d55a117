"""Optima worked out by hand; each comment shows the arithmetic. Hourly steps (Δt = 1 h)."""

from __future__ import annotations

import pytest
from conftest import make_problem

from sitenode.metrics import compute_metrics
from sitenode.optimizer.pyomo_model import optimize_site_pyomo
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    SOC,
    check_schedule,
    ev_column,
)


@pytest.fixture(params=[optimize_site, optimize_site_pyomo], ids=["direct", "pyomo"])
def engine(request):
    """Every known answer holds for both formulations."""
    return request.param


BATTERY = {
    "capacity_kwh": 10,
    "soc_initial_kwh": 0,
    "soc_final_min_kwh": 0,
    "charge_efficiency": 0.9,
    "discharge_efficiency": 0.9,
}


def test_two_step_arbitrage(engine):
    # Buy at 0.1, sell at 0.3. Each kWh bought stores 0.9 and sells 0.81 for 0.243 > 0.1, so
    # the battery fills: 10 / 0.9 = 11.11 kWh bought, 10 × 0.9 = 9 kWh sold.
    # cost = 11.11 × 0.1 − 9 × 0.3 = 1.1111 − 2.7 = −1.5889
    p = make_problem({"battery": BATTERY}, {}, load=[0, 0], prices=[0.1, 0.3], export_prices=[0.1, 0.3])
    plan = engine(p)
    s = plan.schedule
    assert s[GRID_IMPORT].tolist() == pytest.approx([100 / 9, 0])
    assert s[CHARGE].tolist() == pytest.approx([100 / 9, 0])
    assert s[DISCHARGE].tolist() == pytest.approx([0, 9])
    assert s[GRID_EXPORT].tolist() == pytest.approx([0, 9])
    assert s[SOC].tolist() == pytest.approx([10, 0])
    assert compute_metrics(p, s).total_cost == pytest.approx(1 / 0.9 - 2.7)
    assert plan.result.objective == pytest.approx(1 / 0.9 - 2.7)
    assert not plan.relaxation.relaxed


def test_arbitrage_limited_by_power(engine):
    # the same with 10 kW each way: 10 kWh bought store 9, which sell as 8.1.
    # cost = 10 × 0.1 − 8.1 × 0.3 = −1.43
    battery = {**BATTERY, "max_charge_kw": 10, "max_discharge_kw": 10}
    p = make_problem({"battery": battery}, {}, load=[0, 0], prices=[0.1, 0.3], export_prices=[0.1, 0.3])
    s = engine(p).schedule
    assert s[CHARGE].tolist() == pytest.approx([10, 0]) and s[DISCHARGE].tolist() == pytest.approx([0, 8.1])
    assert compute_metrics(p, s).total_cost == pytest.approx(-1.43)


def test_arbitrage_that_does_not_pay_is_left_alone(engine):
    # 0.81 round trip: a kWh bought at 0.25 sells as 0.81 × 0.3 = 0.243 < 0.25
    p = make_problem({"battery": BATTERY}, {}, load=[0, 0], prices=[0.25, 0.3], export_prices=[0.25, 0.3])
    s = engine(p).schedule
    assert s[CHARGE].sum() == pytest.approx(0, abs=1e-7) and s[DISCHARGE].sum() == pytest.approx(0, abs=1e-7)


DEMAND = {"name": "w", "schedule": {"start_time": "01:00", "end_time": "01:59"}}


def test_a_demand_charge_that_pays_for_the_battery(engine):
    # Load 10 kW for two hours at 0.1; hour 1 lies in a demand window. Shaving x kW in hour 1
    # means buying x / 0.81 in hour 0 instead of x in hour 1: 0.1 × (1/0.81 − 1) = 0.0235 per
    # kW more energy, against 5 per kW of demand. So shave all the battery can: 10 kW in
    # hour 0 stores 9 kWh, which gives 8.1 kW in hour 1, leaving 1.9 kW to import.
    battery = {**BATTERY, "max_charge_kw": 10, "max_discharge_kw": 10}
    p = make_problem(
        {"battery": battery},
        {"tariff": {"demand_charges": [{**DEMAND, "rate_per_kw": 5.0}]}},
        load=[10, 10],
        prices=[0.1, 0.1],
    )
    s = engine(p).schedule
    assert s[GRID_IMPORT].tolist() == pytest.approx([20, 1.9])
    m = compute_metrics(p, s)
    assert m.demand_cost == pytest.approx(5 * 1.9)
    assert m.total_cost == pytest.approx(0.1 * 21.9 + 5 * 1.9)


def test_a_demand_charge_below_the_round_trip_loss_is_not_shaved(engine):
    # 0.02 per kW saved < 0.0235 per kW of extra energy: the battery stays idle
    battery = {**BATTERY, "max_charge_kw": 10, "max_discharge_kw": 10}
    p = make_problem(
        {"battery": battery},
        {"tariff": {"demand_charges": [{**DEMAND, "rate_per_kw": 0.02}]}},
        load=[10, 10],
        prices=[0.1, 0.1],
    )
    s = engine(p).schedule
    assert s[GRID_IMPORT].tolist() == pytest.approx([10, 10])


@pytest.mark.parametrize(("export_price", "exported", "curtailed"), [(-0.05, 0, 25), (0.05, 10, 15)])
def test_curtailment_when_export_is_capped(engine, export_price, exported, curtailed):
    # PV 30, load 5, export capped at 10. Paid −0.05 the site exports nothing and curtails all
    # 25 kW it cannot use; paid 0.05 it exports the 10 it may and curtails the other 15.
    p = make_problem(
        {"pv": {"curtailable": True}, "grid": {"export_limit_kw": 10}},
        {},
        load=[5],
        pv=[30],
        export_prices=[export_price],
    )
    plan = engine(p)
    assert plan.schedule[GRID_EXPORT].iloc[0] == pytest.approx(exported)
    assert plan.schedule[CURTAIL].iloc[0] == pytest.approx(curtailed)
    assert not plan.relaxation.relaxed


def test_uncurtailable_surplus_beyond_the_export_limit_is_reported_not_raised(engine):
    # the same PV may not be curtailed: 25 kW go out, 15 over the 10 kW limit
    p = make_problem({"pv": {"curtailable": False}, "grid": {"export_limit_kw": 10}}, {}, load=[5], pv=[30])
    plan = engine(p)
    assert plan.result.status.has_solution
    assert plan.relaxation.over_limit_kwh == pytest.approx(15)
    assert plan.schedule[GRID_EXPORT].iloc[0] == pytest.approx(25)


def test_a_flexible_load_runs_only_when_its_value_beats_the_price(engine):
    flex = [{"id": "miner", "min_kw": 2, "max_kw": 50, "value_per_kwh": 0.15}]
    p = make_problem({"flexible_loads": flex}, {}, load=[0, 0, 0], prices=[0.1, 0.2, 0.14])
    s = engine(p).schedule
    # worth it at 0.1 and 0.14, not at 0.2, where it stays at its 2 kW floor
    assert s["flex_miner_kw"].tolist() == pytest.approx([50, 2, 50])
    assert compute_metrics(p, s).flex_value == pytest.approx(0.15 * 102)


def test_ev_shortfall_goes_to_the_less_urgent_session(engine):
    # A 10 kW connection for 2 h gives 20 kWh; two sessions want 15 each. Shortfall weighs
    # 1/priority: priority 1 gets all 15, priority 2 the other 5 (10 short, weighted 5).
    sessions = [
        {"session_id": "later", "arrival": 0, "departure": 2, "energy_kwh": 15, "max_kw": 10, "priority": 2},
        {"session_id": "urgent", "arrival": 0, "departure": 2, "energy_kwh": 15, "max_kw": 10, "priority": 1},
    ]
    p = make_problem({"grid": {"import_limit_kw": 10}}, {}, load=[0, 0], sessions=sessions)
    plan = engine(p)
    delivered = {sid: plan.schedule[ev_column(sid)].sum() for sid in ("urgent", "later")}
    assert delivered == pytest.approx({"urgent": 15, "later": 5})
    assert plan.relaxation.shortfall_by_session == pytest.approx(
        {"urgent": 0, "later": 10}, abs=1e-5
    )  # solver-tolerance room
    assert plan.relaxation.ev_shortfall_kwh == pytest.approx(10)
    assert plan.relaxation.stages == ("shortfall",)
    assert check_schedule(p, plan.schedule) == []
    assert compute_metrics(p, plan.schedule).ev_shortfall_kwh == pytest.approx(10)


def test_breach_within_the_margin_delivers_ev_energy_and_is_reported(engine):
    # Limit 10 kW, margin 20 %: 12 kW at most. One hour, 12 kWh needed: the plan breaches by
    # 2 kWh rather than fall short, and says so; the penalty is reported, not in total_cost.
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 1, "energy_kwh": 12, "max_kw": 50}]
    p = make_problem(
        {"grid": {"import_limit_kw": 10, "breach_margin": 0.2, "breach_penalty_per_kwh": 10}},
        {},
        load=[0],
        sessions=sessions,
    )
    plan = engine(p)
    assert plan.relaxation.ev_shortfall_kwh == pytest.approx(0, abs=1e-6)
    assert plan.relaxation.breach_kwh == pytest.approx(2)
    assert plan.relaxation.over_limit_kwh == pytest.approx(0, abs=1e-6)
    assert plan.relaxation.stages == ("breach",)
    m = compute_metrics(p, plan.schedule)
    assert m.breach_kwh == pytest.approx(2) and m.breach_cost == pytest.approx(20)
    assert m.total_cost == pytest.approx(12 * 0.2)


def test_beyond_the_margin_the_ev_falls_short_instead(engine):
    # 15 kWh needed in one hour, 12 kW at most with the margin: 3 short, 2 breached
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 1, "energy_kwh": 15, "max_kw": 50}]
    p = make_problem({"grid": {"import_limit_kw": 10, "breach_margin": 0.2}}, {}, load=[0], sessions=sessions)
    plan = engine(p)
    assert plan.schedule[GRID_IMPORT].iloc[0] == pytest.approx(12)
    assert (plan.relaxation.ev_shortfall_kwh, plan.relaxation.breach_kwh) == pytest.approx((3, 2))
    assert plan.relaxation.stages == ("shortfall", "breach")


def test_breach_is_not_traded_for_a_cheaper_hour(engine):
    # 20 kWh in 2 h on a 10 kW connection with 50 % margin. Energy costs 0.1 then 1.0, so
    # breaching in hour 0 would save 0.9 per kWh: the plan must not, 10 kW each hour.
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 2, "energy_kwh": 20, "max_kw": 50}]
    p = make_problem(
        {"grid": {"import_limit_kw": 10, "breach_margin": 0.5}}, {}, load=[0, 0], prices=[0.1, 1.0], sessions=sessions
    )
    plan = engine(p)
    assert plan.schedule[GRID_IMPORT].tolist() == pytest.approx([10, 10])
    assert plan.relaxation.breach_kwh == pytest.approx(0, abs=1e-7) and not plan.relaxation.relaxed


def test_a_huge_demand_charge_buys_no_shortfall(engine):
    # the same EV, a 1000 per kW demand charge on hour 1: it still takes 10 kW in both hours
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 2, "energy_kwh": 20, "max_kw": 50}]
    run = {"tariff": {"demand_charges": [{**DEMAND, "rate_per_kw": 1000.0}]}}
    p = make_problem({"grid": {"import_limit_kw": 10, "breach_margin": 0.5}}, run, load=[0, 0], sessions=sessions)
    plan = engine(p)
    assert plan.relaxation.ev_shortfall_kwh == pytest.approx(0, abs=1e-6)
    assert plan.schedule[GRID_IMPORT].tolist() == pytest.approx([10, 10])
    assert compute_metrics(p, plan.schedule).demand_cost == pytest.approx(10_000)


def test_fixed_load_above_the_limit_and_margin_is_reported_not_raised(engine):
    # 30 kW of fixed load on a 10 kW connection with a 20 % margin: 2 within it, 18 beyond
    p = make_problem({"grid": {"import_limit_kw": 10, "breach_margin": 0.2}}, {}, load=[30])
    plan = engine(p)
    assert plan.result.status == "optimal"
    assert plan.relaxation.over_limit_kwh == pytest.approx(18)
    assert plan.relaxation.breach_kwh == pytest.approx(2)
    assert "over" in plan.relaxation.stages
    assert plan.schedule[GRID_IMPORT].iloc[0] == pytest.approx(30)
    assert check_schedule(p, plan.schedule, limits=False) == []


def test_a_session_leaving_after_the_horizon_gets_only_what_later_cannot_give(engine):
    # 2 h horizon; the EV stays 2 h more at 10 kW, so of 35 kWh only 15 are owed now, and
    # with energy dearer now (0.3) than it may be later, the plan buys exactly those 15
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 4, "energy_kwh": 35, "max_kw": 10}]
    p = make_problem({}, {}, load=[0, 0], prices=[0.3, 0.3], sessions=sessions)
    (w,) = p.sessions
    assert (w.need_kwh, w.cap_kwh) == (15, 35)
    plan = engine(p)
    assert plan.schedule[ev_column("ev")].sum() == pytest.approx(15)
    assert plan.relaxation.ev_shortfall_kwh == pytest.approx(0, abs=1e-9)


def test_energy_beyond_the_need_is_taken_when_paid_to_but_never_beyond_the_cap(engine):
    # 12 kWh wanted, 2 h more after the horizon at 10 kW: nothing is owed now (need 0, cap 12).
    # Paid 0.1 per kWh to import, the plan takes all 12 it may, not the 20 the hours could hold.
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 4, "energy_kwh": 12, "max_kw": 10}]
    p = make_problem({}, {}, load=[0, 0], prices=[-0.1, -0.1], sessions=sessions)
    (w,) = p.sessions
    assert (w.need_kwh, w.cap_kwh) == (0, 12)
    plan = engine(p)
    assert plan.schedule[ev_column("ev")].sum() == pytest.approx(12)
    assert compute_metrics(p, plan.schedule).total_cost == pytest.approx(-1.2)
