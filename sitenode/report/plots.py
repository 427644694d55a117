"""PNG plots of a site's schedules, drawn on Figure objects (no pyplot global state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
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


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def power_stack(problem: SiteProblem, frame: pd.DataFrame, path: Path) -> Path:
    """Supply stacked above zero, demand below, both in kW."""
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot()
    x = frame.index
    supply = {"grid import": frame[GRID_IMPORT], "PV used": frame[PV] - frame[CURTAIL], "battery discharge": frame[DISCHARGE]}
    demand = {"load": frame[LOAD], "EV charging": frame[ev_columns(frame)].sum(axis=1), "flexible loads": frame[flex_columns(frame)].sum(axis=1),
              "battery charge": frame[CHARGE], "export": frame[GRID_EXPORT]}
    ax.stackplot(x, *supply.values(), labels=list(supply), step="post", alpha=0.85, colors=["#5b6c8f", "#f2b134", "#2f9e77"])
    ax.stackplot(x, *(-v for v in demand.values()), labels=list(demand), step="post", alpha=0.85,
                 colors=["#8c8c8c", "#d95f02", "#7570b3", "#66a61e", "#e7298a"])
    if np.isfinite(problem.import_limit_kw).any():
        ax.step(x, problem.import_limit_kw, where="post", color="black", linestyle="--", linewidth=1, label="import limit")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("kW (supply +, demand −)")
    ax.set_title("Power stack, optimized")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    return _save(fig, path)


def soc(problem: SiteProblem, schedules: dict[str, pd.DataFrame], path: Path) -> Path:
    fig = Figure(figsize=(11, 3.5))
    ax = fig.add_subplot()
    for name, frame in schedules.items():
        ax.step(frame.index, frame[SOC], where="post", label=name, linewidth=2.2 if name == "optimized" else 1)
    b = problem.site.battery
    if b is not None:
        ax.axhline(b.soc_min_kwh, color="grey", linestyle=":", linewidth=1)
        ax.axhline(b.soc_max, color="grey", linestyle=":", linewidth=1)
    ax.set_ylabel("SOC (kWh)")
    ax.set_title("Battery state of charge" if b is not None else "Battery state of charge (no battery)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def prices(problem: SiteProblem, path: Path, currency: str) -> Path:
    fig = Figure(figsize=(11, 3.2))
    ax = fig.add_subplot()
    ax.step(problem.index, problem.import_price, where="post", label="import")
    ax.step(problem.index, problem.export_price, where="post", label="export")
    ax.set_ylabel(f"{currency}/kWh")
    twin = ax.twinx()
    twin.plot(problem.index, problem.carbon_kg_per_kwh, color="#2f9e77", linewidth=1, label="carbon")
    twin.set_ylabel("kg CO2/kWh")
    ax.set_title("Prices and carbon intensity")
    ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)


def ev_sessions(frame: pd.DataFrame, path: Path) -> Path:
    """One row per session when there are many (a heat map), else a line each."""
    cols = ev_columns(frame)
    fig = Figure(figsize=(11, max(3.0, 0.22 * len(cols) + 1.2)))
    ax = fig.add_subplot()
    if not cols:
        ax.text(0.5, 0.5, "no EV sessions", ha="center", va="center", transform=ax.transAxes)
    elif len(cols) > 6:
        data = frame[cols].to_numpy().T
        image = ax.imshow(data, aspect="auto", interpolation="nearest", cmap="viridis",
                          extent=(0, len(frame), len(cols) - 0.5, -0.5))
        ax.set_yticks(range(len(cols)), [c[3:-3] for c in cols], fontsize=6)
        ticks = np.linspace(0, len(frame) - 1, 7).astype(int)
        ax.set_xticks(ticks, [frame.index[i].strftime("%d %H:%M") for i in ticks], fontsize=7)
        fig.colorbar(image, ax=ax, label="kW")
    else:
        for c in cols:
            ax.step(frame.index, frame[c], where="post", label=c[3:-3])
        ax.legend(fontsize=7)
        ax.set_ylabel("kW")
    ax.set_title("EV charging per session, optimized")
    return _save(fig, path)
