"""Module 11's priority allocation (shared/seeds/001, "Allocation Algorithm").

Per step, solar goes to consumers in priority order (fleet, facility, battery
charging, mining, export by default; `run_config.priorities` reorders them). The
battery also charges from the grid in the cheapest price band (within 5 % of the
horizon's lowest price: "super off-peak") and discharges to cover fleet and facility
in the dearest band (within 5 % of the highest: "peak"). Mining runs on spare solar,
or from the grid when its value beats the price. What solar is left is exported up
to the limit and curtailed beyond it where it may be.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sitenode.baselines.common import charge_on_arrival, finish_battery, settle_grid
from sitenode.model.problem import SiteProblem
from sitenode.schedule import CHARGE, DISCHARGE, LOAD, PV, flex_column, schedule_columns


def priority_allocation(problem: SiteProblem) -> pd.DataFrame:
    columns = schedule_columns(problem)
    charge_on_arrival(problem, columns)
    p, b, dt = problem, problem.site.battery, problem.dt_h
    order = sorted(("fleet", "facility", "battery", "mining", "export"), key=lambda k: getattr(p.priorities, k))
    fleet = sum((columns[c] for c in columns if c.startswith("ev_")), np.zeros(p.steps))
    price = p.import_price
    spread = price.max() - price.min()
    cheap = price <= price.min() + 0.05 * abs(price.min()) if spread > 1e-12 else np.zeros(p.steps, dtype=bool)
    dear = price >= price.max() - 0.05 * abs(price.max()) if spread > 1e-12 else np.zeros(p.steps, dtype=bool)
    soc = p.soc_initial_kwh
    for t in range(p.steps):
        solar = columns[PV][t]
        room_kw = 0.0
        if b is not None:
            rate = b.max_charge_kw if b.max_charge_kw is not None else np.inf
            room_kw = min(rate, max(0.0, b.soc_max - soc) / (b.charge_efficiency * dt))
        flex_solar = 0.0
        for consumer in order:
            if consumer == "fleet":
                solar -= min(solar, fleet[t])
            elif consumer == "facility":
                solar -= min(solar, columns[LOAD][t])
            elif consumer == "battery" and b is not None:
                take = min(solar, room_kw)
                columns[CHARGE][t] = take
                solar -= take
            elif consumer == "mining":
                flex_solar = solar
                solar -= min(solar, sum(f.max_kw for f in p.site.flexible_loads))
            elif consumer == "export":
                solar -= min(solar, p.export_limit_kw)
        for load in p.site.flexible_loads:
            on_solar = min(load.max_kw, flex_solar)
            flex_solar -= on_solar
            columns[flex_column(load.id)][t] = (
                load.max_kw if load.value_per_kwh > price[t] else max(load.min_kw, on_solar)
            )
        if b is not None:
            if cheap[t]:
                columns[CHARGE][t] = room_kw
            elif dear[t] and columns[CHARGE][t] == 0:
                deficit = max(0.0, fleet[t] + columns[LOAD][t] - columns[PV][t])
                rate = b.max_discharge_kw if b.max_discharge_kw is not None else np.inf
                columns[DISCHARGE][t] = min(deficit, rate, max(0.0, soc - b.soc_min_kwh) * b.discharge_efficiency / dt)
            soc += (columns[CHARGE][t] * b.charge_efficiency - columns[DISCHARGE][t] / b.discharge_efficiency) * dt
    finish_battery(problem, columns)
    settle_grid(problem, columns)
    return pd.DataFrame(columns, index=problem.index)
