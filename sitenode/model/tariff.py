"""Tariff windows, given in the site's local time, resolved to UTC steps in this one place.

A window holds a step when the step's start, in local wall-clock time, lies in
[start_time, end_time + 1 minute); a window whose start is after its end wraps past
midnight; where windows overlap, the first listed wins. Working on the local
wall-clock reading of each UTC step makes DST changes come out right: on a 23-hour
day the local 01:00 hour simply has no steps, on a 25-hour day it has twice as many.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sitenode.errors import InvalidInput
from sitenode.model.run import EnergyRate, WindowSchedule


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def window_mask(index: pd.DatetimeIndex, timezone: str, schedule: WindowSchedule) -> np.ndarray:
    """Boolean per step of `index` (UTC): does the local window hold the step's start?"""
    local = index.tz_convert(timezone)
    minute_of_day = np.asarray(local.hour * 60 + local.minute)
    start, end = _minutes(schedule.start_time), _minutes(schedule.end_time) + 1
    if start < end:
        mask = (minute_of_day >= start) & (minute_of_day < end)
    else:
        mask = (minute_of_day >= start) | (minute_of_day < end)
    if schedule.days_of_week is not None:
        mask &= np.isin(np.asarray(local.day_of_week), schedule.days_of_week)
    return mask


def energy_rate_series(
    index: pd.DatetimeIndex, timezone: str, rates: list[EnergyRate], field: str = "run_config.tariff.energy_rates"
) -> np.ndarray:
    """Price per step from TOU windows; every step must be covered by some window."""
    price = np.full(len(index), np.nan)
    for rate in rates:
        mask = window_mask(index, timezone, rate.schedule) & np.isnan(price)
        price[mask] = rate.rate
    gaps = np.flatnonzero(np.isnan(price))
    if len(gaps):
        first = index[gaps[0]].tz_convert(timezone)
        raise InvalidInput.one(field, f"no window covers {len(gaps)} step(s), first at {first.isoformat()} local time")
    return price
