"""build_problem and EV sessions: series cut to the horizon, sessions turned into step windows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import START, make_problem, run_config, series_frame, session, site_config

from sitenode.errors import InvalidInput
from sitenode.model.problem import build_problem
from sitenode.model.sessions import EVSession, check_sessions
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse

GOOD = {
    "session_id": "ev-1",
    "arrival": "2025-01-15T17:00:00Z",
    "departure": "2025-01-15T23:00:00Z",
    "energy_kwh": 40,
    "max_kw": 11,
}


def session_violations(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as exc:
        parse(EVSession, data, "sessions[3]")
    return {v.field: v.description for v in exc.value.violations}


@pytest.mark.parametrize(
    ("patch", "field", "text"),
    [
        (
            {"departure": "2025-01-15T16:00:00Z"},
            "departure",
            "must be after arrival (2025-01-15T17:00:00+00:00), got 2025-01-15T16:00:00+00:00",
        ),
        ({"departure": "2025-01-15T17:00:00Z"}, "departure", "must be after arrival"),
        ({"arrival": "2025-01-15T17:00:00"}, "arrival", "must carry a timezone"),
        ({"energy_kwh": -1}, "energy_kwh", "must be >= 0, got -1"),
        ({"max_kw": 0}, "max_kw", "must be > 0, got 0"),
        ({"priority": 0}, "priority", "must be >= 1, got 0"),
        ({"priority": 101}, "priority", "must be <= 100, got 101"),
        ({"session_id": ""}, "session_id", "must not be empty"),
        ({"charger_id": "cp 1"}, "charger_id", "must start with a letter or digit"),
    ],
)
def test_session_errors_name_the_field_and_value(patch: dict[str, Any], field: str, text: str) -> None:
    found = session_violations({**GOOD, **patch})
    assert f"sessions[3].{field}" in found, found
    assert text in found[f"sessions[3].{field}"]


def test_session_times_are_held_in_utc():
    s = parse(EVSession, {**GOOD, "arrival": "2025-01-15T18:00:00+01:00"})
    assert s.arrival == pd.Timestamp("2025-01-15T17:00:00Z") and s.arrival.utcoffset() == pd.Timedelta(0)


def test_sessions_are_checked_against_the_site():
    site = site_config(chargers=[{"id": "cp-1", "max_kw": 22}, {"id": "cp-2", "max_kw": 50}])
    ok = parse(EVSession, GOOD)
    sessions = [
        ok,
        ok.model_copy(update={"charger_id": "cp-9"}),
        ok.model_copy(update={"session_id": "ev-2", "charger_id": "cp-2"}),
    ]
    with pytest.raises(InvalidInput) as exc:
        check_sessions(site, sessions)
    assert {v.field: v.description for v in exc.value.violations} == {
        "sessions[1].session_id": "duplicates an earlier session, got 'ev-1'",
        "sessions[1].charger_id": "must name a charger of site 't' (cp-1, cp-2), got 'cp-9'",
    }
    with pytest.raises(InvalidInput) as exc:
        check_sessions(site_config(), [sessions[1]], "session", indexed=False)
    assert exc.value.violations[0].field == "session.charger_id"
    assert "(none)" in exc.value.violations[0].description


def test_build_problem_refuses_sessions_the_site_cannot_take():
    cfg = run_config(4)
    series = check_series(
        series_frame([1.0] * 4, import_price_per_kwh=[0.1] * 4, export_price_per_kwh=[0.0] * 4), cfg.horizon, cfg.tariff
    )
    with pytest.raises(InvalidInput) as exc:
        build_problem(site_config(), cfg, series, [session("a", 0, 2, 5, 7, charger_id="cp-1")])
    assert exc.value.violations[0].field == "sessions[0].charger_id"


def test_sessions_charge_only_in_steps_wholly_between_arrival_and_departure():
    sessions = [
        {"session_id": "mid", "arrival": 0.25, "departure": 2.75, "energy_kwh": 10, "max_kw": 7},  # steps 1 only
        {"session_id": "exact", "arrival": 1, "departure": 3, "energy_kwh": 10, "max_kw": 7},  # steps 1, 2
        {"session_id": "short", "arrival": 1.25, "departure": 1.75, "energy_kwh": 10, "max_kw": 7},  # no whole step
        {"session_id": "before", "arrival": -3, "departure": -1, "energy_kwh": 10, "max_kw": 7},
        {"session_id": "after", "arrival": 4, "departure": 6, "energy_kwh": 10, "max_kw": 7},
        {"session_id": "early", "arrival": -2, "departure": 1, "energy_kwh": 10, "max_kw": 7},  # step 0
    ]
    p = make_problem({}, {}, load=[0] * 4, sessions=sessions)
    windows = {w.session_id: (w.first, w.stop) for w in p.sessions}
    assert windows == {"mid": (1, 2), "exact": (1, 3), "short": (2, 2), "early": (0, 1)}
    short = next(w for w in p.sessions if w.session_id == "short")
    assert short.need_kwh == 10  # it cannot be served at all: all of it will be shortfall


def test_a_session_leaving_after_the_horizon_needs_only_what_later_cannot_give():
    # 2 h horizon; the EV stays 2 h longer at 10 kW: 20 of its 35 kWh can come later
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 4, "energy_kwh": 35, "max_kw": 10}]
    (w,) = make_problem({}, {}, load=[0, 0], sessions=sessions).sessions
    assert (w.first, w.stop, w.need_kwh, w.cap_kwh, w.max_kw) == (0, 2, 15, 35, 10)
    # on a 7 kW charger only 14 kWh can come later
    named = [{**sessions[0], "charger_id": "cp"}]
    (w,) = make_problem({"chargers": [{"id": "cp", "max_kw": 7}]}, {}, load=[0, 0], sessions=named).sessions
    assert (w.need_kwh, w.cap_kwh, w.max_kw) == (21, 35, 7)
    # without a named charger the fastest charger of the site bounds what later can give
    (w,) = make_problem(
        {"chargers": [{"id": "a", "max_kw": 7}, {"id": "b", "max_kw": 8}]}, {}, load=[0, 0], sessions=sessions
    ).sessions
    assert (w.need_kwh, w.cap_kwh, w.max_kw) == (19, 35, 8)


def test_energy_already_delivered_is_carried_over():
    cfg = run_config(
        2,
        tariff={
            "energy_rates": [{"rate": 0.1, "schedule": {"start_time": "00:00", "end_time": "23:59"}}],
            "export_rate": 0,
        },
    )
    series = check_series(series_frame([0.0] * 2), cfg.horizon, cfg.tariff)
    (w,) = build_problem(site_config(), cfg, series, [session("ev", 0, 2, 15, 10)], delivered_kwh={"ev": 6}).sessions
    assert (w.need_kwh, w.cap_kwh) == (9, 9)
    (w,) = build_problem(site_config(), cfg, series, [session("ev", 0, 2, 15, 10)], delivered_kwh={"ev": 20}).sessions
    assert (w.need_kwh, w.cap_kwh) == (0, 0)


def test_limits_come_from_the_site_and_the_series_the_lower_winning():
    p = make_problem(
        {"grid": {"import_limit_kw": 50, "export_limit_kw": 20}}, {}, load=[1, 1, 1], import_limit_kw=[80, 30, 50]
    )
    assert p.import_limit_kw.tolist() == [50, 30, 50] and p.export_limit_kw == 20
    bare = make_problem({}, {}, load=[1, 1])
    assert np.isinf(bare.import_limit_kw).all() and math.isinf(bare.export_limit_kw)
    assert (bare.carbon_kg_per_kwh == 0).all()


def test_the_horizon_is_cut_from_a_longer_series_and_can_be_moved():
    cfg = run_config(3, start=START + pd.Timedelta(hours=2), tariff={"export_rate": 0})
    raw = series_frame([0, 1, 2, 3, 4, 5, 6, 7], import_price_per_kwh=[0.1] * 8)
    series = check_series(raw, cfg.horizon, cfg.tariff)
    p = build_problem(site_config(), cfg, series)
    assert p.load_kw.tolist() == [2, 3, 4] and p.index[0] == START + pd.Timedelta(hours=2)
    assert p.steps == 3 and p.dt_h == 1 and p.start == START + pd.Timedelta(hours=2)
    moved = build_problem(site_config(), cfg, series, start=START + pd.Timedelta(hours=4), steps=2)
    assert moved.load_kw.tolist() == [4, 5]
    with pytest.raises(InvalidInput) as exc:
        build_problem(site_config(), cfg, series, start=START + pd.Timedelta(hours=6), steps=4)
    assert exc.value.violations[0].field == "timeseries.timestamp"
    assert "lacks 2 step(s)" in exc.value.violations[0].description


def test_battery_state_defaults_and_overrides():
    battery = {"capacity_kwh": 100, "soc_initial_kwh": 40, "soc_min_kwh": 10}
    p = make_problem({"battery": battery}, {}, load=[0] * 4)
    assert (p.soc_initial_kwh, p.soc_final_min_kwh) == (40, 40)
    cfg = run_config(4, tariff={"export_rate": 0})
    series = check_series(series_frame([0.0] * 4, import_price_per_kwh=[0.1] * 4), cfg.horizon, cfg.tariff)
    assert build_problem(site_config(battery=battery), cfg, series, soc_initial_kwh=70).soc_initial_kwh == 70
    assert make_problem({}, {}, load=[0]).soc_initial_kwh == 0


def test_an_unreachable_final_soc_is_an_input_error_unless_asked_to_lower_it():
    # from 0 kWh at 10 kW and 90 % for 4 h the battery reaches at most 36 kWh
    battery = {
        "capacity_kwh": 100,
        "soc_initial_kwh": 0,
        "soc_final_min_kwh": 90,
        "max_charge_kw": 10,
        "charge_efficiency": 0.9,
    }
    cfg = run_config(4, tariff={"export_rate": 0})
    series = check_series(series_frame([0.0] * 4, import_price_per_kwh=[0.1] * 4), cfg.horizon, cfg.tariff)
    with pytest.raises(InvalidInput) as exc:
        build_problem(site_config(battery=battery), cfg, series)
    (v,) = exc.value.violations
    assert v.field == "site_config.battery.soc_final_min_kwh"
    assert v.description == "cannot be reached in 4 steps from 0 kWh at 10 kW (at most 36), got 90"
    lowered = build_problem(site_config(battery=battery), cfg, series, reachable_final_soc=True)
    assert lowered.soc_final_min_kwh == pytest.approx(36)
    # reachable exactly: no error
    assert build_problem(site_config(battery={**battery, "soc_final_min_kwh": 36}), cfg, series).soc_final_min_kwh == 36


def test_demand_floors_and_run_settings_are_carried():
    run = {
        "tariff": {
            "demand_charges": [
                {"name": "w", "rate_per_kw": 5, "schedule": {"start_time": "01:00", "end_time": "02:59"}},
                {"rate_per_kw": 2, "schedule": {"start_time": "00:00", "end_time": "00:59"}},
            ]
        },
        "objective": {"cost": 1, "carbon": 0.5, "peak": 2},
        "solver": {"mip_rel_gap": 0.01},
    }
    cfg = run_config(4, **{**run, "tariff": {**run["tariff"], "export_rate": 0}})
    series = check_series(series_frame([0.0] * 4, import_price_per_kwh=[0.1] * 4), cfg.horizon, cfg.tariff)
    p = build_problem(site_config(), cfg, series, demand_floor_kw={"w": 12})
    w, unnamed = p.demand_windows
    assert (w.name, w.rate_per_kw, w.floor_kw, w.mask.tolist()) == ("w", 5, 12, [False, True, True, False])
    assert (unnamed.name, unnamed.floor_kw, unnamed.mask.tolist()) == ("window1", 0, [True, False, False, False])
    assert (p.objective.carbon, p.objective.peak, p.solver.mip_rel_gap) == (0.5, 2, 0.01)
