"""Forecasts of load and PV for the steps ahead, from what has been observed so far.

* `Persistence`: load holds its last observed value; PV repeats the same step one day
  earlier (holding the last PV value would carry night into day), else its last value.
* `SeasonalNaive(period_steps)`: both repeat the value one season earlier (a day by
  default), falling back to persistence where the history is too short.

With no history at all (a cold start) both forecast zeros: the plan is then made
blind, and the backtest's realized cost shows what that costs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

COLUMNS = ("load_kw", "pv_kw")


class ForecastProvider(Protocol):
    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        """`load_kw` and `pv_kw` for `index`, from `history` (steps before index[0])."""
        ...


def _same_step_earlier(history: pd.DataFrame, index: pd.DatetimeIndex, column: str, period: pd.Timedelta) -> np.ndarray:
    """Value one period before each step; where that lies in the forecast itself, go back
    whole periods until it lies in the history; NaN where history is too short."""
    values = np.full(len(index), np.nan)
    if history.empty:
        return values
    series = history[column]
    last = history.index[-1]
    # how many periods back each step must look to land at or before the last observation
    periods = np.maximum(1, np.ceil((index - last) / period).astype(int))
    for k in np.unique(periods):
        where = periods == k
        values[where] = series.reindex(index[where] - k * period).to_numpy()
    return values


class Persistence:
    def __init__(self, step_minutes: int) -> None:
        self.day = pd.Timedelta(hours=24)

    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        if history.empty:
            return pd.DataFrame(0.0, index=index, columns=list(COLUMNS))
        load = np.full(len(index), float(history["load_kw"].iloc[-1]))
        pv = _same_step_earlier(history, index, "pv_kw", self.day)
        pv = np.where(np.isnan(pv), float(history["pv_kw"].iloc[-1]), pv)
        return pd.DataFrame({"load_kw": load, "pv_kw": pv}, index=index)


class SeasonalNaive:
    def __init__(self, step_minutes: int, period_steps: int | None = None) -> None:
        steps = period_steps if period_steps is not None else 24 * 60 // step_minutes
        self.period = pd.Timedelta(minutes=step_minutes * steps)
        self.fallback = Persistence(step_minutes)

    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        fallback = self.fallback.forecast(history, index)
        out = {}
        for column in COLUMNS:
            seasonal = _same_step_earlier(history, index, column, self.period)
            out[column] = np.where(np.isnan(seasonal), fallback[column].to_numpy(), seasonal)
        return pd.DataFrame(out, index=index)


def provider_for(name: str, step_minutes: int) -> ForecastProvider:
    providers = {"persistence": Persistence, "seasonal_naive": SeasonalNaive}
    return providers[name](step_minutes)
