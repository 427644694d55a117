"""Forecasts of load and PV for the steps ahead, from what has been observed so far.

A provider gets the observed history (UTC-indexed, columns `load_kw` and `pv_kw`, every
row strictly before the first step it must forecast) and the steps to forecast, and
returns a frame with those two columns on exactly those steps. Pure: no I/O, no clock.

* `Persistence`: load holds its last observed value. PV repeats the value at the same
  time one day earlier (holding the last PV value would carry night into the day, or
  a noon peak into the night); where the history lacks that day, the last PV value.
* `SeasonalNaive`: load and PV both repeat the value at the same step one season
  earlier (a day unless told otherwise), falling back to `Persistence` step by step
  where the history is too short.

A step more than one season ahead repeats the latest season the history holds (two
days ahead repeats two days back), so a window longer than the season still gets a
seasonal forecast.

Cold start: with no history at all, both forecast zeros for load and PV. A plan made so
is blind (the site finds out what it draws when it draws it); a backtest passes every
series row before the decision time, so this happens only when the series starts at
the horizon.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from sitenode.errors import InvalidInput

COLUMNS = ("load_kw", "pv_kw")
DAY = pd.Timedelta(hours=24)


class ForecastProvider(Protocol):
    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        """`load_kw` and `pv_kw` on `index`, from `history` (rows before index[0])."""
        ...


def _zeros(index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame(0.0, index=index, columns=list(COLUMNS))


def _last(history: pd.DataFrame, column: str) -> float:
    observed = history[column].dropna()
    return float(observed.iloc[-1]) if len(observed) else 0.0


def same_step_earlier(history: pd.DataFrame, index: pd.DatetimeIndex, column: str, period: pd.Timedelta) -> np.ndarray:
    """`column` at each step of `index` minus the fewest whole `period`s that land at or
    before the last observation; NaN where the history does not hold that step."""
    values = np.full(len(index), np.nan)
    if history.empty or len(index) == 0:
        return values
    series = history[column]
    last = history.index[-1]
    back = np.maximum(1, np.ceil((index - last) / period).to_numpy(dtype=float)).astype(int)
    for k in np.unique(back):
        where = back == k
        values[where] = series.reindex(index[where] - int(k) * period).to_numpy(dtype=float)
    return values


class Persistence:
    """Load: the last observed value. PV: the same time a day earlier, else the last value."""

    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        if history.empty:
            return _zeros(index)
        load = np.full(len(index), _last(history, "load_kw"))
        pv = same_step_earlier(history, index, "pv_kw", DAY)
        pv = np.where(np.isnan(pv), _last(history, "pv_kw"), pv)
        return pd.DataFrame({"load_kw": load, "pv_kw": pv}, index=index)


class SeasonalNaive:
    """Both series one season (`period_steps` steps of `step_minutes`; default a day) earlier."""

    def __init__(self, step_minutes: int, period_steps: int | None = None) -> None:
        if step_minutes <= 0:
            raise InvalidInput.one("step_minutes", f"must be > 0, got {step_minutes}")
        steps = period_steps if period_steps is not None else int(DAY / pd.Timedelta(minutes=step_minutes))
        if steps <= 0:
            raise InvalidInput.one("period_steps", f"must be > 0, got {steps}")
        self.period = pd.Timedelta(minutes=step_minutes) * steps
        self.fallback = Persistence()

    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        if history.empty:
            return _zeros(index)
        fallback = self.fallback.forecast(history, index)
        out = {}
        for column in COLUMNS:
            seasonal = same_step_earlier(history, index, column, self.period)
            out[column] = np.where(np.isnan(seasonal), fallback[column].to_numpy(), seasonal)
        return pd.DataFrame(out, index=index)


def provider_for(name: str, step_minutes: int) -> ForecastProvider:
    """The provider a run config names (`backtest.forecast`, the node's `plan.forecast`)."""
    if name == "persistence":
        return Persistence()
    if name == "seasonal_naive":
        return SeasonalNaive(step_minutes)
    raise InvalidInput.one("forecast", f"must be 'persistence' or 'seasonal_naive', got {name!r}")
