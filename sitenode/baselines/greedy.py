"""Layer 3's greedy cheapest-slot EV fill (shared/seeds/000, "EV Charging — Greedy LP").

Effective cost per slot = cost weight × price + carbon weight × carbon intensity.
Sessions in order of priority (1 first), then earliest departure; each fills its
cheapest slots (earlier first on ties) at up to its rate until its energy is met,
within the site headroom left at each slot (import limit − load − flex + PV − what
earlier sessions took) and its charger's rating. The battery idles; flexible loads as
business as usual.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sitenode.baselines.common import (
    charger_limit,
    finish_battery,
    flex_columns_of,
    flex_when_worth_it,
    plug_in,
    settle_grid,
)
from sitenode.model.problem import SiteProblem
from sitenode.schedule import LOAD, PV, ev_column, schedule_columns


def greedy_cheapest_slot(problem: SiteProblem) -> pd.DataFrame:
    columns = schedule_columns(problem)
    flex_when_worth_it(problem, columns)
    dt, w_ = problem.dt_h, problem.objective
    base = columns[LOAD] + sum((columns[c] for c in flex_columns_of(columns)), np.zeros(problem.steps)) - columns[PV]
    headroom = np.clip(problem.import_limit_kw - base, 0.0, None)
    cost = w_.cost * problem.import_price + w_.carbon * problem.carbon_kg_per_kwh
    plugs = plug_in(problem)
    charger_used: dict[str, np.ndarray] = {}
    for w in sorted(problem.sessions, key=lambda w: (w.session.priority, w.session.departure, w.session_id)):
        cid = plugs[w.session_id]
        if problem.site.chargers and cid is None:
            continue
        rate = charger_limit(problem, w, cid)
        used = charger_used.setdefault(cid, np.zeros(problem.steps)) if cid else np.zeros(problem.steps)
        cap_kw = problem.site.charger(cid).max_kw if cid else rate  # type: ignore[union-attr]
        ev = columns[ev_column(w.session_id)]
        left = w.cap_kwh
        slots = np.arange(w.first, w.stop)
        for t in slots[np.argsort(cost[slots], kind="stable")]:
            if left <= 1e-12:
                break
            p = min(rate, cap_kw - used[t], headroom[t], left / dt)
            if p > 0:
                ev[t] += p
                used[t] += p
                headroom[t] -= p
                left -= p * dt
    finish_battery(problem, columns)
    settle_grid(problem, columns)
    return pd.DataFrame(columns, index=problem.index)
