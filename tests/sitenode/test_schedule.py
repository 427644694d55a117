"""The canonical schedule and check_schedule: each broken rule is caught, and only it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_problem

from sitenode.model.problem import SiteProblem
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    LOAD,
    PV,
    SOC,
    balance_residual,
    check_schedule,
    new_schedule,
    soc_trajectory,
)

SITE = {
    "grid": {"import_limit_kw": 20, "export_limit_kw": 5, "breach_margin": 0.1},
    "battery": {
        "capacity_kwh": 20,
        "soc_initial_kwh": 10,
        "soc_min_kwh": 2,
        "soc_max_kwh": 18,
        "max_charge_kw": 5,
        "max_discharge_kw": 5,
        "charge_efficiency": 0.9,
        "discharge_efficiency": 0.8,
    },
    "pv": {"curtailable": True},
    "chargers": [{"id": "cp", "max_kw": 7}],
    "flexible_loads": [{"id": "m", "min_kw": 1, "max_kw": 5}],
}
EV = "ev_ev_kw"


def problem(**site_patch) -> SiteProblem:
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 1, "energy_kwh": 6, "max_kw": 7}]
    return make_problem({**SITE, **site_patch}, {}, load=[10, 10, 10], pv=[0, 12, 0], sessions=sessions)


def good(p: SiteProblem) -> pd.DataFrame:
    s = new_schedule(p)
    # step 0: load 10 + ev 6 + flex 1 + charge 5 = 22 import, the limit plus its 10 % margin;
    #         soc 10 + 5 × 0.9 = 14.5
    # step 1: load 10 + flex 1 = 11 from PV 12, 1 kW exported
    # step 2: load 10 + flex 1 = 11 from 3.6 discharge and 7.4 import; soc 14.5 − 3.6 / 0.8 = 10
    s[GRID_IMPORT] = [22.0, 0.0, 7.4]
    s[GRID_EXPORT] = [0.0, 1.0, 0.0]
    s[CHARGE] = [5.0, 0.0, 0.0]
    s[DISCHARGE] = [0.0, 0.0, 3.6]
    s[SOC] = [14.5, 14.5, 10.0]
    s[EV] = [6.0, 0.0, 0.0]
    s["flex_m_kw"] = [1.0, 1.0, 1.0]
    return s


def resettle(p: SiteProblem, s: pd.DataFrame) -> pd.DataFrame:
    """After changing one flow: SOC from the flows, the balance closed by import."""
    s[SOC] = soc_trajectory(p, s[CHARGE].to_numpy(), s[DISCHARGE].to_numpy())
    s[GRID_IMPORT] = s[GRID_IMPORT] + balance_residual(s)
    return s


def test_new_schedule_has_the_canonical_columns():
    p = problem()
    s = new_schedule(p)
    assert list(s.columns) == [GRID_IMPORT, GRID_EXPORT, CHARGE, DISCHARGE, SOC, PV, CURTAIL, LOAD, EV, "flex_m_kw"]
    assert s.index.equals(p.index) and str(s.index.tz) == "UTC"
    assert s[LOAD].tolist() == [10, 10, 10] and s[PV].tolist() == [0, 12, 0] and (s[SOC] == 10).all()


def test_the_hand_made_schedule_keeps_every_rule():
    p = problem()
    assert balance_residual(good(p)) == pytest.approx([0, 0, 0])
    assert check_schedule(p, good(p)) == []


def test_soc_follows_the_flows_by_hand():
    p = problem()
    soc = soc_trajectory(p, np.array([5.0, 0.0, 2.0]), np.array([0.0, 4.0, 0.0]))
    # 10 + 4.5 = 14.5; − 4 / 0.8 = 9.5; + 1.8 = 11.3
    assert soc == pytest.approx([14.5, 9.5, 11.3])


def broken(change) -> list[str]:
    p = problem()
    s = good(p)
    change(p, s)
    return check_schedule(p, s)


def test_a_negative_flow_is_caught():
    def change(p, s):
        # step 1: pv 12 − curtail 2 = 10 against load 10 + flex 1 + export −1: balanced
        s.loc[s.index[1], GRID_EXPORT] = -1.0
        s.loc[s.index[1], CURTAIL] = 2.0

    assert broken(change) == [f"{GRID_EXPORT}: negative at {problem().index[1]}"]


def test_an_unbalanced_step_is_caught():
    assert broken(lambda p, s: s.__setitem__(GRID_IMPORT, [21.0, 0.0, 7.4])) == ["energy balance off by up to 1 kW"]


def test_curtailing_more_than_the_pv_is_caught():
    def change(p, s):
        s[CURTAIL] = [0.0, 13.0, 0.0]
        s[GRID_EXPORT] = [0.0, 0.0, 0.0]
        resettle(p, s)

    assert broken(change) == ["pv_curtail_kw exceeds pv_kw"]


def test_curtailing_pv_that_may_not_be_curtailed_is_caught():
    p = problem(pv={"curtailable": False})
    s = good(p)
    s[CURTAIL] = [0.0, 1.0, 0.0]
    s[GRID_EXPORT] = [0.0, 0.0, 0.0]
    assert check_schedule(p, s) == ["pv_curtail_kw without curtailable PV"]


def test_load_or_pv_other_than_the_problems_is_caught():
    def drop_load(p, s):
        s[LOAD] = [10.0, 10.0, 9.0]
        resettle(p, s)

    assert broken(drop_load) == ["load_kw differs from the problem's fixed load"]

    def invent_pv(p, s):
        s[PV] = [1.0, 12.0, 0.0]
        resettle(p, s)

    assert broken(invent_pv) == ["pv_kw differs from the problem's PV production"]


def test_a_soc_that_does_not_follow_the_flows_is_caught():
    assert broken(lambda p, s: s.__setitem__(SOC, [14.5, 15.0, 10.5])) == [
        "soc_kwh does not follow the flows (off by 0.5 kWh)"
    ]


def test_soc_bounds_and_the_final_floor_are_caught():
    def overfill(p, s):
        s[CHARGE] = [5.0, 5.0, 0.0]  # 14.5 + 4.5 = 19 > 18
        resettle(p, s)

    assert broken(overfill) == ["soc_kwh outside [soc_min_kwh, soc_max_kwh]"]

    def drain(p, s):
        s[DISCHARGE] = [0.0, 0.0, 5.0]  # 14.5 − 6.25 = 8.25 < 10
        resettle(p, s)

    assert broken(drain) == ["final soc_kwh 8.25 below soc_final_min_kwh 10"]


def test_battery_power_limits_are_caught():
    def fast_charge(p, s):
        # 5.5 kW in: soc 10 + 4.95 = 14.95, and 3.96 out brings it back to 10
        s[CHARGE] = [5.5, 0.0, 0.0]
        s[EV] = [5.5, 0.0, 0.0]
        s[DISCHARGE] = [0.0, 0.0, 3.96]
        resettle(p, s)

    assert broken(fast_charge) == ["battery_charge_kw above max_charge_kw"]
    slow = problem(battery={**SITE["battery"], "max_discharge_kw": 3})
    assert check_schedule(slow, good(slow)) == ["battery_discharge_kw above max_discharge_kw"]


def test_battery_flows_without_a_battery_are_caught():
    p = problem(battery=None)
    s = good(p)
    s[SOC] = 0.0
    assert check_schedule(p, s) == ["battery flows without a battery"]


def test_ev_rules_are_caught():
    def outside(p, s):
        s[EV] = [5.0, 1.0, 0.0]
        resettle(p, s)

    assert broken(outside) == [f"{EV}: charges outside its window"]

    def too_much(p, s):
        # 0.5 kW more to the EV, 0.5 kW less to the battery: soc 14.05, and 3.24 out gives 10
        s[EV] = [6.5, 0.0, 0.0]
        s[CHARGE] = [4.5, 0.0, 0.0]
        s[DISCHARGE] = [0.0, 0.0, 3.24]
        resettle(p, s)

    assert broken(too_much) == [f"{EV}: delivers more than the session needs"]

    p = make_problem(
        {},
        {},
        load=[0, 0],
        sessions=[{"session_id": "ev", "arrival": 0, "departure": 2, "energy_kwh": 20, "max_kw": 7}],
    )
    s = new_schedule(p)
    s[EV] = [8.0, 6.0]
    s[GRID_IMPORT] = [8.0, 6.0]
    assert check_schedule(p, s) == [f"{EV}: above max_kw 7"]


def test_flexible_load_bounds_are_caught():
    def below_floor(p, s):
        s["flex_m_kw"] = [1.0, 0.5, 1.0]
        s[GRID_EXPORT] = [0.0, 1.5, 0.0]

    assert broken(below_floor) == ["flex_m_kw: outside [1, 5]"]


def test_relaxed_floors_pass_only_when_the_plan_relaxed_them():
    # a plan that gave way by priority (Relaxation.flex_shortfall_kwh / soc_shortfall_kwh):
    # the miner below its 1 kW floor and the battery ending below its 10 kWh target
    p = problem()

    def relaxed(s):
        s["flex_m_kw"] = [1.0, 0.5, 1.0]
        s[GRID_EXPORT] = [0.0, 1.5, 0.0]
        s[DISCHARGE] = [0.0, 0.0, 5.0]  # 14.5 − 6.25 = 8.25 < 10
        return resettle(p, s)

    s = relaxed(good(p))
    assert check_schedule(p, s) == ["final soc_kwh 8.25 below soc_final_min_kwh 10", "flex_m_kw: outside [1, 5]"]
    assert check_schedule(p, s, floors=False) == []
    # what stays a rule: zero, max_kw and the SOC bounds
    s["flex_m_kw"] = [1.0, -0.5, 1.0]
    s[GRID_EXPORT] = [0.0, 2.5, 0.0]
    assert check_schedule(p, s, floors=False) == [
        "flex_m_kw: negative at 2025-01-15 01:00:00+00:00",
        "flex_m_kw: outside [0, 5]",
    ]
    s = good(p)
    s[CHARGE] = [0.0, 0.0, 0.0]
    s[DISCHARGE] = [5.0, 0.0, 5.0]  # soc 10 − 6.25 = 3.75, then −2.5 < soc_min_kwh 2
    s = resettle(p, s)
    assert "soc_kwh outside [soc_min_kwh, soc_max_kwh]" in check_schedule(p, s, floors=False)


def test_grid_limits_are_caught_only_when_asked():
    p = problem()
    s = good(p)
    s[GRID_IMPORT] = [22.5, 0.0, 7.4]
    s["flex_m_kw"] = [1.5, 1.0, 1.0]
    assert check_schedule(p, s) == ["grid_import_kw above import limit and margin"]
    assert check_schedule(p, s, limits=False) == []
    # 17 kW of PV in step 1: 11 used, 6 exported over the 5 kW limit
    p_big = make_problem(
        SITE,
        {},
        load=[10, 10, 10],
        pv=[0, 17, 0],
        sessions=[{"session_id": "ev", "arrival": 0, "departure": 1, "energy_kwh": 6, "max_kw": 7}],
    )
    s = good(p_big)
    s[GRID_EXPORT] = [0.0, 6.0, 0.0]
    assert check_schedule(p_big, s) == ["grid_export_kw above export limit"]
    assert check_schedule(p_big, s, limits=False) == []


def test_charger_ratings_and_circuits_with_an_assignment():
    site = {
        "chargers": [{"id": "a", "max_kw": 10}, {"id": "b", "max_kw": 10}],
        "circuits": [{"id": "panel", "max_kw": 15, "members": ["a", "b"]}],
    }
    sessions = [
        {"session_id": "x", "arrival": 0, "departure": 1, "energy_kwh": 10, "max_kw": 20},
        {"session_id": "y", "arrival": 0, "departure": 1, "energy_kwh": 10, "max_kw": 20},
    ]
    p = make_problem(site, {}, load=[0], sessions=sessions)
    s = new_schedule(p)
    s["ev_x_kw"], s["ev_y_kw"], s[GRID_IMPORT] = [8.0], [7.0], [15.0]
    assert check_schedule(p, s, assignment={"x": "a", "y": "b"}) == []
    assert check_schedule(p, s, assignment={"x": "a", "y": "a"}) == ["charger a: draws 15 kW above its 10"]
    assert check_schedule(p, s, assignment={"x": "a"}) == ["ev_y_kw: charges without a charger"]
    s["ev_x_kw"], s[GRID_IMPORT] = [9.0], [16.0]
    assert check_schedule(p, s, assignment={"x": "a", "y": "b"}) == ["circuit panel: draws 16 kW above its 15"]
    # without an assignment, chargers and circuits are not checked
    assert check_schedule(p, s) == []
