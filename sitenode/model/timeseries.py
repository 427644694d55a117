"""Input series: checked once, then held as a UTC-indexed frame of floats.

Columns and units are in shared/BUNDLE.md. Checks name the file's field and row:
`timeseries.load_kw: NaN at row 17 (2025-01-15T04:15:00+00:00)`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sitenode.errors import FieldViolation, InvalidInput
from sitenode.model.run import Horizon, Tariff

REQUIRED = ("load_kw", "pv_kw")
NON_NEGATIVE = ("load_kw", "pv_kw", "import_limit_kw")
OPTIONAL = ("import_price_per_kwh", "export_price_per_kwh", "carbon_kg_per_kwh", "import_limit_kw")


def check_series(raw: pd.DataFrame, horizon: Horizon, tariff: Tariff, prefix: str = "timeseries") -> pd.DataFrame:
    """Validate `raw` (a `timestamp` column or a DatetimeIndex) against the run's horizon."""
    frame = raw.copy()
    if "timestamp" in frame.columns:
        frame = frame.set_index("timestamp")
    elif not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidInput.one(f"{prefix}.timestamp", "column is required")
    try:
        index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True)).as_unit("ns")
    except (ValueError, TypeError) as exc:
        raise InvalidInput.one(f"{prefix}.timestamp", f"must be ISO 8601 times ({exc})") from None
    frame.index = index.rename("timestamp")

    v: list[FieldViolation] = []
    needed = list(REQUIRED)
    if not tariff.energy_rates:
        needed.append("import_price_per_kwh")
    if tariff.export_rate is None:
        needed.append("export_price_per_kwh")
    for col in needed:
        if col not in frame.columns:
            why = " (the tariff gives no rate)" if "price" in col else ""
            v.append(FieldViolation(f"{prefix}.{col}", f"column is required{why}"))
    if v:
        raise InvalidInput(v)

    used = [c for c in (*REQUIRED, *OPTIONAL) if c in frame.columns]
    out = pd.DataFrame(index=frame.index)
    for col in used:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            row = bad[0]
            v.append(
                FieldViolation(
                    f"{prefix}.{col}",
                    f"NaN or not a number at row {row} ({index[row].isoformat()}), "
                    f"got {_plain(frame[col].iloc[row])!r}",
                )
            )
            continue
        if col in NON_NEGATIVE and (values < 0).any():
            row = int(np.flatnonzero(values < 0)[0])
            v.append(
                FieldViolation(
                    f"{prefix}.{col}", f"must be >= 0, got {values[row]:g} at row {row} ({index[row].isoformat()})"
                )
            )
        out[col] = values
    v += _check_steps(index, horizon, prefix)
    if v:
        raise InvalidInput(v)
    return out


def _plain(value: object) -> object:
    # numpy 2 shows np.float64(nan) where the file said nan
    return value.item() if isinstance(value, np.generic) else value


def _check_steps(index: pd.DatetimeIndex, horizon: Horizon, prefix: str) -> list[FieldViolation]:
    field = f"{prefix}.timestamp"
    if len(index) == 0:
        return [FieldViolation(field, "the series is empty")]
    deltas = np.diff(index.asi8)
    step_ns = horizon.step_minutes * 60 * 10**9
    if (deltas <= 0).any():
        row = int(np.flatnonzero(deltas <= 0)[0]) + 1
        return [
            FieldViolation(
                field, f"must increase, got {index[row].isoformat()} after {index[row - 1].isoformat()} at row {row}"
            )
        ]
    # a series at another regular step (2 h for a 1 h horizon) is a wrong step, not a gap
    regular_elsewhere = len(deltas) and (deltas == deltas[0]).all() and deltas[0] != step_ns
    if len(deltas) and (regular_elsewhere or (deltas.min() != step_ns and (deltas % step_ns != 0).any())):
        got = deltas.min() / 60e9
        return [
            FieldViolation(field, f"step must be horizon.step_minutes ({horizon.step_minutes} min), got {got:g} min")
        ]
    if (deltas != step_ns).any():
        row = int(np.flatnonzero(deltas != step_ns)[0]) + 1
        expected = index[row - 1] + horizon.step
        return [
            FieldViolation(field, f"gap at row {row}: expected {expected.isoformat()}, got {index[row].isoformat()}")
        ]
    first, last = index[0], index[-1] + horizon.step
    start, end = pd.Timestamp(horizon.start), pd.Timestamp(horizon.end)
    if start < first or end > last:
        return [
            FieldViolation(
                "run_config.horizon",
                f"{horizon.steps} steps from {start.isoformat()} need the series to cover up to {end.isoformat()}, "
                f"it covers {first.isoformat()} to {last.isoformat()}",
            )
        ]
    if (start - first).value % step_ns:
        return [
            FieldViolation(
                "run_config.horizon.start",
                f"must fall on a step of the series ({first.isoformat()} + k × {horizon.step_minutes} min), "
                f"got {start.isoformat()}",
            )
        ]
    return []
