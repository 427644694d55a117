"""Rolling-horizon backtests on a small in-memory bundle: physics, state carried, and
the cost ordering that perfect foresight must give."""

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from factories.bundles import RUN, SITE

from sitenode.backtest import run_backtest
from sitenode.bundle.io import BundleInputs
from sitenode.metrics import compute_metrics
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse
from sitenode.optimizer import solve as solve_module
from sitenode.optimizer.result import SolverStatus
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import CHARGE, DISCHARGE, LOAD, PV, SOC, check_schedule, ev_column

HORIZON = pd.Timestamp("2025-01-15T00:00Z")
SESSIONS = (
    EVSession(
        session_id="ev-1",
        arrival=HORIZON + pd.Timedelta(hours=17),
        departure=HORIZON + pd.Timedelta(hours=23),
        energy_kwh=40,
        max_kw=11,
        priority=1,
        charger_id="cp-1",
    ),
    EVSession(
        session_id="ev-2",
        arrival=HORIZON + pd.Timedelta(hours=18),
        departure=HORIZON + pd.Timedelta(hours=22),
        energy_kwh=30,
        max_kw=50,
        priority=2,
    ),
    EVSession(
        session_id="ev-3",
        arrival=HORIZON + pd.Timedelta(hours=9),
        departure=HORIZON + pd.Timedelta(hours=13),
        energy_kwh=20,
        max_kw=22,
        priority=1,
    ),
)


def actual_series(days_before: int = 1, days_after: int = 0) -> pd.DataFrame:
    """Hourly load and PV; the horizon's day differs from the day before (a busier
    afternoon, a cloudier noon), so yesterday is not a perfect forecast."""
    index = pd.date_range(
        HORIZON - pd.Timedelta(days=days_before), periods=24 * (days_before + 1 + days_after), freq="1h"
    )
    hour = np.asarray(index.hour, dtype=float)
    today = np.asarray((index >= HORIZON) & (index < HORIZON + pd.Timedelta(days=1)))
    load = 15 + 10 * ((hour >= 8) & (hour < 18)) + 8 * today * ((hour >= 13) & (hour < 16)) + np.sin(hour)
    pv = np.clip(30 * np.sin((hour - 7) / 10 * np.pi), 0, None) * np.where(today & (hour >= 11) & (hour < 14), 0.4, 1.0)
    return pd.DataFrame({"timestamp": index, "load_kw": load, "pv_kw": pv.round(3)})


def bundle_inputs(tmp_path, *, window_steps=12, every=3, forecast="persistence", series=None) -> BundleInputs:
    run_doc = copy.deepcopy(RUN)
    run_doc["backtest"] = {"window_steps": window_steps, "reoptimize_every_steps": every, "forecast": forecast}
    run = parse(RunConfig, run_doc)
    site = parse(SiteConfig, SITE)
    frame = actual_series() if series is None else series
    return BundleInputs(
        path=tmp_path,
        site=site,
        run=run,
        series=check_series(frame, run.horizon, run.tariff),
        sessions=SESSIONS,
        input_files=(),
    )


class Perfect:
    """Test-only forecast: the actual future, read from the series the backtest lives."""

    def __init__(self, series: pd.DataFrame) -> None:
        self.series = series

    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        assert history.index.max() < index[0] if len(history) else True
        return self.series.loc[index, ["load_kw", "pv_kw"]]


def delivered(result, problem) -> dict[str, float]:
    return {w.session_id: result.schedule[ev_column(w.session_id)].sum() * problem.dt_h for w in problem.sessions}


def test_persistence_backtest_lives_the_actuals_and_stays_physical(tmp_path):
    inputs = bundle_inputs(tmp_path)
    problem = inputs.problem()
    seen = []
    result = run_backtest(inputs, progress=lambda done, total: seen.append((done, total)))

    assert result.decision_steps == tuple(range(0, 24, 3))
    assert result.solve_count == 8 and seen == [(i, 8) for i in range(1, 9)]
    assert result.solve_seconds > 0 and result.fallback_steps == 0
    # realized on what happened, not on what was forecast
    assert result.schedule.index.equals(problem.index)
    assert result.schedule[LOAD].to_numpy() == pytest.approx(problem.load_kw)
    assert result.schedule[PV].to_numpy() == pytest.approx(problem.pv_kw)
    # forecast errors may push the import past the limit; everything else must hold,
    # including each session staying on one charger within the charger ratings
    assert check_schedule(problem, result.schedule, limits=False, assignment=result.charger_assignment) == []
    assert delivered(result, problem) == pytest.approx({w.session_id: w.need_kwh for w in problem.sessions}, abs=1e-6)
    assert result.metrics == compute_metrics(problem, result.schedule)


def test_forecast_error_is_the_persistence_error_over_the_steps_lived(tmp_path):
    inputs = bundle_inputs(tmp_path)
    result = run_backtest(inputs)
    load = inputs.series["load_kw"]
    errors = []
    for k in range(0, 24, 3):
        decided = HORIZON + pd.Timedelta(hours=k)
        last = load[load.index < decided].iloc[-1]
        errors += [abs(load[decided + pd.Timedelta(hours=j)] - last) for j in range(3)]
    assert result.load_mae_kw == pytest.approx(np.mean(errors))
    assert result.pv_mae_kw > 0  # the cloudy noon was not in yesterday's PV


def test_perfect_foresight_costs_no_more_than_persistence_or_business_as_usual(tmp_path):
    inputs = bundle_inputs(tmp_path, window_steps=24, every=3)
    problem = inputs.problem()
    perfect = run_backtest(inputs, provider=Perfect(inputs.series))
    blind = run_backtest(inputs)

    assert perfect.load_mae_kw == 0 and perfect.pv_mae_kw == 0
    assert blind.load_mae_kw > 0
    assert check_schedule(problem, perfect.schedule, assignment=perfect.charger_assignment) == []
    assert perfect.metrics.ev_shortfall_kwh == pytest.approx(0, abs=1e-6)
    assert perfect.metrics.total_cost <= blind.metrics.total_cost + 1e-6
    assert perfect.metrics.total_cost <= perfect.baseline.total_cost + 1e-6
    assert perfect.baseline == blind.baseline


def test_one_window_over_the_whole_horizon_is_one_solve(tmp_path):
    inputs = bundle_inputs(tmp_path, window_steps=24, every=24)
    problem = inputs.problem()
    result = run_backtest(inputs, provider=Perfect(inputs.series))
    plan = optimize_site(problem)

    assert result.solve_count == 1 and result.decision_steps == (0,)
    assert result.metrics.total_cost == pytest.approx(compute_metrics(problem, plan.schedule).total_cost, abs=1e-6)
    for column in (CHARGE, DISCHARGE, SOC):
        assert result.schedule[column].to_numpy() == pytest.approx(plan.schedule[column].to_numpy(), abs=1e-6)


def test_rolling_with_perfect_foresight_to_the_horizon_end_keeps_the_optimum(tmp_path):
    # each window reaches the horizon's end, so every re-plan is the tail of the same
    # problem from the state it left: carried SOC, energy and demand peaks lose nothing
    inputs = bundle_inputs(tmp_path, window_steps=24, every=5)
    problem = inputs.problem()
    rolled = run_backtest(inputs, provider=Perfect(inputs.series))
    once = compute_metrics(problem, optimize_site(problem).schedule)
    assert rolled.solve_count == math.ceil(24 / 5)
    assert rolled.metrics.total_cost == pytest.approx(once.total_cost, abs=1e-5)
    assert rolled.metrics.demand_cost == pytest.approx(once.demand_cost, abs=1e-5)


def test_seasonal_naive_is_perfect_when_every_day_is_the_same(tmp_path):
    frame = actual_series()
    same = frame.assign(**{c: np.tile(frame[c].to_numpy()[24:48], 2) for c in ("load_kw", "pv_kw")})
    inputs = bundle_inputs(tmp_path, window_steps=24, every=6, forecast="seasonal_naive", series=same)
    seasonal = run_backtest(inputs)
    perfect = run_backtest(inputs, provider=Perfect(inputs.series))
    assert seasonal.load_mae_kw == 0 and seasonal.pv_mae_kw == 0
    assert seasonal.metrics.total_cost == pytest.approx(perfect.metrics.total_cost, abs=1e-6)


def test_windows_end_at_the_horizon_even_when_the_series_runs_on(tmp_path):
    inputs = bundle_inputs(tmp_path, window_steps=12, every=4, series=actual_series(days_after=1))
    problem = inputs.problem()
    result = run_backtest(inputs)
    assert result.schedule.index.equals(problem.index)
    assert result.schedule[SOC].iloc[-1] >= problem.soc_final_min_kwh - 1e-6
    assert check_schedule(problem, result.schedule, limits=False) == []


def test_cold_start_without_history_still_runs(tmp_path):
    inputs = bundle_inputs(tmp_path, series=actual_series(days_before=0))
    problem = inputs.problem()
    result = run_backtest(inputs)
    assert check_schedule(problem, result.schedule, limits=False) == []
    # the first three steps were planned on zeros
    assert result.load_mae_kw >= problem.load_kw[:3].mean() * 3 / 24


def test_a_solve_without_a_plan_falls_back_to_business_as_usual(tmp_path, monkeypatch):
    def failing(problem, **kwargs):
        plan = optimize_site(problem, **kwargs)
        return dataclasses.replace(
            plan,
            schedule=plan.schedule * np.nan,
            charger_assignment={},
            result=dataclasses.replace(plan.result, status=SolverStatus.ERROR),
        )

    monkeypatch.setattr("sitenode.backtest.optimize_site", failing)
    assert solve_module.optimize_site is optimize_site  # only the backtest's reference is replaced
    inputs = bundle_inputs(tmp_path)
    problem = inputs.problem()
    result = run_backtest(inputs)
    assert result.fallback_steps == 24
    assert not result.schedule.isna().any().any()
    assert check_schedule(problem, result.schedule, limits=False) == []
    # business as usual: EVs at full power from arrival (ev-3: 20 kWh at 22 kW from 09:00)
    assert result.schedule[ev_column("ev-3")].iloc[9:11].tolist() == pytest.approx([20.0, 0.0])


def test_a_vehicle_stays_on_the_charger_it_plugged_into(tmp_path):
    # The first window (hours 0-2) sees only x, who needs 70 kWh in it: only the fast
    # charger gives that. y arrives at hour 3 needing 40 kWh in one hour. The second plan
    # would rather move x to the slow charger and give y the fast one (less shortfall),
    # but x is plugged in until it leaves, so y gets the slow one.
    site = parse(
        SiteConfig,
        {
            "site_id": "pins",
            "chargers": [{"id": "ac", "max_kw": 22, "kind": "ac"}, {"id": "dc", "max_kw": 50, "kind": "dc"}],
        },
    )
    run = parse(
        RunConfig,
        {
            "horizon": {"start": HORIZON.isoformat(), "step_minutes": 60, "steps": 6},
            "backtest": {"window_steps": 3, "reoptimize_every_steps": 2},
        },
    )
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(HORIZON, periods=6, freq="1h"),
            "load_kw": 5.0,
            "pv_kw": 0.0,
            "import_price_per_kwh": [0.1, 0.1, 0.3, 0.3, 0.3, 0.3],
            "export_price_per_kwh": 0.0,
        }
    )
    hour = pd.Timedelta(hours=1)
    sessions = (
        EVSession(session_id="x", arrival=HORIZON, departure=HORIZON + 4 * hour, energy_kwh=120, max_kw=50),
        EVSession(session_id="y", arrival=HORIZON + 3 * hour, departure=HORIZON + 4 * hour, energy_kwh=40, max_kw=50),
    )
    inputs = BundleInputs(
        path=tmp_path,
        site=site,
        run=run,
        series=check_series(frame, run.horizon, run.tariff),
        sessions=sessions,
        input_files=(),
    )
    result = run_backtest(inputs, provider=Perfect(inputs.series))
    assert result.charger_assignment == {"x": "dc", "y": "ac"}
    assert result.schedule[ev_column("x")].iloc[:2].sum() > 44  # more than the slow charger could give
    assert result.schedule[ev_column("y")].max() <= 22 + 1e-9
    assert check_schedule(inputs.problem(), result.schedule, assignment=result.charger_assignment) == []


def test_a_demand_peak_already_set_is_free_to_reuse_later(tmp_path):
    # Hour 0's fixed 30 kW sets the day's peak before the EV is in any window. When the
    # EV is planned (hours 2-3), importing up to 30 kW costs no more demand charge, so
    # the cheap hour 2 takes 30 kWh and the dear hour 3 only the last 10.
    site = parse(SiteConfig, {"site_id": "peaks"})
    run = parse(
        RunConfig,
        {
            "horizon": {"start": HORIZON.isoformat(), "step_minutes": 60, "steps": 4},
            "backtest": {"window_steps": 2, "reoptimize_every_steps": 2},
            "tariff": {
                "demand_charges": [
                    {"name": "all_day", "rate_per_kw": 10.0, "schedule": {"start_time": "00:00", "end_time": "23:59"}}
                ]
            },
        },
    )
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(HORIZON, periods=4, freq="1h"),
            "load_kw": [30.0, 0, 0, 0],
            "pv_kw": 0.0,
            "import_price_per_kwh": [0.5, 0.5, 0.1, 0.9],
            "export_price_per_kwh": 0.0,
        }
    )
    hour = pd.Timedelta(hours=1)
    ev = EVSession(session_id="ev", arrival=HORIZON + 2 * hour, departure=HORIZON + 4 * hour, energy_kwh=40, max_kw=40)
    inputs = BundleInputs(
        path=tmp_path,
        site=site,
        run=run,
        series=check_series(frame, run.horizon, run.tariff),
        sessions=(ev,),
        input_files=(),
    )
    result = run_backtest(inputs, provider=Perfect(inputs.series))
    assert result.schedule[ev_column("ev")].tolist() == pytest.approx([0, 0, 30, 10], abs=1e-6)
    assert result.metrics.demand_cost == pytest.approx(300.0)
    assert result.metrics.total_cost == pytest.approx(30 * 0.5 + 30 * 0.1 + 10 * 0.9 + 300.0)


class Sunny:
    """Test-only forecast: load as it comes, PV always 30 kW."""

    def __init__(self, series: pd.DataFrame) -> None:
        self.series = series

    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        return self.series.loc[index, ["load_kw"]].assign(pv_kw=30.0)


def test_pv_is_curtailed_only_where_the_actual_surplus_cannot_be_exported(tmp_path):
    # The plan expects 30 kW of PV against 10 kW of load on a no-export connection and
    # curtails 20. Hour 0 brings only 5 kW: nothing is curtailed, 5 kW imported. Hour 1
    # brings 25 kW: the 15 kW above the load must be shed.
    site = parse(SiteConfig, {"site_id": "sun", "grid": {"export_limit_kw": 0}, "pv": {"curtailable": True}})
    run = parse(
        RunConfig,
        {
            "horizon": {"start": HORIZON.isoformat(), "step_minutes": 60, "steps": 2},
            "backtest": {"window_steps": 2, "reoptimize_every_steps": 2},
        },
    )
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(HORIZON, periods=2, freq="1h"),
            "load_kw": 10.0,
            "pv_kw": [5.0, 25.0],
            "import_price_per_kwh": 0.2,
            "export_price_per_kwh": 0.05,
        }
    )
    inputs = BundleInputs(
        path=tmp_path,
        site=site,
        run=run,
        series=check_series(frame, run.horizon, run.tariff),
        sessions=(),
        input_files=(),
    )
    result = run_backtest(inputs, provider=Sunny(inputs.series))
    s = result.schedule
    assert s["pv_curtail_kw"].tolist() == pytest.approx([0.0, 15.0])
    assert s["grid_import_kw"].tolist() == pytest.approx([5.0, 0.0])
    assert s["grid_export_kw"].tolist() == pytest.approx([0.0, 0.0])
    assert result.pv_mae_kw == pytest.approx((25 + 5) / 2)
    assert check_schedule(inputs.problem(), s) == []


class Flat:
    """Test-only forecast: a constant load, PV as it comes."""

    def __init__(self, series: pd.DataFrame, load_kw: float) -> None:
        self.series, self.load_kw = series, load_kw

    def forecast(self, history: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
        return self.series.loc[index, ["pv_kw"]].assign(load_kw=self.load_kw)


def test_the_battery_is_trimmed_where_the_plan_would_push_the_grid_past_its_limits(tmp_path):
    # Planned on 5 kW of load: hour 0 discharges 15 kW (5 for the load, 10 exported at
    # the export limit), hour 1 recharges 15 kW importing at the 20 kW limit. Actually
    # hour 0 draws nothing and hour 1 draws 12 kW: the battery gives up 5 kW of discharge
    # and 7 kW of charge rather than export 15 or import 27. The connection's limit wins
    # over the final SOC floor, which is missed by 2 kWh.
    site = parse(
        SiteConfig,
        {
            "site_id": "trim",
            "grid": {"import_limit_kw": 20, "export_limit_kw": 10},
            "battery": {"capacity_kwh": 100, "soc_initial_kwh": 50, "max_charge_kw": 50, "max_discharge_kw": 50},
        },
    )
    run = parse(
        RunConfig,
        {
            "horizon": {"start": HORIZON.isoformat(), "step_minutes": 60, "steps": 2},
            "backtest": {"window_steps": 2, "reoptimize_every_steps": 2},
        },
    )
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(HORIZON, periods=2, freq="1h"),
            "load_kw": [0.0, 12.0],
            "pv_kw": 0.0,
            "import_price_per_kwh": [0.3, 0.01],
            "export_price_per_kwh": [0.5, 0.0],
        }
    )
    inputs = BundleInputs(
        path=tmp_path,
        site=site,
        run=run,
        series=check_series(frame, run.horizon, run.tariff),
        sessions=(),
        input_files=(),
    )
    s = run_backtest(inputs, provider=Flat(inputs.series, 5.0)).schedule
    assert s[DISCHARGE].tolist() == pytest.approx([10.0, 0.0])
    assert s[CHARGE].tolist() == pytest.approx([0.0, 8.0])
    assert s["grid_export_kw"].tolist() == pytest.approx([10.0, 0.0])
    assert s["grid_import_kw"].tolist() == pytest.approx([0.0, 20.0])
    assert s[SOC].tolist() == pytest.approx([40.0, 48.0])
    assert check_schedule(inputs.problem(), s) == ["final soc_kwh 48 below soc_final_min_kwh 50"]
