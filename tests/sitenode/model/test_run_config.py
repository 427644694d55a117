"""run_config.yaml: every field constraint is refused with its path and the value it got."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sitenode.errors import InvalidInput
from sitenode.model.run import RunConfig
from sitenode.model.validation import parse

HORIZON = {"start": "2025-01-15T00:00:00Z", "step_minutes": 15, "steps": 96}
WINDOW = {"start_time": "00:00", "end_time": "06:59"}

# The example of shared/BUNDLE.md, which must stay valid.
EXAMPLE: dict[str, Any] = {
    "horizon": HORIZON,
    "mode": "optimize",
    "backtest": {"window_steps": 96, "reoptimize_every_steps": 4, "forecast": "persistence"},
    "tariff": {
        "currency": "GBP",
        "energy_rates": [
            {"name": "off_peak", "rate": 0.08, "schedule": WINDOW},
            {"name": "peak", "rate": 0.25, "schedule": {"start_time": "07:00", "end_time": "23:59"}},
        ],
        "export_rate": 0.05,
        "demand_charges": [
            {"name": "peak_window", "rate_per_kw": 12.0, "schedule": {"start_time": "16:00", "end_time": "19:59"}}
        ],
    },
    "objective": {"cost": 1.0, "carbon": 0.0, "peak": 0.0},
}


def violations(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as exc:
        parse(RunConfig, data, "run_config")
    return {v.field: v.description for v in exc.value.violations}


def test_the_bundle_example_is_valid_and_defaults_fill_in():
    run = parse(RunConfig, EXAMPLE, "run_config")
    assert run.horizon.end == datetime(2025, 1, 16, tzinfo=UTC)
    assert run.horizon.step == timedelta(minutes=15) and run.horizon.step_hours == 0.25
    bare = parse(RunConfig, {"horizon": {"start": "2025-01-15T00:00:00Z", "steps": 4}})
    assert bare.horizon.step_minutes == 15 and bare.mode == "optimize"
    assert (bare.objective.cost, bare.objective.carbon, bare.objective.peak) == (1, 0, 0)
    assert bare.tariff.energy_rates == [] and bare.tariff.export_rate is None
    assert bare.priorities.fleet == 1 and bare.priorities.export == 5


def test_a_start_with_an_offset_is_held_in_utc():
    run = parse(RunConfig, {"horizon": {"start": "2025-07-01T01:00:00+01:00", "steps": 4}})
    assert run.horizon.start == datetime(2025, 7, 1, 0, 0, tzinfo=UTC)
    assert run.horizon.start.utcoffset() == timedelta(0)


@pytest.mark.parametrize("minutes", [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60])
def test_every_step_that_divides_an_hour_is_allowed(minutes: int) -> None:
    assert parse(RunConfig, {"horizon": {**HORIZON, "step_minutes": minutes}}).horizon.step_minutes == minutes


@pytest.mark.parametrize(
    ("patch", "field", "text"),
    [
        # horizon
        ({"horizon": None}, "horizon", "must be a mapping, got None"),
        (
            {"horizon": {**HORIZON, "start": "2025-01-15T00:00:00"}},
            "horizon.start",
            "must carry a timezone (UTC, e.g. 2025-01-15T00:00:00Z), got '2025-01-15T00:00:00'",
        ),
        ({"horizon": {**HORIZON, "start": "yesterday"}}, "horizon.start", "must be an ISO 8601 time, got 'yesterday'"),
        ({"horizon": {"step_minutes": 15, "steps": 96}}, "horizon.start", "is required"),
        ({"horizon": {**HORIZON, "steps": 0}}, "horizon.steps", "must be > 0, got 0"),
        ({"horizon": {**HORIZON, "steps": 200_001}}, "horizon.steps", "must be <= 200000, got 200001"),
        ({"horizon": {**HORIZON, "steps": 9.5}}, "horizon.steps", "must be an integer, got 9.5"),
        (
            {"horizon": {**HORIZON, "step_minutes": 7}},
            "horizon.step_minutes",
            "must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), got 7",
        ),
        ({"horizon": {**HORIZON, "step_minutes": 0}}, "horizon.step_minutes", "must divide 60"),
        ({"horizon": {**HORIZON, "step_minutes": -15}}, "horizon.step_minutes", "must divide 60"),
        ({"horizon": {**HORIZON, "step_minutes": 120}}, "horizon.step_minutes", "got 120"),
        ({"horizon": {**HORIZON, "length": 3}}, "horizon.length", "is not a known field"),
        # mode and backtest
        ({"mode": "live"}, "mode", "must be one of 'optimize' or 'backtest', got 'live'"),
        ({"backtest": {"window_steps": 0}}, "backtest.window_steps", "must be > 0, got 0"),
        ({"backtest": {"reoptimize_every_steps": 0}}, "backtest.reoptimize_every_steps", "must be > 0, got 0"),
        (
            {"backtest": {"window_steps": 4, "reoptimize_every_steps": 8}},
            "backtest.reoptimize_every_steps",
            "must be <= backtest.window_steps (4), got 8",
        ),
        ({"backtest": {"forecast": "oracle"}}, "backtest.forecast", "got 'oracle'"),
        # tariff
        (
            {"tariff": {"energy_rates": [{"rate": float("nan"), "schedule": WINDOW}]}},
            "tariff.energy_rates[0].rate",
            "must be a finite number, got nan",
        ),
        ({"tariff": {"energy_rates": [{"schedule": WINDOW}]}}, "tariff.energy_rates[0].rate", "is required"),
        ({"tariff": {"energy_rates": [{"rate": 0.1}]}}, "tariff.energy_rates[0].schedule", "is required"),
        (
            {"tariff": {"energy_rates": [{"rate": 0.1, "schedule": {**WINDOW, "start_time": "25:00"}}]}},
            "tariff.energy_rates[0].schedule.start_time",
            "must be a local time HH:MM, 00:00 to 23:59, got '25:00'",
        ),
        (
            {"tariff": {"energy_rates": [{"rate": 0.1, "schedule": {**WINDOW, "start_time": "7:00"}}]}},
            "tariff.energy_rates[0].schedule.start_time",
            "got '7:00'",
        ),
        (
            {"tariff": {"energy_rates": [{"rate": 0.1, "schedule": {**WINDOW, "end_time": "24:00"}}]}},
            "tariff.energy_rates[0].schedule.end_time",
            "got '24:00'",
        ),
        (
            {"tariff": {"energy_rates": [{"rate": 0.1, "schedule": {**WINDOW, "end_time": "06:60"}}]}},
            "tariff.energy_rates[0].schedule.end_time",
            "got '06:60'",
        ),
        (
            {"tariff": {"energy_rates": [{"rate": 0.1, "schedule": {**WINDOW, "days_of_week": [0, 7]}}]}},
            "tariff.energy_rates[0].schedule.days_of_week[1]",
            "must be <= 6, got 7",
        ),
        (
            {"tariff": {"energy_rates": [{"rate": 0.1, "schedule": {**WINDOW, "days_of_week": [-1]}}]}},
            "tariff.energy_rates[0].schedule.days_of_week[0]",
            "must be >= 0, got -1",
        ),
        ({"tariff": {"export_rate": float("inf")}}, "tariff.export_rate", "must be a finite number, got inf"),
        (
            {"tariff": {"demand_charges": [{"rate_per_kw": -12, "schedule": WINDOW}]}},
            "tariff.demand_charges[0].rate_per_kw",
            "must be >= 0, got -12",
        ),
        (
            {"tariff": {"demand_charges": [{"rate_per_kw": 12, "schedule": {**WINDOW, "end_time": "7pm"}}]}},
            "tariff.demand_charges[0].schedule.end_time",
            "got '7pm'",
        ),
        ({"tariff": {"vat": 0.2}}, "tariff.vat", "is not a known field"),
        # objective, priorities, solver
        ({"objective": {"cost": -1}}, "objective.cost", "must be >= 0, got -1"),
        ({"objective": {"carbon": -0.1}}, "objective.carbon", "must be >= 0, got -0.1"),
        ({"objective": {"peak": float("nan")}}, "objective.peak", "must be a finite number, got nan"),
        ({"objective": {"comfort": 1}}, "objective.comfort", "is not a known field"),
        ({"priorities": {"fleet": 0}}, "priorities.fleet", "must be >= 1, got 0"),
        ({"priorities": {"export": 6}}, "priorities.export", "must be <= 5, got 6"),
        ({"solver": {"time_limit_seconds": 0}}, "solver.time_limit_seconds", "must be > 0, got 0"),
        ({"solver": {"mip_rel_gap": 1}}, "solver.mip_rel_gap", "must be < 1, got 1"),
        ({"solver": {"mip_rel_gap": -0.1}}, "solver.mip_rel_gap", "must be >= 0, got -0.1"),
    ],
)
def test_errors_name_the_field_path_and_the_value(patch: dict[str, Any], field: str, text: str) -> None:
    found = violations({"horizon": HORIZON, **patch})
    assert f"run_config.{field}" in found, found
    assert text in found[f"run_config.{field}"]


def test_a_missing_horizon_is_required():
    assert violations({}) == {"run_config.horizon": "is required"}
