"""Tariff windows: local wall-clock time resolved to UTC steps, DST days included.

Expected UTC times are written out by hand: London is UTC+0 in winter and UTC+1 in
summer; on 2025-03-30 clocks go forward at 01:00 UTC (a 23-hour day), on 2025-10-26
they go back at 01:00 UTC (a 25-hour day in which 01:00-01:59 local happens twice).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_problem, run_config, series_frame

from sitenode.errors import InvalidInput
from sitenode.model.problem import build_problem
from sitenode.model.run import EnergyRate, WindowSchedule
from sitenode.model.site import SiteConfig
from sitenode.model.tariff import energy_rate_series, window_mask
from sitenode.model.timeseries import check_series

LONDON = "Europe/London"


def utc(start: str, end: str, freq: str = "15min") -> pd.DatetimeIndex:
    """UTC steps from `start` up to, not including, `end`."""
    return pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=freq, inclusive="left")


def window(start: str, end: str, days: list[int] | None = None) -> WindowSchedule:
    return WindowSchedule(start_time=start, end_time=end, days_of_week=days)


def held(index: pd.DatetimeIndex, schedule: WindowSchedule, tz: str = LONDON) -> pd.DatetimeIndex:
    return index[window_mask(index, tz, schedule)]


# the local day 2025-03-30 runs 00:00 GMT (00:00Z) to 24:00 BST (23:00Z)
SPRING = utc("2025-03-30T00:00Z", "2025-03-30T23:00Z")
# the local day 2025-10-26 runs 00:00 BST (2025-10-25T23:00Z) to 24:00 GMT (2025-10-27T00:00Z)
AUTUMN = utc("2025-10-25T23:00Z", "2025-10-27T00:00Z")


def test_the_dst_days_have_23_and_25_hours():
    assert len(SPRING) == 92 and len(AUTUMN) == 100


@pytest.mark.parametrize(
    ("index", "first_utc"),
    [
        (SPRING, "2025-03-30T15:00Z"),  # 16:00 BST
        (AUTUMN, "2025-10-26T16:00Z"),  # 16:00 GMT
        (utc("2025-06-01T00:00Z", "2025-06-02T00:00Z"), "2025-06-01T15:00Z"),  # an ordinary summer day
        (utc("2025-01-15T00:00Z", "2025-01-16T00:00Z"), "2025-01-15T16:00Z"),  # and a winter one
    ],
)
def test_an_evening_window_holds_sixteen_quarter_hours_at_the_right_utc_times(index, first_utc):
    got = held(index, window("16:00", "19:59"))
    assert got.equals(pd.date_range(pd.Timestamp(first_utc), periods=16, freq="15min"))


def test_a_night_window_on_the_25_hour_day_holds_the_repeated_hour():
    got = held(AUTUMN, window("00:00", "06:59"))
    # 00:00 BST (23:00Z the day before) up to 07:00 GMT (07:00Z): 8 real hours
    assert len(got) == 32
    assert got.equals(utc("2025-10-25T23:00Z", "2025-10-26T07:00Z"))


def test_a_night_window_on_the_23_hour_day_loses_the_skipped_hour():
    got = held(SPRING, window("00:00", "06:59"))
    # 00:00 GMT (00:00Z) up to 07:00 BST (06:00Z): 6 real hours
    assert got.equals(utc("2025-03-30T00:00Z", "2025-03-30T06:00Z"))


def test_a_window_wraps_past_midnight():
    index = utc("2025-01-15T00:00Z", "2025-01-16T00:00Z", "1h")
    got = np.flatnonzero(window_mask(index, "UTC", window("22:00", "01:59")))
    assert got.tolist() == [0, 1, 22, 23]
    # start right after end: the whole day
    assert window_mask(index, "UTC", window("07:00", "06:59")).all()


def test_end_time_counts_its_whole_minute():
    index = utc("2025-01-15T06:00Z", "2025-01-15T09:00Z")  # 06:00 .. 08:45
    assert held(index, window("07:00", "07:14"), "UTC").equals(utc("2025-01-15T07:00Z", "2025-01-15T07:15Z"))
    # 07:15 starts inside [07:00, 07:16): held
    assert held(index, window("07:00", "07:15"), "UTC").equals(utc("2025-01-15T07:00Z", "2025-01-15T07:30Z"))
    minutes = utc("2025-01-15T06:58Z", "2025-01-15T07:03Z", "1min")
    assert held(minutes, window("07:00", "07:00"), "UTC").equals(utc("2025-01-15T07:00Z", "2025-01-15T07:01Z", "1min"))
    assert window_mask(utc("2025-01-15T00:00Z", "2025-01-16T00:00Z", "1min"), "UTC", window("00:00", "23:59")).all()


def test_days_of_week_are_local_days_monday_zero():
    noons = utc("2025-01-13T12:00Z", "2025-01-20T12:00Z", "1D")  # Monday .. Sunday
    weekend = window_mask(noons, "UTC", window("00:00", "23:59", [5, 6]))
    assert weekend.tolist() == [False] * 5 + [True, True]
    # 23:30Z on Friday 2025-01-17 is already Saturday 00:30 in Auckland (UTC+13)
    friday_night = pd.DatetimeIndex([pd.Timestamp("2025-01-17T23:30Z")])
    assert window_mask(friday_night, "Pacific/Auckland", window("00:00", "23:59", [5])).tolist() == [True]
    assert window_mask(friday_night, "UTC", window("00:00", "23:59", [5])).tolist() == [False]


def test_the_first_listed_rate_wins_where_windows_overlap():
    index = utc("2025-01-15T00:00Z", "2025-01-16T00:00Z", "1h")
    peak = EnergyRate(rate=0.3, schedule=window("07:00", "09:59"))
    flat = EnergyRate(rate=0.2, schedule=window("00:00", "23:59"))
    price = energy_rate_series(index, "UTC", [peak, flat])
    assert price.tolist() == [0.2] * 7 + [0.3] * 3 + [0.2] * 14
    assert (energy_rate_series(index, "UTC", [flat, peak]) == 0.2).all()


def test_steps_no_window_covers_are_an_error_naming_the_first_in_local_time():
    index = utc("2025-06-01T00:00Z", "2025-06-02T00:00Z", "1h")
    rates = [EnergyRate(rate=0.3, schedule=window("07:00", "22:59"))]
    with pytest.raises(InvalidInput) as exc:
        energy_rate_series(index, LONDON, rates)
    (v,) = exc.value.violations
    # the steps are 01:00 BST on 1 June up to 00:00 BST on 2 June; uncovered are local
    # 01:00-06:00 and 23:00, 00:00: 8 steps, the first being the very first step
    assert v.field == "run_config.tariff.energy_rates"
    assert v.description == "no window covers 8 step(s), first at 2025-06-01T01:00:00+01:00 local time"


def test_build_problem_resolves_rates_and_demand_windows_in_the_sites_local_time():
    run = {
        "tariff": {
            "energy_rates": [
                {"rate": 0.3, "schedule": {"start_time": "16:00", "end_time": "19:59"}},
                {"rate": 0.1, "schedule": {"start_time": "00:00", "end_time": "23:59"}},
            ],
            "export_rate": 0.04,
            "demand_charges": [
                {"name": "evening", "rate_per_kw": 5, "schedule": {"start_time": "16:00", "end_time": "19:59"}}
            ],
        }
    }
    start = pd.Timestamp("2025-06-01T00:00Z")
    cfg = run_config(24, 60, start=start, **run)
    raw = series_frame([1.0] * 24, start=start)
    p = build_problem(SiteConfig(site_id="s", timezone=LONDON), cfg, check_series(raw, cfg.horizon, cfg.tariff))
    # 16:00-19:59 BST is 15:00-18:59Z
    assert np.flatnonzero(p.import_price == 0.3).tolist() == [15, 16, 17, 18]
    assert np.flatnonzero(p.demand_windows[0].mask).tolist() == [15, 16, 17, 18]
    assert (p.export_price == 0.04).all()


def test_price_columns_win_over_the_tariff():
    run = {
        "tariff": {
            "energy_rates": [{"rate": 0.3, "schedule": {"start_time": "00:00", "end_time": "23:59"}}],
            "export_rate": 0.04,
        }
    }
    p = make_problem({}, run, load=[1, 1], prices=[0.11, 0.12], export_prices=[0.01, 0.02])
    assert p.import_price.tolist() == [0.11, 0.12] and p.export_price.tolist() == [0.01, 0.02]
