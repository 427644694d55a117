"""compute_metrics against numbers worked out by hand, with half-hour steps (Δt = 0.5 h)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from conftest import make_problem, run_config, series_frame, site_config

from sitenode.metrics import CostBreakdown, compute_metrics, metrics_document
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.timeseries import check_series
from sitenode.schedule import (
    CHARGE,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    SOC,
    check_schedule,
    new_schedule,
)

SITE = {
    "grid": {"import_limit_kw": 20, "breach_penalty_per_kwh": 3.0},
    "battery": {"capacity_kwh": 20, "soc_initial_kwh": 10, "soc_final_min_kwh": 5, "degradation_cost_per_kwh": 0.02},
    "pv": {"curtailable": True},
    "flexible_loads": [{"id": "m", "max_kw": 5, "value_per_kwh": 0.05}],
}
RUN = {
    "tariff": {
        "demand_charges": [
            {"name": "first", "rate_per_kw": 2.0, "schedule": {"start_time": "00:00", "end_time": "00:29"}}
        ]
    },
    "objective": {"cost": 1.0, "carbon": 0.1, "peak": 0.5},
}


def problem() -> SiteProblem:
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 2, "energy_kwh": 10, "max_kw": 11}]
    return make_problem(
        SITE,
        RUN,
        load=[10, 10],
        pv=[0, 8],
        step_minutes=30,
        prices=[0.1, 0.3],
        export_prices=[0.0, 0.05],
        sessions=sessions,
        carbon_kg_per_kwh=[0.5, 0.2],
    )


def schedule(p: SiteProblem) -> pd.DataFrame:
    s = new_schedule(p)
    # step 0: load 10 + ev 6 + flex 5 + charge 4 = 25 imported;      soc 10 + 4 × 0.5 = 12
    # step 1: load 10 + ev 2 + export 2 = 14 from pv 8 + discharge 6; soc 12 − 6 × 0.5 = 9
    s[GRID_IMPORT] = [25.0, 0.0]
    s[GRID_EXPORT] = [0.0, 2.0]
    s[CHARGE] = [4.0, 0.0]
    s[DISCHARGE] = [0.0, 6.0]
    s[SOC] = [12.0, 9.0]
    s["ev_ev_kw"] = [6.0, 2.0]
    s["flex_m_kw"] = [5.0, 0.0]
    return s


def test_every_metric_by_hand():
    p = problem()
    s = schedule(p)
    assert check_schedule(p, s, limits=False) == []
    m = compute_metrics(p, s)
    expected = CostBreakdown(
        energy_cost=(25 * 0.1 + 0 * 0.3) * 0.5,  # 1.25
        export_revenue=(0 * 0.0 + 2 * 0.05) * 0.5,  # 0.05
        demand_cost=2.0 * 25,  # the window holds step 0 only: 50
        degradation_cost=0.02 * (4 + 6) * 0.5,  # 0.1
        flex_value=0.05 * 5 * 0.5,  # 0.125
        total_cost=1.25 - 0.05 + 50 + 0.1 - 0.125,  # 51.175
        carbon_kg=(25 * 0.5 + 0 * 0.2) * 0.5,  # 6.25
        peak_import_kw=25,
        ev_energy_kwh=(6 + 2) * 0.5,  # 4
        ev_shortfall_kwh=10 - 4,
        breach_kwh=(25 - 20) * 0.5,  # 2.5
        breach_cost=2.5 * 3.0,  # reported beside total_cost, never in it
    )
    for f in dataclasses.fields(CostBreakdown):
        assert getattr(m, f.name) == pytest.approx(getattr(expected, f.name)), f.name
    # cost·total + carbon·kg + peak·kW = 51.175 + 0.1 × 6.25 + 0.5 × 25
    assert m.weighted_objective(p) == pytest.approx(64.3)


def test_the_json_document_has_baseline_and_savings():
    p = problem()
    optimized = compute_metrics(p, schedule(p))
    idle = new_schedule(p)
    idle[GRID_IMPORT] = [10.0, 2.0]  # load 10 from the grid, then from pv 8 and the grid
    baseline = compute_metrics(p, idle)
    doc = metrics_document(optimized, baseline, "GBP", {"greedy": baseline})
    assert doc["currency"] == "GBP"
    for key in (
        "total_cost",
        "energy_cost",
        "export_revenue",
        "demand_cost",
        "degradation_cost",
        "flex_value",
        "carbon_kg",
        "peak_import_kw",
        "ev_energy_kwh",
        "ev_shortfall_kwh",
        "breach_kwh",
        "breach_cost",
    ):
        assert doc[key] == pytest.approx(getattr(optimized, key), abs=1e-6)
        assert doc["savings"][key] == pytest.approx(getattr(baseline, key) - getattr(optimized, key), abs=1e-6)
    # baseline: (10 × 0.1 + 2 × 0.3) × 0.5 = 0.8 energy, 2 × 10 = 20 demand
    assert doc["baseline"]["total_cost"] == pytest.approx(20.8)
    assert doc["savings"]["total_cost"] == pytest.approx(20.8 - 51.175)
    assert doc["baselines"]["greedy"] == doc["baseline"]


def test_shortfall_counts_what_the_horizon_must_deliver_not_the_whole_session():
    # 2 h horizon, the EV leaves 2 h later at 10 kW: of 35 kWh the horizon owes 15
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 4, "energy_kwh": 35, "max_kw": 10}]
    p = make_problem({}, {}, load=[0, 0], sessions=sessions)
    s = new_schedule(p)
    s["ev_ev_kw"] = [10.0, 2.0]
    s[GRID_IMPORT] = [10.0, 2.0]
    m = compute_metrics(p, s)
    assert (m.ev_energy_kwh, m.ev_shortfall_kwh) == pytest.approx((12, 3))


def test_a_demand_floor_from_earlier_in_the_period_holds():
    cfg = run_config(
        2,
        tariff={
            "demand_charges": [
                {"name": "w", "rate_per_kw": 4, "schedule": {"start_time": "00:00", "end_time": "23:59"}}
            ],
            "export_rate": 0.0,
        },
    )
    series = check_series(series_frame([10.0, 12.0], import_price_per_kwh=[0.0, 0.0]), cfg.horizon, cfg.tariff)

    def s(p: SiteProblem) -> pd.DataFrame:
        return new_schedule(p).assign(**{GRID_IMPORT: [10.0, 12.0]})

    low = build_problem(site_config(), cfg, series, demand_floor_kw={"w": 5})
    high = build_problem(site_config(), cfg, series, demand_floor_kw={"w": 30})
    assert compute_metrics(low, s(low)).demand_cost == pytest.approx(4 * 12)
    assert compute_metrics(high, s(high)).demand_cost == pytest.approx(4 * 30)


def test_breach_counts_everything_above_the_limit_margin_or_not():
    # limit 10, margin 20 %: 15 kW for one hour is 5 kWh above (2 within the margin, 3 beyond);
    # in step 1 the series lowers the limit to 3, and 5 kW is 2 kWh above it
    p = make_problem(
        {"grid": {"import_limit_kw": 10, "breach_margin": 0.2, "breach_penalty_per_kwh": 2}},
        {},
        load=[15, 5],
        import_limit_kw=[12, 3],
    )
    s = new_schedule(p)
    s[GRID_IMPORT] = [15.0, 5.0]
    m = compute_metrics(p, s)
    assert m.breach_kwh == pytest.approx(5 + 2) and m.breach_cost == pytest.approx(14)
