"""Module 11's consumer priorities decide who gives way when a site cannot serve everyone.

Hand-computed on both engines, hourly steps (Δt = 1 h), one price everywhere unless said.
Weights (formulation.class_weight): a class of priority p weighs 10 ** (1 − p) per kWh,
divided by a session's or flexible load's own priority.

Amounts hold to `kwh` (10 mWh): the stages after "shortfall" keep each weight's share
of it to the caps' room (relative ~1e-7), and may spend that on breach or cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_problem

from sitenode.optimizer.formulation import add_site, class_weight, shortfall_weights
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.pyomo_model import optimize_site_pyomo
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import DISCHARGE, GRID_IMPORT, SOC, check_schedule, ev_column, flex_column


@pytest.fixture(params=[optimize_site, optimize_site_pyomo], ids=["direct", "pyomo"])
def engine(request):
    return request.param


def kwh(value: float):
    return pytest.approx(value, abs=1e-5)


def run(priorities: dict | None = None) -> dict:
    return {"priorities": priorities} if priorities else {}


def delivered(plan, sid: str) -> float:
    return float(plan.schedule[ev_column(sid)].sum())


# A 20 kW connection for 2 h gives 40 kWh. A car needs 25 kWh; a miner must run at
# 10 kW (min = max = 10, worth more than the power costs), 20 kWh: 45 wanted, 5 too many.
MINER = {"id": "miner", "min_kw": 10, "max_kw": 10, "value_per_kwh": 0.3}
CAR = [{"session_id": "car", "arrival": 0, "departure": 2, "energy_kwh": 25, "max_kw": 22}]


def miner_site(priorities: dict | None = None):
    return make_problem(
        {"grid": {"import_limit_kw": 20}, "flexible_loads": [MINER]},
        run(priorities),
        load=[0, 0],
        sessions=CAR,
    )


def test_by_default_the_miner_gives_way_to_the_car(engine):
    # fleet 1 weighs 1 per kWh, mining 4 weighs 0.001 / 4 (the load's own priority 4):
    # the car gets all 25, the miner 40 − 25 = 15 of its 20, 5 kWh below its floor
    p = miner_site()
    plan = engine(p)
    assert delivered(plan, "car") == kwh(25)
    assert plan.schedule[flex_column("miner")].sum() == kwh(15)
    assert plan.schedule[GRID_IMPORT].tolist() == pytest.approx([20, 20], abs=1e-5)
    r = plan.relaxation
    assert r.ev_shortfall_kwh == kwh(0)
    assert r.flex_shortfall_kwh == kwh(5)
    assert r.flex_shortfall_by_load == pytest.approx({"miner": 5}, abs=1e-5)
    assert r.soc_shortfall_kwh == 0
    assert r.stages == ("shortfall",)
    assert check_schedule(p, plan.schedule) == [f"{flex_column('miner')}: outside [10, 10]"]
    assert check_schedule(p, plan.schedule, floors=False) == []


def test_with_mining_first_the_car_falls_short_and_the_miner_keeps_its_floor(engine):
    # mining 1 weighs 1 / 4 per kWh, fleet 4 weighs 0.001: the miner runs 10 kW both hours,
    # the car gets the other 20 kWh, 5 short
    plan = engine(miner_site({"fleet": 4, "mining": 1}))
    assert plan.schedule[flex_column("miner")].tolist() == pytest.approx([10, 10], abs=1e-5)
    assert delivered(plan, "car") == kwh(20)
    r = plan.relaxation
    assert r.ev_shortfall_kwh == kwh(5)
    assert r.shortfall_by_session == pytest.approx({"car": 5}, abs=1e-5)
    assert r.flex_shortfall_kwh == kwh(0)
    assert r.stages == ("shortfall",)


# A 10 kW connection for 2 h gives 20 kWh. A car needs 30 kWh. The battery holds 10 kWh and
# must end with them (its final target defaults to the initial SOC); discharged, they give
# 10 × 0.9 = 9 kWh.
BATTERY = {
    "capacity_kwh": 20,
    "soc_initial_kwh": 10,
    "max_discharge_kw": 10,
    "discharge_efficiency": 0.9,
}


def battery_site(priorities: dict | None = None):
    car = {"session_id": "car", "arrival": 0, "departure": 2, "energy_kwh": 30, "max_kw": 22}
    return make_problem(
        {"grid": {"import_limit_kw": 10}, "battery": BATTERY},
        run(priorities),
        load=[0, 0],
        sessions=[car],
    )


def test_by_default_the_battery_target_gives_way_to_the_car(engine):
    # fleet 1 weighs 1, battery 3 weighs 0.01: the battery empties into the car,
    # 20 + 9 = 29 kWh delivered (1 short), the final SOC 0, 10 below its target
    p = battery_site()
    plan = engine(p)
    assert delivered(plan, "car") == kwh(29)
    assert plan.schedule[DISCHARGE].sum() == kwh(9)
    assert plan.schedule[SOC].iloc[-1] == kwh(0)
    r = plan.relaxation
    assert r.ev_shortfall_kwh == kwh(1)
    assert r.soc_shortfall_kwh == kwh(10)
    assert r.flex_shortfall_kwh == 0
    assert r.stages == ("shortfall",)
    assert check_schedule(p, plan.schedule) == ["final soc_kwh 0 below soc_final_min_kwh 10"]
    assert check_schedule(p, plan.schedule, floors=False) == []


def test_with_the_battery_first_it_keeps_its_target_and_the_car_falls_short(engine):
    # battery 1 weighs 1, fleet 3 weighs 0.01: the battery idles, the car gets 20, 10 short
    plan = engine(battery_site({"fleet": 3, "battery": 1}))
    assert delivered(plan, "car") == kwh(20)
    assert plan.schedule[SOC].tolist() == pytest.approx([10, 10], abs=1e-5)
    assert plan.relaxation.ev_shortfall_kwh == kwh(10)
    assert plan.relaxation.soc_shortfall_kwh == kwh(0)


def test_a_weighting_not_a_strict_order(engine):
    # fleet 1 (1 per kWh) before battery 2 (0.1): the battery empties for 9 kWh of car only
    # because 9 × 1 > 10 × 0.1. With a car whose own priority is 20 (1/20 per kWh), 9 kWh of
    # it weigh 0.45 < 1, what the battery's 10 kWh weigh: the battery keeps its target.
    car = {
        "session_id": "car",
        "arrival": 0,
        "departure": 2,
        "energy_kwh": 30,
        "max_kw": 22,
        "priority": 20,
    }
    p = make_problem(
        {"grid": {"import_limit_kw": 10}, "battery": BATTERY},
        run({"fleet": 1, "battery": 2}),
        load=[0, 0],
        sessions=[car],
    )
    plan = engine(p)
    assert delivered(plan, "car") == kwh(20)
    assert plan.relaxation.soc_shortfall_kwh == kwh(0)


def test_a_loads_own_priority_orders_loads_within_the_class(engine):
    # 15 kW for one hour; two miners must each run 10 kW: 5 kWh too many. Weighed
    # 0.001 / priority, the priority-1 miner keeps its floor and the priority-5 one runs 5.
    loads = [
        {"id": "keep", "min_kw": 10, "max_kw": 10, "priority": 1},
        {"id": "shed", "min_kw": 10, "max_kw": 10, "priority": 5},
    ]
    p = make_problem({"grid": {"import_limit_kw": 15}, "flexible_loads": loads}, {}, load=[0])
    plan = engine(p)
    assert plan.schedule[flex_column("keep")].iloc[0] == kwh(10)
    assert plan.schedule[flex_column("shed")].iloc[0] == kwh(5)
    assert plan.relaxation.flex_shortfall_by_load == pytest.approx({"keep": 0, "shed": 5}, abs=1e-5)


def test_the_facility_cannot_be_shed_whatever_its_priority(engine):
    # 30 kW of fixed load on a 20 kW connection, a car wanting 10 kWh. With the facility
    # last (5) and the fleet first, the load still goes over the limit (10, the "over"
    # stage, first), and holding that the car gets nothing: every kW it took would be over.
    car = {"session_id": "car", "arrival": 0, "departure": 1, "energy_kwh": 10, "max_kw": 22}
    p = make_problem(
        {"grid": {"import_limit_kw": 20}},
        run({"fleet": 1, "facility": 5, "export": 2}),
        load=[30],
        sessions=[car],
    )
    plan = engine(p)
    assert plan.relaxation.over_limit_kwh == pytest.approx(10)
    assert delivered(plan, "car") == kwh(0)
    assert plan.relaxation.stages == ("over", "shortfall")


def test_a_floor_that_would_force_the_limit_over_gives_way_instead(engine):
    # 15 kW of fixed load and a miner's 10 kW floor on a 20 kW connection: before priorities
    # the floor was hard and went 5 kW over the limit; now the miner runs 5 and nothing is over
    p = make_problem({"grid": {"import_limit_kw": 20}, "flexible_loads": [MINER]}, {}, load=[15])
    plan = engine(p)
    assert plan.relaxation.over_limit_kwh == pytest.approx(0, abs=1e-6)
    assert plan.schedule[flex_column("miner")].iloc[0] == kwh(5)
    assert plan.relaxation.flex_shortfall_kwh == kwh(5)


def test_the_breach_margin_is_used_before_anyone_gives_way(engine):
    # the miner example with a 10 % margin: 2 × 22 = 44 kWh, one short of 45 (EV 25, miner 20)
    p = make_problem(
        {"grid": {"import_limit_kw": 20, "breach_margin": 0.1}, "flexible_loads": [MINER]},
        {},
        load=[0, 0],
        sessions=CAR,
    )
    plan = engine(p)
    assert plan.schedule[GRID_IMPORT].tolist() == pytest.approx([22, 22], abs=1e-5)
    assert plan.relaxation.breach_kwh == kwh(4)
    assert plan.relaxation.flex_shortfall_kwh == kwh(1)
    assert delivered(plan, "car") == kwh(25)
    assert plan.relaxation.stages == ("shortfall", "breach")


FEASIBLE_SITE = {
    "grid": {"import_limit_kw": 60, "export_limit_kw": 10},
    "battery": {
        "capacity_kwh": 40,
        "soc_initial_kwh": 20,
        "soc_final_min_kwh": 25,
        "max_charge_kw": 15,
        "max_discharge_kw": 15,
        "charge_efficiency": 0.95,
        "discharge_efficiency": 0.95,
        "degradation_cost_per_kwh": 0.01,
    },
    "pv": {"curtailable": True},
    "chargers": [
        {"id": "ac0", "max_kw": 11},
        {"id": "ac1", "max_kw": 11},
        {"id": "dc0", "max_kw": 22, "kind": "dc"},
    ],
    "flexible_loads": [{"id": "miner", "min_kw": 3, "max_kw": 20, "value_per_kwh": 0.12}],
}
FEASIBLE_SESSIONS = [
    {"session_id": "a", "arrival": 0, "departure": 4, "energy_kwh": 30, "max_kw": 11},
    {
        "session_id": "b",
        "arrival": 1,
        "departure": 6,
        "energy_kwh": 20,
        "max_kw": 11,
        "priority": 2,
    },
    {"session_id": "c", "arrival": 3, "departure": 6, "energy_kwh": 15, "max_kw": 7},
]


@pytest.mark.parametrize(
    "priorities",
    [
        {"fleet": 5, "facility": 4, "battery": 3, "mining": 2, "export": 1},
        {"fleet": 3, "facility": 1, "battery": 1, "mining": 1, "export": 2},
    ],
)
def test_a_plan_that_serves_everyone_is_the_same_whatever_the_priorities(engine, priorities):
    kwargs = {
        "load": [10, 12, 20, 25, 15, 8],
        "pv": [0, 5, 20, 30, 10, 0],
        "prices": [0.1, 0.15, 0.3, 0.25, 0.2, 0.1],
        "export_prices": [0.05] * 6,
        "sessions": FEASIBLE_SESSIONS,
    }
    base = engine(make_problem(FEASIBLE_SITE, {}, **kwargs))
    other = engine(make_problem(FEASIBLE_SITE, run(priorities), **kwargs))
    assert not base.relaxation.relaxed and not other.relaxation.relaxed
    assert [s.stage for s in base.result.stages] == ["cost"]  # the slack-free first attempt
    pd.testing.assert_frame_equal(base.schedule, other.schedule)
    assert base.result.objective == other.result.objective
    assert base.charger_assignment == other.charger_assignment


def test_weights_are_ten_times_per_class_and_refined_by_own_priorities():
    assert [class_weight(p) for p in range(1, 6)] == pytest.approx([1, 0.1, 0.01, 0.001, 0.0001])
    p = make_problem(
        {**FEASIBLE_SITE, "flexible_loads": [{"id": "m", "min_kw": 1, "max_kw": 2, "priority": 2}]},
        run({"fleet": 2, "battery": 1, "mining": 3}),
        load=[0] * 6,
        sessions=FEASIBLE_SESSIONS,
    )
    sessions, loads, battery = shortfall_weights(p)
    assert sessions == pytest.approx({"a": 0.1, "b": 0.05, "c": 0.1})
    assert loads == pytest.approx({"m": 0.005})
    assert battery == pytest.approx(1)


def test_the_new_slacks_are_held_at_zero_in_the_first_attempt():
    # the portfolio holds `SiteColumns.slacks` at zero in its slack-free first attempt
    p = make_problem(
        {**FEASIBLE_SITE, "battery": {**FEASIBLE_SITE["battery"], "soc_min_kwh": 5}},
        {},
        load=[0] * 6,
        sessions=FEASIBLE_SESSIONS,
    )
    lp = LinearProgram()
    cols = add_site(lp, p)
    assert len(cols.flex_shortfall["miner"]) == 6 and len(cols.soc_shortfall) == 1
    slacks = set(cols.slacks.tolist())
    assert set(cols.flex_shortfall["miner"].tolist()) <= slacks and set(cols.soc_shortfall.tolist()) <= slacks
    assert set(cols.shortfall.values()) <= slacks
    # the soc slack covers only the target above the reserve: 25 − 5
    assert lp.matrix().col_upper[cols.soc_shortfall[0]] == pytest.approx(20)
    # no floor, no target: no slack
    bare = make_problem(
        {
            "flexible_loads": [{"id": "m", "max_kw": 5}],
            "battery": {"capacity_kwh": 10, "soc_initial_kwh": 0},
        },
        {},
        load=[0, 0],
    )
    cols = add_site(LinearProgram(), bare)
    assert cols.flex_shortfall == {} and len(cols.soc_shortfall) == 0
    assert np.array_equal(cols.slacks, np.concatenate([cols.over, cols.breach]))


def test_a_charger_choice_mip_does_not_hide_a_battery_target_in_its_gap(engine):
    # Found by the engines' property test. Charger choice makes this a MIP, solved to a 0.1 %
    # gap of the "shortfall" stage: the priority-3 car's 34.13 kWh (at 1/3 per kWh) dwarf the
    # battery's whole 0.84 kWh target (at 0.01 per kWh), and HiGHS stopped within the gap with
    # the battery emptied for nothing. The stage is polished with the charger choice held
    # (solve.polish_shortfall), which gives the target back: nothing needs it.
    load = [30.0, 0.0, 4.75, 0.0, 27.01, 7.03, 25.93, 21.82, 27.02]
    prices = [
        0,
        0.012286849781261433,
        0,
        0.04503448853266008,
        0,
        0.015178484050170915,
        0.06097310554552489,
        0,
        0.1516007128847861,
    ]
    site = {
        "grid": {"export_limit_kw": 12.5},
        "pv": {"curtailable": True},
        "battery": {
            "capacity_kwh": 16.1,
            "soc_initial_kwh": 0.84,
            "max_charge_kw": 1.0,
            "max_discharge_kw": 1.084335034013237,
            "charge_efficiency": 0.9872657410103507,
            "discharge_efficiency": 0.9002594195448519,
        },
        "chargers": [
            {"id": "ac0", "max_kw": 11},
            {"id": "dc0", "max_kw": 40, "kind": "dc"},
            {"id": "dc1", "max_kw": 40, "kind": "dc"},
        ],
    }
    sessions = [
        {
            "session_id": "s0",
            "arrival": 4,
            "departure": 11,
            "energy_kwh": 35.356081673971026,
            "max_kw": 7,
            "priority": 2,
        },
        {
            "session_id": "s1",
            "arrival": 0,
            "departure": 1,
            "energy_kwh": 45.13192511311696,
            "max_kw": 11,
            "priority": 3,
            "charger_id": "dc1",
        },
        {
            "session_id": "s2",
            "arrival": 7,
            "departure": 11,
            "energy_kwh": 0,
            "max_kw": 50,
            "priority": 2,
        },
    ]
    run_ = {
        "objective": {"carbon": 0.1, "peak": 0.5},
        "tariff": {
            "demand_charges": [
                {
                    "rate_per_kw": 5.195626371307175,
                    "schedule": {"start_time": "02:00", "end_time": "05:59"},
                }
            ]
        },
    }
    export = [*prices[:7], -0.012928917506857658, prices[8]]
    p = make_problem(
        site,
        run_,
        load=load,
        pv=load,
        prices=prices,
        export_prices=export,
        sessions=sessions,
        carbon_kg_per_kwh=[0.3] * 9,
    )
    plan = engine(p)
    assert plan.result.num_integer > 0
    assert plan.relaxation.shortfall_by_session["s1"] == kwh(45.13192511311696 - 11)
    assert plan.relaxation.soc_shortfall_kwh == kwh(0)
