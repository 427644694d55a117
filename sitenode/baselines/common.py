"""What the baselines share: EVs at full power from arrival, and settling the grid."""

from __future__ import annotations

import numpy as np

from sitenode.model.problem import EVER, SessionWindow, SiteProblem
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    LOAD,
    PV,
    SOC,
    ev_column,
    soc_trajectory,
)


def charger_limit(problem: SiteProblem, w: SessionWindow, charger_id: str | None) -> float:
    charger = problem.site.charger(charger_id) if charger_id else None
    return min(w.max_kw, charger.max_kw) if charger is not None else w.max_kw


def plug_in(problem: SiteProblem) -> dict[str, str | None]:
    """Session -> charger: named ones as given, the rest first come first served on a free one.

    Chargers named by some session are left to those sessions; a session that finds no
    free charger waits unplugged (gets None and no energy), as at a real depot.
    """
    site = problem.site
    if not site.chargers:
        return {w.session_id: None for w in problem.sessions}
    named = {w.session.charger_id for w in problem.sessions if w.session.charger_id}
    # a car holds its plug from arrival to departure (real times, not whole steps)
    free_at = {c.id: EVER for c in site.chargers if c.id not in named}
    out: dict[str, str | None] = {}
    for w in sorted(problem.sessions, key=lambda w: (w.session.arrival, w.session_id)):
        if w.session.charger_id:
            out[w.session_id] = w.session.charger_id
            continue
        # the fastest free charger: what a driver picks
        free = [cid for cid, t in free_at.items() if t <= w.session.arrival]
        if not free:
            out[w.session_id] = None
            continue
        best = max(free, key=lambda cid: (site.charger(cid).max_kw, -list(free_at).index(cid)))  # type: ignore[union-attr]
        out[w.session_id] = best
        free_at[best] = w.session.departure
    return out


def charge_on_arrival(problem: SiteProblem, columns: dict[str, np.ndarray]) -> None:
    """Business-as-usual EV charging: full power from the first step until the need is met.

    Sessions on one charger share its rating, earlier arrivals first.
    """
    dt = problem.dt_h
    plugs = plug_in(problem)
    used: dict[str, np.ndarray] = {}
    for w in sorted(problem.sessions, key=lambda w: (w.session.arrival, w.session_id)):
        cid = plugs[w.session_id]
        if problem.site.chargers and cid is None:
            continue
        rate = charger_limit(problem, w, cid)
        room = used.setdefault(cid or f"own:{w.session_id}", np.zeros(problem.steps))
        cap_kw = problem.site.charger(cid).max_kw if cid else rate  # type: ignore[union-attr]
        left = w.cap_kwh
        ev = columns[ev_column(w.session_id)]
        for t in range(w.first, w.stop):
            if left <= 1e-12:
                break
            p = min(rate, cap_kw - room[t], left / dt)
            if p > 0:
                ev[t] = p
                room[t] += p
                left -= p * dt


def flex_when_worth_it(problem: SiteProblem, columns: dict[str, np.ndarray]) -> None:
    """Flexible loads at full power whenever their value beats the import price, else at minimum."""
    for load in problem.site.flexible_loads:
        columns[f"flex_{load.id}_kw"] = np.where(
            load.value_per_kwh > problem.import_price, load.max_kw, load.min_kw
        ).astype(float)


def settle_grid(problem: SiteProblem, columns: dict[str, np.ndarray]) -> None:
    """Import what the site lacks, export what it has spare up to the export limit, and
    curtail PV beyond that when it may be curtailed (otherwise the export goes over)."""
    demand = (
        columns[LOAD]
        + columns[CHARGE]
        + sum((columns[c] for c in columns if c.startswith("ev_")), np.zeros(problem.steps))
    )
    demand = demand + sum((columns[c] for c in flex_columns_of(columns)), np.zeros(problem.steps))
    net = demand - columns[PV] - columns[DISCHARGE]
    columns[GRID_IMPORT] = np.clip(net, 0.0, None)
    surplus = np.clip(-net, 0.0, None)
    curtailable = problem.site.pv is not None and problem.site.pv.curtailable
    if curtailable:
        curtail = np.minimum(np.clip(surplus - problem.export_limit_kw, 0.0, None), columns[PV])
    else:
        curtail = np.zeros(problem.steps)
    columns[CURTAIL] = curtail
    columns[GRID_EXPORT] = surplus - curtail


def flex_columns_of(columns: dict[str, np.ndarray]) -> list[str]:
    return [c for c in columns if c.startswith("flex_") and c.endswith("_kw")]


def finish_battery(problem: SiteProblem, columns: dict[str, np.ndarray]) -> None:
    """Meet the final SOC floor by giving up discharge, then charging, in the last steps;
    then write the SOC column from the flows. Rules that idle or drain the battery stay
    feasible so."""
    b = problem.site.battery
    if b is None:
        return
    dt, eta_c, eta_d = problem.dt_h, b.charge_efficiency, b.discharge_efficiency
    ch, dis = columns[CHARGE], columns[DISCHARGE]
    rate = b.max_charge_kw if b.max_charge_kw is not None else np.inf
    for t in range(problem.steps - 1, -1, -1):
        soc = soc_trajectory(problem, ch, dis)
        missing = problem.soc_final_min_kwh - soc[-1]
        if missing <= 1e-9:
            break
        room = b.soc_max - soc[t:].max()  # raising step t raises every later SOC too
        if room <= 1e-12:
            continue
        drop = min(dis[t], missing * eta_d / dt, room * eta_d / dt)
        dis[t] -= drop
        missing -= drop * dt / eta_d
        room -= drop * dt / eta_d
        ch[t] += max(0.0, min(rate - ch[t], missing / (eta_c * dt), room / (eta_c * dt)))
    columns[SOC] = soc_trajectory(problem, ch, dis)
