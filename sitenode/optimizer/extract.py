"""Solution vector back to the canonical schedule, and pools back to named chargers."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import numpy as np
import pandas as pd

from sitenode.model.problem import EVER, SessionWindow, SiteProblem
from sitenode.optimizer.formulation import Pool, SiteColumns
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    SOC,
    ev_column,
    flex_column,
    schedule_columns,
)


def _clean(values: np.ndarray) -> np.ndarray:
    # solver noise of ±1e-10 should not read as a tiny reverse flow
    out = np.where(np.abs(values) < 1e-9, 0.0, values)
    return np.maximum(out, 0.0)


def schedule_frame(problem: SiteProblem, cols: SiteColumns, x: np.ndarray | None) -> pd.DataFrame:
    columns = schedule_columns(problem)
    if x is None:
        return pd.DataFrame(columns, index=problem.index) * np.nan
    columns[GRID_IMPORT] = _clean(x[cols.grid_import])
    columns[GRID_EXPORT] = _clean(x[cols.grid_export])
    if cols.charge is not None and cols.discharge is not None and cols.soc is not None:
        columns[CHARGE] = _clean(x[cols.charge])
        columns[DISCHARGE] = _clean(x[cols.discharge])
        columns[SOC] = np.maximum(x[cols.soc], 0.0)
    if cols.curtail is not None:
        columns[CURTAIL] = _clean(x[cols.curtail])
    for load_id, c in cols.flex.items():
        columns[flex_column(load_id)] = _clean(x[c])
    for seg in cols.segments:
        columns[ev_column(seg.session_id)][seg.first : seg.first + len(seg.cols)] += _clean(x[seg.cols])
    # one DataFrame built at once: inserting columns one by one costs more than the solve
    return pd.DataFrame(columns, index=problem.index)


def chosen_pools(problem: SiteProblem, cols: SiteColumns, x: np.ndarray) -> dict[str, str]:
    """Session id -> the pool it charges from: its binary's pool, or where its energy went."""
    energy: dict[str, dict[str, float]] = defaultdict(dict)
    for seg in cols.segments:
        if seg.pool is not None:
            energy[seg.session_id][seg.pool] = float(x[seg.cols].sum())
    out: dict[str, str] = {}
    for w in problem.sessions:
        choice = cols.choice.get(w.session_id)
        if choice:
            pool = max(choice, key=lambda k: x[choice[k]])
            if x[choice[pool]] >= 0.5:  # else the plan gives this session no charger at all
                out[w.session_id] = pool
        elif energy.get(w.session_id):
            out[w.session_id] = max(energy[w.session_id], key=energy[w.session_id].__getitem__)
    return out


def colour_pools(problem: SiteProblem, pools: dict[str, Pool], pool_of: dict[str, str]) -> dict[str, str]:
    """Session id -> charger id: named chargers as given, pooled sessions by interval colouring.

    Within a pool, sessions sorted by arrival take the charger that became free first; a
    car holds its charger from arrival to departure (real times, not whole steps). The MIP
    kept every pool's count within its chargers at every arrival, so this never runs out
    of chargers. Both engines share this step.
    """
    out = {w.session_id: w.session.charger_id for w in problem.sessions if w.session.charger_id}
    members: dict[str, list[SessionWindow]] = defaultdict(list)
    for w in problem.sessions:
        if w.session_id in pool_of:
            members[pool_of[w.session_id]].append(w)
    for pool_key, windows in members.items():
        free_at: dict[str, datetime] = {cid: EVER for cid in pools[pool_key].charger_ids}
        for w in sorted(windows, key=lambda w: (w.session.arrival, w.session.departure)):
            free = (cid for cid, t in free_at.items() if t <= w.session.arrival)
            charger = min(free, key=free_at.__getitem__, default=None)
            if charger is None:
                continue
            out[w.session_id] = charger
            free_at[charger] = w.session.departure
    return out


def assign_chargers(problem: SiteProblem, cols: SiteColumns, x: np.ndarray) -> dict[str, str]:
    return colour_pools(problem, cols.pools, chosen_pools(problem, cols, x))
