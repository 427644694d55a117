"""Reports: PNG plots and one HTML page per bundle, and the savings table the CLI prints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sitenode.metrics import CostBreakdown
from sitenode.model.problem import SiteProblem
from sitenode.report import plots
from sitenode.report.html import page, savings_table, write_page


def write_report(out_dir: Path, problem: SiteProblem, schedules: dict[str, pd.DataFrame], metrics: dict[str, CostBreakdown],
                 currency: str, title: str) -> Path:
    """Plots under `out_dir/report/`, the page at `out_dir/report.html`; returns the page's path."""
    images = Path(out_dir) / "report"
    images.mkdir(parents=True, exist_ok=True)
    optimized = schedules["optimized"]
    drawn = [
        plots.power_stack(problem, optimized, images / "power_stack.png"),
        plots.soc(problem, schedules, images / "soc.png"),
        plots.prices(problem, images / "prices.png", currency),
        plots.ev_sessions(optimized, images / "ev_sessions.png"),
    ]
    horizon = f"{problem.index[0].isoformat()} + {problem.steps} × {problem.step_minutes} min"
    text = page(title, horizon, metrics, currency, [f"report/{p.name}" for p in drawn])
    return write_page(Path(out_dir) / "report.html", text)


__all__ = ["savings_table", "write_report"]
