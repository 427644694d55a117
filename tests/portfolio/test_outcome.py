"""What a run achieved, from telemetry: step means, caps and events against realized flows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from portfolio.model import Feeder, FlexEvent, FlexKind
from portfolio.outcome import TOLERANCE_KW, event_outcome, feeder_outcome, realized_frame
from sitenode.telemetry import TelemetryPoint

T0 = datetime(2025, 6, 20, 21, 0, tzinfo=UTC)
INDEX = pd.date_range(T0, periods=4, freq="15min")


def point(minutes: float, imp: float, ev: float = 0.0, register: float = 0.0) -> TelemetryPoint:
    return TelemetryPoint(
        T0 + timedelta(minutes=minutes), imp, 0.0, 10.0, 0.0, 0.0, 0.0, 50.0, ev, 0.0, "PORTFOLIO", 0, register
    )


def test_steps_are_the_mean_of_their_samples_and_gaps_are_counted():
    points = [
        point(2, 10.0),
        point(7, 20.0),
        point(17, 30.0),
        point(47, 50.0, register=4.0),
        point(49, 70.0, register=5.0),
        point(80, 99.0),
    ]
    frame, missing = realized_frame(points, INDEX)
    assert frame["grid_import_kw"].tolist() == [15.0, 30.0, 30.0, 60.0]  # step 3 had no sample: its neighbour's
    assert missing == 1
    assert frame["ev_energy_kwh"].iloc[-1] == 5.0  # a register reads its last value in the step
    empty, gaps = realized_frame([], INDEX)
    assert gaps == 4 and (empty["grid_import_kw"] == 0).all()


def test_a_feeder_cap_holds_within_metering_and_breaks_beyond():
    frames = {
        "a": pd.DataFrame(
            {"grid_import_kw": [40.0, 60.0, 30.0, 10.0], "grid_export_kw": [0.0, 0.0, 5.0, 0.0]}, index=INDEX
        ),
        "b": pd.DataFrame(
            {"grid_import_kw": [40.0, 40.0 + TOLERANCE_KW / 2, 30.0, 10.0], "grid_export_kw": 0.0}, index=INDEX
        ),
    }
    kept = feeder_outcome(Feeder(feeder_id="f", site_ids=["a", "b", "absent"], cap_kw=100.0), frames, T0)
    assert kept.holds and kept.steps_checked == 4 and kept.worst_excess_kw == pytest.approx(TOLERANCE_KW / 2)
    per_step = feeder_outcome(Feeder(feeder_id="f", site_ids=["a", "b"], caps_kw=[100.0, 90.0]), frames, T0)
    assert (
        not per_step.holds
        and per_step.worst_excess_kw == pytest.approx(10.0 + TOLERANCE_KW / 2)
        and per_step.limit_kw == 90.0
    )
    nobody = feeder_outcome(Feeder(feeder_id="g", site_ids=["absent"], cap_kw=1.0), frames, T0)
    assert nobody.holds and nobody.steps_checked == 0


def test_flex_events_are_checked_in_their_window_only():
    frames = {"a": pd.DataFrame({"grid_import_kw": [90.0, 20.0, 25.0, 90.0], "grid_export_kw": 0.0}, index=INDEX)}
    cap = FlexEvent(
        event_id="e", kind=FlexKind.CAP_AT, kw=25.0, start=INDEX[1].to_pydatetime(), end=INDEX[3].to_pydatetime()
    )
    assert event_outcome(cap, frames).holds and event_outcome(cap, frames).steps_checked == 2
    tight = cap.model_copy(update={"kw": 21.0})
    assert event_outcome(tight, frames).worst_excess_kw == pytest.approx(4.0)
    reduce = FlexEvent(
        event_id="r", kind=FlexKind.REDUCE_BY, kw=10.0, start=INDEX[1].to_pydatetime(), end=INDEX[3].to_pydatetime()
    )
    baseline = pd.Series([90.0, 40.0, 40.0, 90.0], index=INDEX)
    assert event_outcome(reduce, frames, baseline).holds
    with pytest.raises(ValueError, match="baseline"):
        event_outcome(reduce, frames)
