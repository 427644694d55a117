"""check_series: the input series is refused with the column, the row and the value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import START, run_config, series_frame

from sitenode.errors import InvalidInput
from sitenode.model.run import RunConfig
from sitenode.model.timeseries import check_series

ALL_DAY = {
    "energy_rates": [{"rate": 0.2, "schedule": {"start_time": "00:00", "end_time": "23:59"}}],
    "export_rate": 0.0,
}
HOURS = pd.date_range(START, periods=6, freq="1h")


def run(steps: int = 4, **fields) -> RunConfig:
    return run_config(steps, 60, **{"tariff": ALL_DAY, **fields})


def frame(**overrides) -> pd.DataFrame:
    data = {"timestamp": HOURS, "load_kw": [1.0] * 6, "pv_kw": [0.0] * 6}
    data.update(overrides)
    return pd.DataFrame(data)


def violations(raw: pd.DataFrame, cfg: RunConfig | None = None) -> dict[str, str]:
    cfg = cfg or run()
    with pytest.raises(InvalidInput) as exc:
        check_series(raw, cfg.horizon, cfg.tariff)
    return {v.field: v.description for v in exc.value.violations}


def test_a_good_series_comes_back_as_utc_floats_of_the_known_columns():
    raw = frame(carbon_kg_per_kwh=[0.2] * 6, notes=["x"] * 6)
    raw["load_kw"] = ["1", "2", "3", "4", "5", "6"]  # CSV text parses
    out = check_series(raw, run().horizon, run().tariff)
    assert list(out.columns) == ["load_kw", "pv_kw", "carbon_kg_per_kwh"]
    assert out["load_kw"].tolist() == [1, 2, 3, 4, 5, 6] and out.dtypes.eq(float).all()
    assert out.index.equals(HOURS) and str(out.index.tz) == "UTC"


def test_local_timestamps_and_an_index_are_accepted_and_held_in_utc():
    raw = frame(timestamp=HOURS.tz_convert("Europe/Berlin")).set_index("timestamp")
    out = check_series(raw, run().horizon, run().tariff)
    assert out.index.equals(HOURS)


def test_negative_prices_are_allowed():
    out = check_series(
        frame(import_price_per_kwh=[-0.1] * 6, export_price_per_kwh=[-0.2] * 6), run().horizon, run().tariff
    )
    assert out["export_price_per_kwh"].min() == -0.2


@pytest.mark.parametrize(
    ("raw", "field", "text"),
    [
        (frame().drop(columns="load_kw"), "timeseries.load_kw", "column is required"),
        (frame().drop(columns="pv_kw"), "timeseries.pv_kw", "column is required"),
        (frame().rename(columns={"timestamp": "time"}), "timeseries.timestamp", "column is required"),
        (
            frame(timestamp=["2025-01-15T00:00Z", "soon", "x", "y", "z", "w"]),
            "timeseries.timestamp",
            "must be ISO 8601 times",
        ),
        (
            frame(load_kw=[1, 1, np.nan, 1, 1, 1]),
            "timeseries.load_kw",
            "NaN or not a number at row 2 (2025-01-15T02:00:00+00:00), got nan",
        ),
        (frame(pv_kw=[0, 0, 0, 0, np.inf, 0]), "timeseries.pv_kw", "at row 4 (2025-01-15T04:00:00+00:00), got inf"),
        (
            frame(load_kw=[1, 1, "abc", 1, 1, 1]),
            "timeseries.load_kw",
            "NaN or not a number at row 2 (2025-01-15T02:00:00+00:00), got 'abc'",
        ),
        (
            frame(load_kw=[1, 1, -3, 1, 1, 1]),
            "timeseries.load_kw",
            "must be >= 0, got -3 at row 2 (2025-01-15T02:00:00+00:00)",
        ),
        (frame(pv_kw=[0, -0.5, 0, 0, 0, 0]), "timeseries.pv_kw", "must be >= 0, got -0.5 at row 1"),
        (frame(import_limit_kw=[5, 5, 5, -1, 5, 5]), "timeseries.import_limit_kw", "must be >= 0, got -1 at row 3"),
        (frame(import_price_per_kwh=[0.1, 0.1, 0.1, 0.1, 0.1, np.nan]), "timeseries.import_price_per_kwh", "at row 5"),
        (
            frame(timestamp=HOURS[[0, 2, 1, 3, 4, 5]]),
            "timeseries.timestamp",
            "must increase, got 2025-01-15T01:00:00+00:00 after 2025-01-15T02:00:00+00:00 at row 2",
        ),
        (
            frame(timestamp=HOURS[[0, 1, 1, 2, 3, 4]]),
            "timeseries.timestamp",
            "must increase, got 2025-01-15T01:00:00+00:00 after 2025-01-15T01:00:00+00:00 at row 2",
        ),
        (
            frame(timestamp=HOURS[[0, 1, 2, 3, 4]].append(pd.DatetimeIndex([START + pd.Timedelta(hours=7)]))),
            "timeseries.timestamp",
            "gap at row 5: expected 2025-01-15T05:00:00+00:00, got 2025-01-15T07:00:00+00:00",
        ),
        (
            frame(timestamp=pd.date_range(START, periods=6, freq="30min")),
            "timeseries.timestamp",
            "step must be horizon.step_minutes (60 min), got 30 min",
        ),
        (
            frame(timestamp=pd.date_range(START, periods=6, freq="2h")),
            "timeseries.timestamp",
            "step must be horizon.step_minutes (60 min), got 120 min",
        ),
        (frame(timestamp=pd.date_range(START, periods=6, freq="75min")), "timeseries.timestamp", "got 75 min"),
        (frame().iloc[:0], "timeseries.timestamp", "the series is empty"),
    ],
)
def test_series_errors_name_the_column_row_and_value(raw: pd.DataFrame, field: str, text: str) -> None:
    found = violations(raw)
    assert field in found, found
    assert text in found[field]


def test_every_bad_column_is_reported_at_once():
    found = violations(frame(load_kw=[1, -1, 1, 1, 1, 1], pv_kw=[0, 0, np.nan, 0, 0, 0]))
    assert set(found) == {"timeseries.load_kw", "timeseries.pv_kw"}


def test_price_columns_are_required_only_where_the_tariff_gives_no_rate():
    bare = run_config(4, 60)
    found = violations(frame(), bare)
    assert found == {
        "timeseries.import_price_per_kwh": "column is required (the tariff gives no rate)",
        "timeseries.export_price_per_kwh": "column is required (the tariff gives no rate)",
    }
    assert set(violations(frame(), run_config(4, 60, tariff={"export_rate": 0.05}))) == {
        "timeseries.import_price_per_kwh"
    }
    check_series(frame(import_price_per_kwh=[0.1] * 6, export_price_per_kwh=[0.0] * 6), bare.horizon, bare.tariff)


def test_a_horizon_longer_than_the_series_is_refused():
    found = violations(frame(), run(steps=7))
    assert found == {
        "run_config.horizon": "7 steps from 2025-01-15T00:00:00+00:00 need the series to cover up to "
        "2025-01-15T07:00:00+00:00, it covers 2025-01-15T00:00:00+00:00 to 2025-01-15T06:00:00+00:00"
    }
    # exactly as long is fine
    assert len(check_series(frame(), run(steps=6).horizon, run().tariff)) == 6


def test_a_horizon_starting_before_the_series_is_refused():
    early = run(start=START - pd.Timedelta(hours=1))
    assert "run_config.horizon" in violations(frame(), early)


def test_a_horizon_start_off_the_series_grid_is_refused():
    off = run(steps=3, start=START + pd.Timedelta(minutes=30))
    assert violations(frame(), off) == {
        "run_config.horizon.start": "must fall on a step of the series (2025-01-15T00:00:00+00:00 + k × 60 min), "
        "got 2025-01-15T00:30:00+00:00"
    }
    # on the grid, but later than the first row: fine
    later = run(steps=3, start=START + pd.Timedelta(hours=2))
    assert len(check_series(frame(), later.horizon, later.tariff)) == 6


def test_quarter_hour_series_for_a_quarter_hour_horizon():
    cfg = run_config(96, 15, tariff=ALL_DAY)
    raw = series_frame([1.0] * 96, step_minutes=15)
    assert len(check_series(raw, cfg.horizon, cfg.tariff)) == 96
    assert "timeseries.timestamp" in violations(raw, run_config(24, 60, tariff=ALL_DAY))
