"""Hypothesis strategies for random small sites, shared by the optimizer's property tests."""

from __future__ import annotations

import math

from factories.problems import make_problem
from hypothesis import strategies as st

from sitenode.model.problem import SiteProblem

kw = st.floats(0, 30, allow_nan=False).map(lambda x: round(x, 2))


@st.composite
def sites(draw: st.DrawFn, circuits: bool = False) -> SiteProblem:
    """A random small site; with `circuits`, sometimes a panel over the first chargers.

    Sometimes a flexible load has a floor (min_kw > 0), the battery a final SOC target it
    can reach only by charging (which the import limit may not allow), and the run its
    own consumer priorities: the cases where priorities decide who gives way.
    """
    steps = draw(st.integers(3, 10))
    site: dict = {"grid": {}}
    if draw(st.booleans()):
        site["grid"]["import_limit_kw"] = draw(st.floats(15, 80).map(lambda x: round(x, 1)))
        site["grid"]["breach_margin"] = draw(st.sampled_from([0.0, 0.1, 0.3]))
    if draw(st.booleans()):
        site["grid"]["export_limit_kw"] = draw(st.floats(0, 20).map(lambda x: round(x, 1)))
    if draw(st.booleans()):
        cap = draw(st.floats(5, 60).map(lambda x: round(x, 1)))
        battery = site["battery"] = {
            "capacity_kwh": cap,
            "soc_initial_kwh": round(cap * draw(st.floats(0, 1)), 2),
            "max_charge_kw": draw(st.floats(1, 30)),
            "max_discharge_kw": draw(st.floats(1, 30)),
            "charge_efficiency": draw(st.floats(0.8, 1)),
            "discharge_efficiency": draw(st.floats(0.8, 1)),
            "degradation_cost_per_kwh": draw(st.floats(0, 0.05)),
        }
        if draw(st.booleans()):  # a final target anywhere the battery can reach by charging (hourly steps)
            initial = battery["soc_initial_kwh"]
            reach = min(cap, initial + battery["max_charge_kw"] * battery["charge_efficiency"] * steps)
            battery["soc_final_min_kwh"] = math.floor((initial + (reach - initial) * draw(st.floats(0, 1))) * 100) / 100
    site["pv"] = {"curtailable": draw(st.booleans())}
    if draw(st.booleans()):
        top = draw(st.floats(1, 20))
        site["flexible_loads"] = [
            {
                "id": "miner",
                "min_kw": top * draw(st.sampled_from([0.0, 0.0, 0.25, 1.0])),
                "max_kw": top,
                "value_per_kwh": draw(st.floats(0, 0.4)),
                "priority": draw(st.integers(1, 10)),
            }
        ]
    n_ac, n_dc = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    chargers = [{"id": f"ac{i}", "max_kw": 11, "kind": "ac"} for i in range(n_ac)] + [
        {"id": f"dc{i}", "max_kw": 40, "kind": "dc"} for i in range(n_dc)
    ]
    site["chargers"] = chargers
    if circuits and len(chargers) >= 2 and draw(st.booleans()):
        site["circuits"] = [
            {"id": "panel", "max_kw": draw(st.floats(5, 40)), "members": [c["id"] for c in chargers[:2]]}
        ]
    sessions = []
    for i in range(draw(st.integers(0, 4))):
        a = draw(st.integers(0, steps - 1))
        d = draw(st.integers(a + 1, steps + 2))
        named = chargers and draw(st.booleans())
        sessions.append(
            {
                "session_id": f"s{i}",
                "arrival": a,
                "departure": d,
                "energy_kwh": draw(st.floats(0, 60)),
                "max_kw": draw(st.sampled_from([7.0, 11.0, 22.0, 50.0])),
                "priority": draw(st.integers(1, 3)),
                **({"charger_id": draw(st.sampled_from([c["id"] for c in chargers]))} if named else {}),
            }
        )
    run: dict = {
        "objective": {
            "cost": 1.0,
            "carbon": draw(st.sampled_from([0.0, 0.1])),
            "peak": draw(st.sampled_from([0.0, 0.5])),
        }
    }
    if draw(st.booleans()):
        classes = ("fleet", "facility", "battery", "mining", "export")
        run["priorities"] = dict(zip(classes, draw(st.permutations(range(1, 6))), strict=True))
    if draw(st.booleans()):
        run["tariff"] = {
            "demand_charges": [
                {"rate_per_kw": draw(st.floats(0, 10)), "schedule": {"start_time": "02:00", "end_time": "05:59"}}
            ]
        }
    return make_problem(
        site,
        load=draw(st.lists(kw, min_size=steps, max_size=steps)),
        pv=draw(st.lists(kw, min_size=steps, max_size=steps)),
        prices=draw(st.lists(st.floats(0, 0.4), min_size=steps, max_size=steps)),
        export_prices=draw(st.lists(st.floats(-0.05, 0.2), min_size=steps, max_size=steps)),
        sessions=sessions,
        run=run,
        extra={"carbon_kg_per_kwh": [0.3] * steps},
    )
