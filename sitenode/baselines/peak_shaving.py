"""Layer 3's two-pass peak shaving (shared/seeds/000, "Peak Shaving — Two-Pass Dispatch").

EVs and flexible loads run as business as usual. The peak target is the lowest the
battery can hold, found by bisection: pass 1 walks forward and discharges wherever net
load (load + EVs + flex − PV) exceeds the target, within the rate and SOC. Pass 2
recharges what was discharged (and what the final SOC floor needs) in the cheapest
slots with headroom below the target, never pushing SOC over its maximum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sitenode.baselines.common import (
    charge_on_arrival,
    finish_battery,
    flex_columns_of,
    flex_when_worth_it,
    settle_grid,
)
from sitenode.model.problem import SiteProblem
from sitenode.schedule import CHARGE, DISCHARGE, LOAD, PV, schedule_columns, soc_trajectory


def _discharge_pass(problem: SiteProblem, net: np.ndarray, target: float) -> tuple[np.ndarray, bool]:
    b = problem.site.battery
    assert b is not None
    dt = problem.dt_h
    rate = b.max_discharge_kw if b.max_discharge_kw is not None else np.inf
    soc, dis, held = problem.soc_initial_kwh, np.zeros(problem.steps), True
    for t in range(problem.steps):
        excess = net[t] - target
        if excess > 0:
            d = min(excess, rate, max(0.0, soc - b.soc_min_kwh) * b.discharge_efficiency / dt)
            dis[t] = d
            soc -= d * dt / b.discharge_efficiency
            held &= d >= excess - 1e-9
    return dis, held


def two_pass_peak_shaving(problem: SiteProblem) -> pd.DataFrame:
    columns = schedule_columns(problem)
    charge_on_arrival(problem, columns)
    flex_when_worth_it(problem, columns)
    b = problem.site.battery
    if b is not None and problem.steps:
        ev = sum((columns[c] for c in columns if c.startswith("ev_")), np.zeros(problem.steps))
        net = (
            columns[LOAD]
            + ev
            + sum((columns[c] for c in flex_columns_of(columns)), np.zeros(problem.steps))
            - columns[PV]
        )
        lo, hi = max(0.0, float(net.max()) - (b.max_discharge_kw or np.inf)), float(max(net.max(), 0.0))
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if _discharge_pass(problem, net, mid)[1] else (mid, hi)
        target = hi
        dis, _ = _discharge_pass(problem, net, target)
        columns[DISCHARGE] = dis
        _recharge(problem, columns, net, target)
    finish_battery(problem, columns)
    settle_grid(problem, columns)
    return pd.DataFrame(columns, index=problem.index)


def _recharge(problem: SiteProblem, columns: dict[str, np.ndarray], net: np.ndarray, target: float) -> None:
    b = problem.site.battery
    assert b is not None
    dt, eta = problem.dt_h, b.charge_efficiency
    ch, dis = columns[CHARGE], columns[DISCHARGE]
    rate = b.max_charge_kw if b.max_charge_kw is not None else np.inf
    wanted = problem.soc_initial_kwh - soc_trajectory(problem, ch, dis)[-1]
    wanted = max(wanted, problem.soc_final_min_kwh - soc_trajectory(problem, ch, dis)[-1], 0.0)
    headroom = np.clip(target - net, 0.0, None)
    for t in np.argsort(problem.import_price, kind="stable"):
        if wanted <= 1e-9:
            break
        room = b.soc_max - soc_trajectory(problem, ch, dis)[t:].max()
        c = min(rate - ch[t], headroom[t], wanted / (eta * dt), max(room, 0.0) / (eta * dt))
        if c > 0 and dis[t] == 0:
            ch[t] += c
            wanted -= c * eta * dt
