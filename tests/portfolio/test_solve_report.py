"""A solve's report as the store keeps it: JSON both ways, the peak charge included."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime

from portfolio.report import SiteCost, SolveReport

AT = datetime(2025, 6, 11, 16, 0, tzinfo=UTC)


def report(peak_kw: float = 0.0, peak_charge: float = 0.0) -> SolveReport:
    return SolveReport(
        "s-1",
        AT,
        "operator",
        "optimal",
        "monolithic",
        32.2,
        42.0,
        -9.8,
        32.2,
        0.0,
        1,
        0.1,
        AT,
        15,
        96,
        sites=(SiteCost("a", 1.0, 1.2),),
        peak_kw=peak_kw,
        peak_charge=peak_charge,
    )


def test_the_peak_and_its_charge_survive_the_round_trip() -> None:
    r = report(peak_kw=10.0, peak_charge=30.0)
    back = SolveReport.from_json(r.to_json())
    assert back == r and (back.peak_kw, back.peak_charge) == (10.0, 30.0)


def test_a_report_stored_before_the_charge_reads_as_no_charge() -> None:
    body = json.loads(report().to_json())
    del body["peak_kw"], body["peak_charge"]
    back = SolveReport.from_json(json.dumps(body))
    assert (back.peak_kw, back.peak_charge) == (0.0, 0.0)


def test_an_unknown_peak_is_null_in_json_and_nan_back() -> None:
    text = report(peak_kw=math.nan, peak_charge=math.nan).to_json()
    assert json.loads(text)["peak_kw"] is None  # JSON has no NaN
    back = SolveReport.from_json(text)
    assert math.isnan(back.peak_kw) and math.isnan(back.peak_charge)


def test_when_the_solver_returned_survives_the_round_trip_and_older_reports_lack_it() -> None:
    r = replace(report(), solved_at=datetime(2025, 6, 11, 16, 0, 7, 250_000, tzinfo=UTC))
    assert SolveReport.from_json(r.to_json()).solved_at == r.solved_at
    body = json.loads(r.to_json())
    del body["solved_at"]  # stored before the key existed
    assert SolveReport.from_json(json.dumps(body)).solved_at is None
