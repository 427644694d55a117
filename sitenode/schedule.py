"""The canonical schedule: a DataFrame indexed by UTC step with the columns of DESIGN.md.

Every flow is non-negative in its named direction; at every step

    load + Σev + Σflex + battery_charge + grid_export
        = (pv − pv_curtail) + battery_discharge + grid_import

`soc_kwh` is the battery's state at the end of the step (0 without a battery). The
optimizer, every baseline and the backtest produce this shape; metrics, reports and
the dispatch engine read it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sitenode.model.problem import SiteProblem

GRID_IMPORT, GRID_EXPORT = "grid_import_kw", "grid_export_kw"
CHARGE, DISCHARGE, SOC = "battery_charge_kw", "battery_discharge_kw", "soc_kwh"
PV, CURTAIL, LOAD = "pv_kw", "pv_curtail_kw", "load_kw"
FIXED = (GRID_IMPORT, GRID_EXPORT, CHARGE, DISCHARGE, SOC, PV, CURTAIL, LOAD)


def ev_column(session_id: str) -> str:
    return f"ev_{session_id}_kw"


def flex_column(load_id: str) -> str:
    return f"flex_{load_id}_kw"


def ev_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("ev_") and c.endswith("_kw")]


def flex_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("flex_") and c.endswith("_kw")]


def schedule_columns(problem: SiteProblem) -> dict[str, np.ndarray]:
    """Every column of `problem`'s schedule as arrays: zero flows, load and PV filled in."""
    zeros = np.zeros(problem.steps)
    soc = problem.soc_initial_kwh if problem.site.battery is not None else 0.0
    columns = {name: zeros.copy() for name in FIXED}
    columns[PV] = np.asarray(problem.pv_kw, dtype=float).copy()
    columns[LOAD] = np.asarray(problem.load_kw, dtype=float).copy()
    columns[SOC] = np.full(problem.steps, soc)
    for w in problem.sessions:
        columns[ev_column(w.session_id)] = zeros.copy()
    for load in problem.site.flexible_loads:
        columns[flex_column(load.id)] = zeros.copy()
    return columns


def new_schedule(problem: SiteProblem) -> pd.DataFrame:
    """All columns of `problem`'s schedule, zero, with load and PV filled in."""
    return pd.DataFrame(schedule_columns(problem), index=problem.index)


def balance_residual(frame: pd.DataFrame) -> np.ndarray:
    """Demand minus supply per step (kW): zero for a physically consistent schedule."""
    demand = (
        frame[LOAD]
        + frame[ev_columns(frame)].sum(axis=1)
        + frame[flex_columns(frame)].sum(axis=1)
        + frame[CHARGE]
        + frame[GRID_EXPORT]
    )
    supply = frame[PV] - frame[CURTAIL] + frame[DISCHARGE] + frame[GRID_IMPORT]
    return (demand - supply).to_numpy()


def soc_trajectory(problem: SiteProblem, charge_kw: np.ndarray, discharge_kw: np.ndarray) -> np.ndarray:
    """SOC at the end of each step from the flows (the battery's own bookkeeping)."""
    b = problem.site.battery
    if b is None:
        return np.zeros(problem.steps)
    delta = (charge_kw * b.charge_efficiency - discharge_kw / b.discharge_efficiency) * problem.dt_h
    return problem.soc_initial_kwh + np.cumsum(delta)


def check_schedule(
    problem: SiteProblem,
    frame: pd.DataFrame,
    tol: float = 1e-5,
    *,
    limits: bool = True,
    assignment: dict[str, str] | None = None,
    floors: bool = True,
) -> list[str]:
    """Every physical rule a schedule must keep; empty when it keeps them all.

    With `limits` false, grid limits are not checked (business as usual ignores them).
    With `assignment` (session -> charger), charger ratings and circuit limits are too.
    With `floors` false, a flexible load may run below its `min_kw` and the battery may end
    below its final SOC target: what a plan that relaxed them (its Relaxation's
    flex_shortfall_kwh / soc_shortfall_kwh, given way to by priority) does. Zero, max_kw
    and [soc_min_kwh, soc_max_kwh] still hold. EV energy short of a session's need is never
    flagged here (only energy beyond what it may take): the Relaxation reports it.
    """
    bad: list[str] = []
    scale = tol * max(1.0, float(np.abs(frame.to_numpy()).max()))
    for col in frame.columns:
        if (frame[col] < -scale).any():
            bad.append(f"{col}: negative at {frame.index[int(np.argmax(frame[col] < -scale))]}")
    resid = balance_residual(frame)
    if (np.abs(resid) > scale).any():
        bad.append(f"energy balance off by up to {np.abs(resid).max():.6g} kW")
    # a balance kept by dropping load or inventing PV is no schedule of this problem
    if np.abs(frame[LOAD].to_numpy() - problem.load_kw).max(initial=0.0) > scale:
        bad.append("load_kw differs from the problem's fixed load")
    if np.abs(frame[PV].to_numpy() - problem.pv_kw).max(initial=0.0) > scale:
        bad.append("pv_kw differs from the problem's PV production")
    if (frame[CURTAIL] > frame[PV] + scale).any():
        bad.append("pv_curtail_kw exceeds pv_kw")
    if not (problem.site.pv is not None and problem.site.pv.curtailable) and (frame[CURTAIL] > scale).any():
        bad.append("pv_curtail_kw without curtailable PV")
    b = problem.site.battery
    if b is not None:
        soc = frame[SOC].to_numpy()
        expect = soc_trajectory(problem, frame[CHARGE].to_numpy(), frame[DISCHARGE].to_numpy())
        if np.abs(soc - expect).max() > scale:
            bad.append(f"soc_kwh does not follow the flows (off by {np.abs(soc - expect).max():.6g} kWh)")
        if soc.min() < b.soc_min_kwh - scale or soc.max() > b.soc_max + scale:
            bad.append("soc_kwh outside [soc_min_kwh, soc_max_kwh]")
        if floors and soc[-1] < problem.soc_final_min_kwh - scale:
            bad.append(f"final soc_kwh {soc[-1]:.6g} below soc_final_min_kwh {problem.soc_final_min_kwh:g}")
        if b.max_charge_kw is not None and frame[CHARGE].max() > b.max_charge_kw + scale:
            bad.append("battery_charge_kw above max_charge_kw")
        if b.max_discharge_kw is not None and frame[DISCHARGE].max() > b.max_discharge_kw + scale:
            bad.append("battery_discharge_kw above max_discharge_kw")
    elif (frame[[CHARGE, DISCHARGE]].to_numpy() > scale).any():
        bad.append("battery flows without a battery")
    for w in problem.sessions:
        ev = frame[ev_column(w.session_id)].to_numpy()
        outside = np.ones(problem.steps, dtype=bool)
        outside[w.first : w.stop] = False
        if (ev[outside] > scale).any():
            bad.append(f"{ev_column(w.session_id)}: charges outside its window")
        if ev.max(initial=0.0) > w.max_kw + scale:
            bad.append(f"{ev_column(w.session_id)}: above max_kw {w.max_kw:g}")
        if ev.sum() * problem.dt_h > w.cap_kwh + scale:
            bad.append(f"{ev_column(w.session_id)}: delivers more than the session needs")
    for load in problem.site.flexible_loads:
        f = frame[flex_column(load.id)]
        lowest = load.min_kw if floors else 0.0
        if f.min() < lowest - scale or f.max() > load.max_kw + scale:
            bad.append(f"{flex_column(load.id)}: outside [{lowest:g}, {load.max_kw:g}]")
    if assignment is not None:
        bad += _check_chargers_and_circuits(problem, frame, assignment, scale)
    if limits:
        margin = problem.site.grid.breach_margin
        if (frame[GRID_IMPORT].to_numpy() > problem.import_limit_kw * (1 + margin) + scale).any():
            bad.append("grid_import_kw above import limit and margin")
        if (frame[GRID_EXPORT].to_numpy() > problem.export_limit_kw + scale).any():
            bad.append("grid_export_kw above export limit")
    return bad


def _check_chargers_and_circuits(
    problem: SiteProblem, frame: pd.DataFrame, assignment: dict[str, str], scale: float
) -> list[str]:
    site = problem.site
    draw: dict[str, np.ndarray] = {c.id: np.zeros(problem.steps) for c in site.chargers}
    bad: list[str] = []
    for w in problem.sessions:
        ev = frame[ev_column(w.session_id)].to_numpy()
        if site.chargers and ev.max(initial=0.0) > scale and w.session_id not in assignment:
            bad.append(f"{ev_column(w.session_id)}: charges without a charger")
        if w.session_id in assignment:
            draw[assignment[w.session_id]] = draw[assignment[w.session_id]] + ev
    for c in site.chargers:
        if draw[c.id].max(initial=0.0) > c.max_kw + scale:
            bad.append(f"charger {c.id}: draws {draw[c.id].max():.6g} kW above its {c.max_kw:g}")
    for load in site.flexible_loads:
        draw[load.id] = frame[flex_column(load.id)].to_numpy()
    for circuit_id, members in site.circuit_leaves().items():
        total = sum((draw[m] for m in members if m in draw), np.zeros(problem.steps))
        cap = next(c.max_kw for c in site.circuits if c.id == circuit_id)
        if total.max(initial=0.0) > cap + scale:
            bad.append(f"circuit {circuit_id}: draws {total.max():.6g} kW above its {cap:g}")
    return bad
