import numpy as np
import pandas as pd
import pytest

from sitenode.errors import InvalidInput
from sitenode.model.run import EnergyRate, WindowSchedule
from sitenode.model.tariff import energy_rate_series, window_mask


def quarter_hours(day_local: str, tz: str) -> pd.DatetimeIndex:
    start = pd.Timestamp(day_local, tz=tz)
    end = start + pd.DateOffset(days=1)
    return pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="15min", inclusive="left")


@pytest.mark.parametrize(("day", "steps"), [("2025-03-30", 92), ("2025-10-26", 100), ("2025-06-01", 96)])
def test_evening_window_holds_sixteen_quarter_hours_on_dst_days(day, steps):
    index = quarter_hours(day, "Europe/London")
    assert len(index) == steps  # 23-, 25- and 24-hour days
    mask = window_mask(index, "Europe/London", WindowSchedule(start_time="16:00", end_time="19:59"))
    held = index[mask]
    assert len(held) == 16
    local = held.tz_convert("Europe/London")
    assert local[0].hour == 16 and local[0].minute == 0 and local[-1].hour == 19 and local[-1].minute == 45
    # in UTC the window moves with the clocks
    offset = 0 if day == "2025-10-26" else 1
    assert held[0].hour == 16 - offset


def test_night_window_on_the_long_day_holds_the_repeated_hour():
    index = quarter_hours("2025-10-26", "Europe/London")
    mask = window_mask(index, "Europe/London", WindowSchedule(start_time="00:00", end_time="06:59"))
    assert mask.sum() == 32  # 7 local hours, 01:00-01:59 twice


def test_end_time_counts_its_whole_minute_and_wraps_past_midnight():
    index = pd.date_range("2025-01-15T00:00Z", periods=96, freq="15min")
    late = window_mask(index, "UTC", WindowSchedule(start_time="23:00", end_time="00:59"))
    assert np.flatnonzero(late).tolist() == [0, 1, 2, 3, 92, 93, 94, 95]
    exact = window_mask(index, "UTC", WindowSchedule(start_time="07:00", end_time="07:00"))
    assert np.flatnonzero(exact).tolist() == [28]


def test_days_of_week():
    index = pd.date_range("2025-01-13T12:00Z", periods=7, freq="1D")  # Monday .. Sunday
    weekend = window_mask(index, "UTC", WindowSchedule(start_time="00:00", end_time="23:59", days_of_week=[5, 6]))
    assert weekend.tolist() == [False] * 5 + [True, True]


def test_first_listed_rate_wins_and_gaps_are_errors():
    index = pd.date_range("2025-01-15T00:00Z", periods=24, freq="1h")
    rates = [
        EnergyRate(rate=0.3, schedule=WindowSchedule(start_time="07:00", end_time="09:59")),
        EnergyRate(rate=0.2, schedule=WindowSchedule(start_time="00:00", end_time="23:59")),
    ]
    price = energy_rate_series(index, "UTC", rates)
    assert price[7:10].tolist() == [0.3] * 3 and price[0] == 0.2 and price[10] == 0.2
    with pytest.raises(InvalidInput, match="no window covers 21 step"):
        energy_rate_series(index, "UTC", rates[:1])
