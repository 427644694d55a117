"""Forecast providers on hand-made series whose right answers can be read off by eye."""

import numpy as np
import pandas as pd
import pytest

from sitenode.errors import InvalidInput
from sitenode.forecast import Persistence, SeasonalNaive, provider_for

DAY1 = pd.Timestamp("2025-01-14T00:00Z")


def observed(hours: int, start: pd.Timestamp = DAY1, freq: str = "1h") -> pd.DataFrame:
    """Load = 1000·day + hour (each day distinct), PV = hour − 8 from 9 h on (0 before)."""
    index = pd.date_range(start, periods=hours, freq=freq)
    hour = np.asarray(index.hour, dtype=float)
    day = np.asarray((index - DAY1).days, dtype=float)
    return pd.DataFrame({"load_kw": 1000 * day + hour, "pv_kw": np.clip(hour - 8, 0, None)}, index=index)


def ahead(start: str, hours: int, freq: str = "1h") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=hours, freq=freq)


def test_persistence_holds_the_last_load():
    history = observed(48)  # last row: day 1, 23 h
    out = Persistence().forecast(history, ahead("2025-01-16T00:00Z", 6))
    assert out["load_kw"].tolist() == [1023.0] * 6


def test_persistence_repeats_yesterdays_pv_not_the_last_value():
    history = observed(36)  # up to 2025-01-15 11:00, where PV is 3 kW
    index = ahead("2025-01-15T12:00Z", 16)  # noon to 03:00: PV must fall to zero overnight
    out = Persistence().forecast(history, index)
    expected = np.clip(np.asarray(index.hour, dtype=float) - 8, 0, None)
    assert out["pv_kw"].tolist() == expected.tolist()
    assert out["pv_kw"].iloc[-1] == 0.0 and history["pv_kw"].iloc[-1] == 3.0


def test_steps_more_than_a_day_ahead_repeat_the_latest_day_held():
    history = observed(24)  # one day only
    index = ahead("2025-01-15T00:00Z", 48)
    out = SeasonalNaive(60).forecast(history, index)
    assert out["load_kw"].tolist() == [float(h) for h in range(24)] * 2
    assert Persistence().forecast(history, index)["pv_kw"].tolist() == np.clip(np.arange(48) % 24 - 8, 0, None).tolist()


def test_seasonal_naive_returns_yesterdays_same_step():
    out = SeasonalNaive(60).forecast(observed(48), ahead("2025-01-16T05:00Z", 4))
    assert out["load_kw"].tolist() == [1005.0, 1006.0, 1007.0, 1008.0]
    assert out["pv_kw"].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_seasonal_naive_default_season_is_a_day_in_steps_of_the_run():
    history = observed(96 * 2, freq="15min")
    out = SeasonalNaive(15).forecast(history, ahead("2025-01-16T10:15Z", 2, "15min"))
    assert out["load_kw"].tolist() == [1010.0, 1010.0]  # 10:15 and 10:30 one day back, day 1


def test_seasonal_naive_with_a_shorter_season():
    # a 6-step season on hourly steps: 02:00 on the 16th repeats 20:00 on the 15th
    out = SeasonalNaive(60, period_steps=6).forecast(observed(48), ahead("2025-01-16T02:00Z", 1))
    assert out["load_kw"].tolist() == [1020.0]


def test_seasonal_naive_falls_back_to_persistence_where_history_is_short():
    history = observed(3, start=pd.Timestamp("2025-01-15T09:00Z"))  # 09:00-11:00 on day 1
    out = SeasonalNaive(60).forecast(history, ahead("2025-01-15T12:00Z", 3))
    assert out["load_kw"].tolist() == [1011.0] * 3
    assert out["pv_kw"].tolist() == [3.0] * 3  # nor does the history hold yesterday's PV


def test_a_gap_in_the_history_falls_back_step_by_step():
    history = observed(48).drop(pd.Timestamp("2025-01-15T03:00Z"))
    out = SeasonalNaive(60).forecast(history, ahead("2025-01-16T02:00Z", 3))
    assert out["load_kw"].tolist() == [1002.0, 1023.0, 1004.0]


@pytest.mark.parametrize("provider", [Persistence(), SeasonalNaive(60)])
def test_cold_start_forecasts_zeros_on_the_requested_steps(provider):
    index = ahead("2025-01-15T00:00Z", 5)
    out = provider.forecast(observed(0), index)
    assert out.index.equals(index)
    assert list(out.columns) == ["load_kw", "pv_kw"]
    assert (out.to_numpy() == 0).all()


def test_provider_for_names_and_refuses_unknown_ones():
    assert isinstance(provider_for("persistence", 15), Persistence)
    seasonal = provider_for("seasonal_naive", 15)
    assert isinstance(seasonal, SeasonalNaive) and seasonal.period == pd.Timedelta(hours=24)
    with pytest.raises(InvalidInput) as err:
        provider_for("prophet", 15)
    assert err.value.violations[0].field == "forecast"
