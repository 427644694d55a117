"""Small builders for the site-model and optimizer tests: plain dicts in, checked objects out.

Import them with `from conftest import make_problem` (tests/ is on the path). Sessions
give `arrival`/`departure` as step numbers from START (fractions fall between steps);
everything else is the YAML/CSV contract of shared/BUNDLE.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse

START = pd.Timestamp("2025-01-15T00:00:00Z")  # a Wednesday, far from any DST change


def site_config(**fields: Any) -> SiteConfig:
    return parse(SiteConfig, {"site_id": "t", **fields}, "site_config")


def run_config(steps: int, step_minutes: int = 60, start: pd.Timestamp = START, **fields: Any) -> RunConfig:
    horizon = {"start": start.isoformat(), "step_minutes": step_minutes, "steps": steps}
    return parse(RunConfig, {"horizon": horizon, **fields}, "run_config")


def series_frame(
    load: Sequence[float],
    pv: Sequence[float] | None = None,
    *,
    step_minutes: int = 60,
    start: pd.Timestamp = START,
    **columns: Sequence[float],
) -> pd.DataFrame:
    """A raw timeseries as a bundle holds it: a `timestamp` column and one row per step."""
    steps = len(load)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=steps, freq=f"{step_minutes}min"),
            "load_kw": np.asarray(load, dtype=float),
            "pv_kw": np.zeros(steps) if pv is None else np.asarray(pv, dtype=float),
        }
    )
    for name, values in columns.items():
        frame[name] = np.asarray(values, dtype=float)
    return frame


def session(
    session_id: str,
    arrival: float,
    departure: float,
    energy_kwh: float,
    max_kw: float,
    *,
    step_minutes: int = 60,
    **fields: Any,
) -> EVSession:
    step = pd.Timedelta(minutes=step_minutes)
    return EVSession(
        session_id=session_id,
        arrival=START + arrival * step,
        departure=START + departure * step,
        energy_kwh=energy_kwh,
        max_kw=max_kw,
        **fields,
    )


def make_problem(
    site: Mapping[str, Any],
    run: Mapping[str, Any],
    load: Sequence[float],
    pv: Sequence[float] | None = None,
    *,
    sessions: Sequence[Mapping[str, Any]] = (),
    step_minutes: int = 60,
    prices: Sequence[float] | None = None,
    export_prices: Sequence[float] | None = None,
    **columns: Sequence[float],
) -> SiteProblem:
    """One site over len(load) steps from START, through the same checks a bundle passes.

    Without a price column or tariff rate, import costs 0.2 and export earns 0 per kWh.
    `run` needs no horizon: it is len(load) steps of `step_minutes`.
    """
    steps = len(load)
    tariff = run.get("tariff", {})
    if prices is None and not tariff.get("energy_rates"):
        prices = [0.2] * steps
    if export_prices is None and tariff.get("export_rate") is None:
        export_prices = [0.0] * steps
    if prices is not None:
        columns["import_price_per_kwh"] = prices
    if export_prices is not None:
        columns["export_price_per_kwh"] = export_prices
    cfg = run_config(steps, step_minutes, **run)
    raw = series_frame(load, pv, step_minutes=step_minutes, **columns)
    evs = [session(**{**s, "step_minutes": step_minutes}) for s in sessions]
    return build_problem(site_config(**site), cfg, check_series(raw, cfg.horizon, cfg.tariff), evs)
