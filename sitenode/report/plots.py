"""PNG plots of a site's schedules.

Each figure is a `matplotlib.figure.Figure` rendered by the Agg canvas: pyplot's global
state is never touched, so drawing a report is safe inside a server or a test run.
Time runs along x in UTC. Every per-step quantity is drawn as a step held over its whole
step, so x carries one more point than there are steps (the horizon's end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import dates as mdates
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
    ev_columns,
    flex_columns,
)

POWER_STACK, SOC_PLOT, PRICES, EV_SESSIONS = "power_stack.png", "soc.png", "prices.png", "ev_sessions.png"
FILE_NAMES = (POWER_STACK, SOC_PLOT, PRICES, EV_SESSIONS)

# Above this many sessions one line each is unreadable; a heat map (a row each) is not.
HEATMAP_FROM_SESSIONS = 9
_DPI = 110
_WIDTH_IN = 11.0
_OPTIMIZED = "optimized"

_SUPPLY_COLORS = ("#4c6a92", "#f2b134", "#2f9e77")
_DEMAND_COLORS = ("#8c8c8c", "#d95f02", "#7570b3", "#66a61e", "#e7298a")


def time_edges(problem: SiteProblem) -> np.ndarray:
    """Step starts plus the horizon's end, as naive UTC datetime64 (matplotlib's native dates)."""
    start = problem.index.tz_convert("UTC").tz_localize(None) if problem.index.tz is not None else problem.index
    end = start[-1] + pd.Timedelta(minutes=problem.step_minutes)
    return start.append(pd.DatetimeIndex([end])).to_numpy()


def _held(values: np.ndarray | pd.Series) -> np.ndarray:
    """Per-step values with the last repeated, to pair with `time_edges` in a post-step plot."""
    arr = np.asarray(values, dtype=float)
    return np.append(arr, arr[-1]) if arr.size else arr


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    # "no limit" is inf in the problem; NaN leaves a gap instead of stretching the axis.
    arr = np.asarray(values, dtype=float)
    return np.where(np.isfinite(arr), arr, np.nan)


def _new_figure(height_in: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(_WIDTH_IN, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _time_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.grid(True, axis="both", color="#e3e3e3", linewidth=0.6)
    ax.set_axisbelow(True)


def _legend_outside(ax: Axes, handles: Sequence[Artist] | None = None, labels: Sequence[str] | None = None) -> None:
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    elif labels is None:  # what matplotlib's legend does then: each handle's own label
        labels = [str(h.get_label()) for h in handles]
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def power_stack(problem: SiteProblem, frame: pd.DataFrame, path: Path) -> Path:
    """Supply stacked above zero, demand stacked below it (kW); the two mirror each other."""
    x = time_edges(problem)
    evs, flexes = ev_columns(frame), flex_columns(frame)
    supply = {
        "grid import": frame[GRID_IMPORT],
        "PV used": frame[PV] - frame[CURTAIL],
        "battery discharge": frame[DISCHARGE],
    }
    demand = {
        "load": frame[LOAD],
        "EV charging": frame[evs].sum(axis=1) if evs else pd.Series(0.0, index=frame.index),
        "flexible loads": frame[flexes].sum(axis=1) if flexes else pd.Series(0.0, index=frame.index),
        "battery charge": frame[CHARGE],
        "grid export": frame[GRID_EXPORT],
    }
    fig, ax = _new_figure(4.6)
    # Clipping at zero keeps a solver's -1e-9 from drawing a sliver on the wrong side.
    ax.stackplot(
        x,
        *(np.clip(_held(v), 0.0, None) for v in supply.values()),
        labels=list(supply),
        colors=_SUPPLY_COLORS,
        step="post",
        alpha=0.9,
        linewidth=0,
    )
    ax.stackplot(
        x,
        *(-np.clip(_held(v), 0.0, None) for v in demand.values()),
        labels=list(demand),
        colors=_DEMAND_COLORS,
        step="post",
        alpha=0.9,
        linewidth=0,
    )
    limit = _finite_or_nan(problem.import_limit_kw)
    if np.isfinite(limit).any():
        ax.step(x, _held(limit), where="post", color="black", linestyle="--", linewidth=1.2, label="import limit")
        margin = problem.site.grid.breach_margin
        if margin > 0:
            ax.step(
                x,
                _held(limit * (1 + margin)),
                where="post",
                color="#b2182b",
                linestyle=":",
                linewidth=1.2,
                label=f"import limit + {margin:.0%} breach margin",
            )
    ax.axhline(0.0, color="black", linewidth=0.7)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("kW  (supply +, demand −)")
    ax.set_title("Power balance, optimized schedule")
    _time_axis(ax)
    _legend_outside(ax)
    return _save(fig, path)


def soc(problem: SiteProblem, schedules: Mapping[str, pd.DataFrame], path: Path) -> Path | None:
    """SOC of every schedule that has one, within the battery's bounds; None without a battery."""
    battery = problem.site.battery
    if battery is None:
        return None
    x = time_edges(problem)
    fig, ax = _new_figure(3.8)
    # `soc_kwh` is the state at a step's end and flows are constant within a step, so a
    # straight line from the initial SOC through each step's end is the true trajectory.
    # Baselines often share a trajectory (an idle battery); distinct dashes keep each visible.
    dashes = ((0, (6, 3)), (0, (2, 2)), (0, (8, 3, 2, 3)), (0, (1, 3)), "-")
    baselines = [name for name in schedules if name != _OPTIMIZED]
    for i, name in enumerate([_OPTIMIZED, *baselines]):
        frame = schedules.get(name)
        if frame is None or SOC not in frame.columns:
            continue
        y = np.concatenate(([problem.soc_initial_kwh], frame[SOC].to_numpy(dtype=float)))
        if name == _OPTIMIZED:
            ax.plot(x, y, label=name, linewidth=2.6, color="black", zorder=3)
        else:
            ax.plot(x, y, label=name, linewidth=1.4, linestyle=dashes[(i - 1) % len(dashes)], zorder=2)
    bounds = "#7a7a7a"
    ax.axhline(battery.soc_min_kwh, color=bounds, linestyle=(0, (1, 1)), linewidth=1.4, label="SOC min / max")
    ax.axhline(battery.soc_max, color=bounds, linestyle=(0, (1, 1)), linewidth=1.4)
    ax.plot(
        [x[-1]],
        [problem.soc_final_min_kwh],
        marker="<",
        color=bounds,
        linestyle="none",
        markersize=9,
        label="final SOC min",
        clip_on=False,
        zorder=4,
    )
    pad = 0.04 * battery.capacity_kwh  # keeps a bound at 0 or at capacity off the frame
    ax.set_ylim(-pad, battery.capacity_kwh + pad)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("state of charge (kWh)")
    ax.set_title(f"Battery state of charge (capacity {battery.capacity_kwh:g} kWh)")
    _time_axis(ax)
    _legend_outside(ax)
    return _save(fig, path)


def _window_spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) step runs where `mask` holds."""
    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False])).astype(int)
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[0::2].tolist(), change[1::2].tolist(), strict=True))


def prices(problem: SiteProblem, path: Path, currency: str) -> Path:
    """Import and export price per step, carbon intensity on a second axis, demand windows shaded."""
    x = time_edges(problem)
    fig, ax = _new_figure(3.6)
    charged = np.zeros(problem.steps, dtype=bool)
    for window in problem.demand_windows:
        charged |= np.asarray(window.mask, dtype=bool)
    for i, (first, stop) in enumerate(_window_spans(charged)):
        ax.axvspan(
            x[first], x[stop], color="#fde0c5", alpha=0.6, linewidth=0, label="demand-charge window" if i == 0 else None
        )
    ax.step(x, _held(problem.import_price), where="post", color="#4c6a92", linewidth=1.8, label="import price")
    ax.step(x, _held(problem.export_price), where="post", color="#f2b134", linewidth=1.8, label="export price")
    ax.set_ylabel(f"{currency}/kWh")
    ax.set_xlim(x[0], x[-1])
    _time_axis(ax)
    twin = ax.twinx()
    twin.step(
        x,
        _held(problem.carbon_kg_per_kwh),
        where="post",
        color="#2f9e77",
        linewidth=1.2,
        linestyle="-.",
        label="carbon intensity",
    )
    twin.set_ylabel("kg CO₂/kWh imported")
    top = float(np.nanmax(problem.carbon_kg_per_kwh, initial=0.0))
    twin.set_ylim(0.0, top * 1.1 if top > 0 else 1.0)
    ax.set_title("Prices and carbon intensity")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    # The legend sits beyond the twin axis' labels, so it is anchored a little further out.
    ax.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8, frameon=False)
    return _save(fig, path)


def ev_sessions(problem: SiteProblem, frame: pd.DataFrame, path: Path) -> Path | None:
    """Charging power of each EV session: a line each, or a heat map when there are many.

    None when the schedule charges no sessions at all (no `ev_<id>_kw` columns).
    """
    cols = ev_columns(frame)
    if not cols:
        return None
    x = time_edges(problem)
    names = [c[len("ev_") : -len("_kw")] for c in cols]
    if len(cols) < HEATMAP_FROM_SESSIONS:
        fig, ax = _new_figure(3.8)
        for col, name in zip(cols, names, strict=True):
            ax.step(x, _held(frame[col]), where="post", linewidth=1.6, label=name)
        ax.set_ylabel("kW")
        ax.set_ylim(bottom=0.0)
        ax.set_xlim(x[0], x[-1])
        ax.set_title("EV charging per session, optimized schedule")
        _time_axis(ax)
        _legend_outside(ax)
        return _save(fig, path)
    return _save(_ev_heatmap(problem, frame, cols, names, x), path)


def _ev_heatmap(problem: SiteProblem, frame: pd.DataFrame, cols: list[str], names: list[str], x: np.ndarray) -> Figure:
    windows = {w.column: w for w in problem.sessions}
    values = frame[cols].to_numpy(dtype=float).T
    mask = np.zeros(values.shape, dtype=bool)
    # Steps outside a session's window stay blank, so "present but idle" reads apart from "absent".
    for row, col in enumerate(cols):
        w = windows.get(col)
        if w is not None:
            outside = np.ones(problem.steps, dtype=bool)
            outside[w.first : w.stop] = False
            mask[row] = outside
    data = np.ma.masked_array(values, mask=mask)
    fig, ax = _new_figure(min(12.0, max(3.6, 0.2 * len(cols) + 1.6)))
    lo, hi = mdates.date2num(x[0]), mdates.date2num(x[-1])
    image = ax.imshow(
        data, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, extent=(lo, hi, len(cols) - 0.5, -0.5)
    )
    ax.set_facecolor("#f4f4f4")
    ax.xaxis_date()
    _time_axis(ax)
    ax.grid(False)
    if len(cols) <= 40:
        ax.set_yticks(range(len(cols)), names, fontsize=7)
    else:
        ax.set_ylabel("session (row)")
    ax.set_title(f"EV charging per session, optimized schedule ({len(cols)} sessions; blank: not plugged in)")
    fig.colorbar(image, ax=ax, label="kW", pad=0.01)
    return fig
