"""Every bad field is refused with its path and the value it got."""

import pandas as pd
import pytest

from sitenode.errors import InvalidInput
from sitenode.model.problem import build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession, check_sessions
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse

BATTERY = {"capacity_kwh": 500, "soc_initial_kwh": 250, "soc_min_kwh": 50, "soc_max_kwh": 475}
ALL_DAY = [{"rate": 0.2, "schedule": {"start_time": "00:00", "end_time": "23:59"}}]
RUN = {
    "horizon": {"start": "2025-01-15T00:00:00Z", "step_minutes": 60, "steps": 4},
    "tariff": {"energy_rates": ALL_DAY, "export_rate": 0.0},
}


def violations(model, data, prefix=""):
    with pytest.raises(InvalidInput) as exc:
        parse(model, data, prefix)
    return {v.field: v.description for v in exc.value.violations}


@pytest.mark.parametrize(
    ("patch", "field", "text"),
    [
        (
            {"battery": {**BATTERY, "soc_min_kwh": 500}},
            "site_config.battery.soc_min_kwh",
            "must be <= soc_max_kwh (475), got 500",
        ),
        ({"battery": {**BATTERY, "capacity_kwh": -5}}, "site_config.battery.capacity_kwh", "must be > 0, got -5"),
        (
            {"battery": {**BATTERY, "soc_max_kwh": 600}},
            "site_config.battery.soc_max_kwh",
            "must be <= capacity_kwh (500), got 600",
        ),
        ({"battery": {**BATTERY, "soc_initial_kwh": 10}}, "site_config.battery.soc_initial_kwh", "got 10"),
        (
            {"battery": {**BATTERY, "charge_efficiency": 1.2}},
            "site_config.battery.charge_efficiency",
            "must be <= 1, got 1.2",
        ),
        ({"grid": {"import_limit_kw": 0}}, "site_config.grid.import_limit_kw", "must be > 0, got 0"),
        ({"grid": {"breach_margin": -0.1}}, "site_config.grid.breach_margin", "must be >= 0"),
        ({"timezone": "Mars/Olympus"}, "site_config.timezone", "IANA"),
        (
            {"chargers": [{"id": "a", "max_kw": 22, "kind": "wireless"}]},
            "site_config.chargers[0].kind",
            "must be one of",
        ),
        (
            {"chargers": [{"id": "a", "max_kw": 22}, {"id": "a", "max_kw": 50}]},
            "site_config.chargers[1].id",
            "duplicates",
        ),
        (
            {"flexible_loads": [{"id": "m", "min_kw": 60, "max_kw": 50}]},
            "site_config.flexible_loads[0].min_kw",
            "must be <= max_kw (50), got 60",
        ),
        (
            {"circuits": [{"id": "c", "max_kw": 5, "members": ["ghost"]}]},
            "site_config.circuits[0].members[0]",
            "got 'ghost'",
        ),
        ({"pv": {"curtailable": True, "kwp": 5}}, "site_config.pv.kwp", "is not a known field"),
        ({"site_id": ""}, "site_config.site_id", "got ''"),
    ],
)
def test_site_config_errors_name_field_and_value(patch, field, text):
    found = violations(SiteConfig, {"site_id": "s", **patch}, "site_config")
    assert field in found, found
    assert text in found[field]


def test_circuit_cycles_are_refused():
    circuits = [{"id": "a", "max_kw": 5, "members": ["b"]}, {"id": "b", "max_kw": 5, "members": ["a"]}]
    assert "circuits[0].members" in violations(SiteConfig, {"site_id": "s", "circuits": circuits})


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"horizon": {"start": "2025-01-15T00:00:00", "steps": 4}}, "run_config.horizon.start"),
        ({"horizon": {"start": "2025-01-15T00:00:00Z", "steps": 0}}, "run_config.horizon.steps"),
        (
            {"horizon": {"start": "2025-01-15T00:00:00Z", "steps": 4, "step_minutes": 7}},
            "run_config.horizon.step_minutes",
        ),
        ({"mode": "live"}, "run_config.mode"),
        (
            {"tariff": {"energy_rates": [{"rate": 0.1, "schedule": {"start_time": "25:00", "end_time": "01:00"}}]}},
            "run_config.tariff.energy_rates[0].schedule.start_time",
        ),
        ({"objective": {"cost": -1}}, "run_config.objective.cost"),
        ({"backtest": {"window_steps": 4, "reoptimize_every_steps": 8}}, "run_config.backtest.reoptimize_every_steps"),
    ],
)
def test_run_config_errors_name_the_field(patch, field):
    assert field in violations(RunConfig, {**RUN, **patch}, "run_config")


def frame(**overrides) -> pd.DataFrame:
    data = {
        "timestamp": pd.date_range("2025-01-15T00:00Z", periods=6, freq="1h"),
        "load_kw": [1.0] * 6,
        "pv_kw": [0.0] * 6,
    }
    data.update(overrides)
    return pd.DataFrame(data)


@pytest.mark.parametrize(
    ("series", "field", "text"),
    [
        (frame().drop(columns="pv_kw"), "timeseries.pv_kw", "column is required"),
        (frame(load_kw=[1, 1, float("nan"), 1, 1, 1]), "timeseries.load_kw", "row 2"),
        (frame(load_kw=[1, 1, -3, 1, 1, 1]), "timeseries.load_kw", "must be >= 0, got -3"),
        (frame(load_kw=[1, 1, "abc", 1, 1, 1]), "timeseries.load_kw", "got 'abc'"),
        (
            frame(
                timestamp=pd.to_datetime(
                    [
                        "2025-01-15T00:00Z",
                        "2025-01-15T02:00Z",
                        "2025-01-15T01:00Z",
                        "2025-01-15T03:00Z",
                        "2025-01-15T04:00Z",
                        "2025-01-15T05:00Z",
                    ]
                )
            ),
            "timeseries.timestamp",
            "must increase",
        ),
        (
            frame(
                timestamp=pd.date_range("2025-01-15T00:00Z", periods=6, freq="1h")
                .delete(3)
                .append(pd.DatetimeIndex(["2025-01-15T07:00Z"]))
            ),
            "timeseries.timestamp",
            "gap at row 3",
        ),
        (
            frame(timestamp=pd.date_range("2025-01-15T00:00Z", periods=6, freq="30min")),
            "timeseries.timestamp",
            "step must be",
        ),
        (
            frame(
                timestamp=pd.date_range("2025-01-15T00:00Z", periods=6, freq="1h").insert(
                    2, pd.Timestamp("2025-01-15T01:00Z")
                )[:6]
            ),
            "timeseries.timestamp",
            "must increase",
        ),
    ],
)
def test_series_errors_name_the_column_and_row(series, field, text):
    run = parse(RunConfig, RUN)
    with pytest.raises(InvalidInput) as exc:
        check_series(series, run.horizon, run.tariff)
    found = {v.field: v.description for v in exc.value.violations}
    assert field in found, found
    assert text in found[field]


def test_horizon_longer_than_series_and_missing_prices():
    run = parse(RunConfig, {**RUN, "horizon": {"start": "2025-01-15T00:00:00Z", "step_minutes": 60, "steps": 10}})
    with pytest.raises(InvalidInput, match="need the series to cover"):
        check_series(frame(), run.horizon, run.tariff)
    no_tariff = parse(RunConfig, {"horizon": RUN["horizon"]})
    with pytest.raises(InvalidInput) as exc:
        check_series(frame(), no_tariff.horizon, no_tariff.tariff)
    assert {v.field for v in exc.value.violations} == {
        "timeseries.import_price_per_kwh",
        "timeseries.export_price_per_kwh",
    }


def test_sessions_are_checked_against_the_site():
    site = parse(SiteConfig, {"site_id": "s", "chargers": [{"id": "cp-1", "max_kw": 22}]})
    with pytest.raises(InvalidInput) as exc:
        parse(
            EVSession,
            {
                "session_id": "a",
                "arrival": "2025-01-15T03:00:00Z",
                "departure": "2025-01-15T02:00:00Z",
                "energy_kwh": 5,
                "max_kw": 7,
            },
            "sessions[0]",
        )
    assert exc.value.violations[0].field == "sessions[0].departure"
    ok = dict(arrival="2025-01-15T01:00:00Z", departure="2025-01-15T03:00:00Z", energy_kwh=5, max_kw=7)
    sessions = [EVSession(session_id="a", **ok), EVSession(session_id="a", charger_id="cp-9", **ok)]
    with pytest.raises(InvalidInput) as exc:
        check_sessions(site, sessions)
    assert {v.field for v in exc.value.violations} == {"sessions[1].session_id", "sessions[1].charger_id"}


def test_unreachable_final_soc_is_an_input_error_unless_asked_to_lower_it():
    site = parse(
        SiteConfig,
        {
            "site_id": "s",
            "battery": {"capacity_kwh": 100, "soc_initial_kwh": 0, "soc_final_min_kwh": 90, "max_charge_kw": 10},
        },
    )
    run = parse(RunConfig, RUN)
    series = check_series(frame(), run.horizon, run.tariff)
    with pytest.raises(InvalidInput) as exc:
        build_problem(site, run, series)
    assert exc.value.violations[0].field == "site_config.battery.soc_final_min_kwh"
    assert build_problem(site, run, series, reachable_final_soc=True).soc_final_min_kwh == pytest.approx(40)
