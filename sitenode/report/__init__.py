"""Reports: PNG plots and one HTML page per bundle, and the savings table the CLI prints.

BUNDLE/report.html          the page; images linked relatively
BUNDLE/report/*.png         power_stack, soc (with a battery), prices, ev_sessions (with EVs)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pandas as pd

from sitenode.errors import InvalidInput
from sitenode.metrics import CostBreakdown
from sitenode.model.problem import SiteProblem
from sitenode.report import plots
from sitenode.report.html import Image, ReportPage, render_page, savings_table

OPTIMIZED = "optimized"
IMAGE_DIR = "report"
PAGE = "report.html"

_CAPTIONS = {
    plots.POWER_STACK: "Optimized schedule: supply (grid import, PV used, battery discharge) above zero, "
    "demand (load, EV charging, flexible loads, battery charge, export) below it.",
    plots.SOC_PLOT: "Battery state of charge at the end of each step, optimized and each baseline, within its bounds.",
    plots.PRICES: "Import and export price per step, carbon intensity of imports, demand-charge windows shaded.",
    plots.EV_SESSIONS: "Charging power of each EV session in the optimized schedule.",
}


def _check(problem: SiteProblem, schedules: dict[str, pd.DataFrame]) -> None:
    if OPTIMIZED not in schedules:
        raise InvalidInput.one("schedules", f"must include {OPTIMIZED!r}, got {sorted(schedules)}")
    for name, frame in schedules.items():
        if len(frame) != problem.steps:
            raise InvalidInput.one(
                f"schedules.{name}", f"must have one row per step ({problem.steps}), got {len(frame)}"
            )


def horizon_text(problem: SiteProblem) -> str:
    start = problem.start
    end = start + timedelta(minutes=problem.step_minutes * problem.steps)
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({problem.steps} steps of {problem.step_minutes} min)"


def write_report(
    out_dir: Path,
    problem: SiteProblem,
    schedules: dict[str, pd.DataFrame],
    metrics: dict[str, CostBreakdown],
    currency: str,
    title: str,
) -> Path:
    """Plots under `out_dir/report/`, the page at `out_dir/report.html`; returns the page's path.

    `schedules` must hold "optimized"; the SOC plot is drawn only for a site with a
    battery and the EV plot only when the optimized schedule charges sessions.
    """
    _check(problem, schedules)
    out_dir = Path(out_dir)
    images = out_dir / IMAGE_DIR
    images.mkdir(parents=True, exist_ok=True)
    optimized = schedules[OPTIMIZED]
    drawers: dict[str, Callable[[Path], Path | None]] = {
        plots.POWER_STACK: lambda p: plots.power_stack(problem, optimized, p),
        plots.SOC_PLOT: lambda p: plots.soc(problem, schedules, p),
        plots.PRICES: lambda p: plots.prices(problem, p, currency),
        plots.EV_SESSIONS: lambda p: plots.ev_sessions(problem, optimized, p),
    }
    drawn: list[Image] = []
    for name, draw in drawers.items():
        target = images / name
        if draw(target) is not None:
            drawn.append(Image(f"{IMAGE_DIR}/{name}", _CAPTIONS[name]))
        else:
            # A plot left over from an earlier report of this bundle would describe another run.
            target.unlink(missing_ok=True)
    page = ReportPage(
        title=title,
        site_id=problem.site.site_id,
        horizon=horizon_text(problem),
        currency=currency,
        metrics=metrics,
        images=drawn,
    )
    path = out_dir / PAGE
    path.write_text(render_page(page), encoding="utf-8")
    return path


__all__ = ["savings_table", "write_report"]
