"""Each baseline does what its seed says, and stays physical."""

import numpy as np
import pytest
from factories.problems import make_problem

from sitenode.baselines import (
    BASELINES,
    business_as_usual,
    greedy_cheapest_slot,
    priority_allocation,
    two_pass_peak_shaving,
)
from sitenode.metrics import compute_metrics
from sitenode.schedule import CHARGE, DISCHARGE, GRID_IMPORT, SOC, check_schedule, ev_column

BATTERY = {"capacity_kwh": 40, "soc_initial_kwh": 20, "soc_min_kwh": 4, "max_charge_kw": 20, "max_discharge_kw": 20}
PRICES = [0.3, 0.3, 0.1, 0.1, 0.1, 0.3, 0.3, 0.3]


def test_bau_charges_at_full_power_from_arrival_and_idles_the_battery():
    sessions = [{"session_id": "a", "arrival": 1, "departure": 8, "energy_kwh": 25, "max_kw": 11}]
    p = make_problem({"battery": BATTERY}, load=[5] * 8, prices=PRICES, sessions=sessions)
    s = business_as_usual(p)
    assert s[ev_column("a")].tolist() == pytest.approx([0, 11, 11, 3, 0, 0, 0, 0])
    assert (s[CHARGE] == 0).all() and (s[DISCHARGE] == 0).all() and (s[SOC] == 20).all()


def test_greedy_fills_cheapest_slots_by_priority_within_headroom():
    # headroom 10 kW above a 5 kW load on a 15 kW connection; cheap hours 2-4 hold 30 kWh
    sessions = [
        {"session_id": "low", "arrival": 0, "departure": 8, "energy_kwh": 20, "max_kw": 11, "priority": 2},
        {"session_id": "high", "arrival": 0, "departure": 8, "energy_kwh": 20, "max_kw": 11, "priority": 1},
    ]
    p = make_problem({"grid": {"import_limit_kw": 15}}, load=[5] * 8, prices=PRICES, sessions=sessions)
    s = greedy_cheapest_slot(p)
    assert s[ev_column("high")].iloc[2:5].sum() == pytest.approx(20)  # first pick of the cheap hours
    assert s[ev_column("low")].iloc[2:5].sum() == pytest.approx(10)  # what is left of them
    assert (s[GRID_IMPORT] <= 15 + 1e-9).all()
    assert check_schedule(p, s) == []


def test_peak_shaving_lowers_the_peak_and_recharges_cheaply():
    load = [10, 10, 10, 10, 40, 40, 10, 10]
    p = make_problem({"battery": BATTERY}, load=load, prices=PRICES)
    bau, shaved = business_as_usual(p), two_pass_peak_shaving(p)
    assert shaved[GRID_IMPORT].max() < bau[GRID_IMPORT].max() - 5
    assert shaved[SOC].iloc[-1] >= p.soc_final_min_kwh - 1e-9
    charged_at = np.flatnonzero(shaved[CHARGE].to_numpy() > 1e-9)
    assert all(p.import_price[t] == min(p.import_price[t:]) or p.import_price[t] <= 0.1 for t in charged_at)


def test_priority_allocation_follows_the_priorities():
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 1, "energy_kwh": 10, "max_kw": 10}]
    flex = [{"id": "miner", "max_kw": 10, "value_per_kwh": 0.0}]
    site = {
        "battery": {"capacity_kwh": 40, "soc_initial_kwh": 10, "max_charge_kw": 10, "max_discharge_kw": 10},
        "flexible_loads": flex,
    }
    fleet_first = make_problem(site, load=[0], pv=[10], prices=[0.2], sessions=sessions)
    s = priority_allocation(fleet_first)
    assert s[CHARGE].iloc[0] == pytest.approx(0)  # the solar went to the fleet
    battery_first = make_problem(
        site, load=[0], pv=[10], prices=[0.2], sessions=sessions, run={"priorities": {"battery": 1, "fleet": 2}}
    )
    s = priority_allocation(battery_first)
    assert s[CHARGE].iloc[0] == pytest.approx(10)  # now the battery took it
    mining_first = make_problem(
        {"flexible_loads": flex}, load=[0], pv=[8], prices=[0.2], run={"priorities": {"mining": 1, "fleet": 4}}
    )
    assert priority_allocation(mining_first)["flex_miner_kw"].iloc[0] == pytest.approx(8)


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_keeps_the_final_soc_floor_and_balance(name):
    battery = {**BATTERY, "soc_initial_kwh": 10, "soc_final_min_kwh": 30}
    sessions = [{"session_id": "a", "arrival": 0, "departure": 6, "energy_kwh": 30, "max_kw": 11}]
    p = make_problem(
        {"battery": battery, "pv": {"curtailable": True}, "grid": {"export_limit_kw": 5}},
        load=[5, 5, 5, 30, 30, 5, 5, 5],
        pv=[0, 20, 30, 30, 20, 0, 0, 0],
        prices=PRICES,
        sessions=sessions,
    )
    s = BASELINES[name](p)
    assert check_schedule(p, s, limits=False) == []
    assert compute_metrics(p, s).ev_shortfall_kwh == pytest.approx(0)
