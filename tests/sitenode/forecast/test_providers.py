import numpy as np
import pandas as pd

from sitenode.forecast import Persistence, SeasonalNaive, provider_for


def history(days: int = 2) -> pd.DataFrame:
    index = pd.date_range("2025-01-14T00:00Z", periods=24 * days, freq="1h")
    hour = np.asarray(index.hour, dtype=float)
    return pd.DataFrame({"load_kw": 10 + hour + 100 * np.asarray(index.day == 15), "pv_kw": np.clip(hour - 8, 0, None)}, index=index)


def ahead(hours: int = 6) -> pd.DatetimeIndex:
    return pd.date_range("2025-01-16T00:00Z", periods=hours, freq="1h")


def test_persistence_holds_the_last_load_and_repeats_yesterdays_pv():
    out = Persistence(60).forecast(history(), ahead(30))
    assert (out["load_kw"] == history()["load_kw"].iloc[-1]).all()
    expected_pv = np.clip(np.arange(30) % 24 - 8, 0, None)
    assert out["pv_kw"].tolist() == expected_pv.tolist()


def test_seasonal_naive_repeats_the_same_step_a_day_earlier():
    out = SeasonalNaive(60).forecast(history(), ahead())
    assert out["load_kw"].tolist() == [110 + h for h in range(6)]


def test_short_and_empty_histories_fall_back():
    short = history().iloc[-3:]
    out = SeasonalNaive(60).forecast(short, ahead(3))
    assert (out["load_kw"] == short["load_kw"].iloc[-1]).all()
    cold = Persistence(60).forecast(history().iloc[:0], ahead(3))
    assert (cold.to_numpy() == 0).all()


def test_provider_for_names():
    assert isinstance(provider_for("persistence", 15), Persistence)
    assert isinstance(provider_for("seasonal_naive", 15), SeasonalNaive)
