"""Small site problems built from plain dicts and lists: the unit tests' raw material."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse

START = pd.Timestamp("2025-01-15T00:00:00Z")


def make_problem(
    site: dict[str, Any],
    load: Sequence[float],
    pv: Sequence[float] | None = None,
    *,
    prices: Sequence[float] | None = None,
    export_prices: Sequence[float] | None = None,
    sessions: Sequence[dict[str, Any]] = (),
    step_minutes: int = 60,
    run: dict[str, Any] | None = None,
    extra: dict[str, Sequence[float]] | None = None,
) -> SiteProblem:
    """A problem over len(load) steps from START. Sessions give arrival/departure as step numbers."""
    steps = len(load)
    index = pd.date_range(START, periods=steps, freq=f"{step_minutes}min")
    frame = pd.DataFrame(
        {
            "timestamp": index,
            "load_kw": np.asarray(load, float),
            "pv_kw": np.zeros(steps) if pv is None else np.asarray(pv, float),
        }
    )
    frame["import_price_per_kwh"] = np.full(steps, 0.2) if prices is None else np.asarray(prices, float)
    frame["export_price_per_kwh"] = np.zeros(steps) if export_prices is None else np.asarray(export_prices, float)
    for name, values in (extra or {}).items():
        frame[name] = np.asarray(values, float)
    run_doc = {"horizon": {"start": START.isoformat(), "step_minutes": step_minutes, "steps": steps}, **(run or {})}
    cfg = parse(RunConfig, run_doc)
    site_cfg = parse(SiteConfig, {"site_id": "t", **site})
    step = pd.Timedelta(minutes=step_minutes)
    evs = [
        EVSession(**{**s, "arrival": START + s["arrival"] * step, "departure": START + s["departure"] * step})
        for s in sessions
    ]
    return build_problem(site_cfg, cfg, check_series(frame, cfg.horizon, cfg.tariff), evs)
