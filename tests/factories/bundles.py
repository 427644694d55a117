"""Write a small, valid run bundle to a folder; tests then break one thing at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

SITE: dict[str, Any] = {
    "site_id": "tiny-depot",
    "timezone": "Europe/London",
    "grid": {"import_limit_kw": 60, "export_limit_kw": 20, "breach_margin": 0.2, "breach_penalty_per_kwh": 10.0},
    "battery": {
        "capacity_kwh": 40,
        "soc_initial_kwh": 20,
        "soc_min_kwh": 4,
        "soc_max_kwh": 38,
        "max_charge_kw": 20,
        "max_discharge_kw": 20,
        "charge_efficiency": 0.95,
        "discharge_efficiency": 0.95,
        "degradation_cost_per_kwh": 0.01,
    },
    "pv": {"curtailable": True},
    "chargers": [{"id": "cp-1", "max_kw": 22, "kind": "ac"}, {"id": "cp-2", "max_kw": 50, "kind": "dc"}],
    "flexible_loads": [{"id": "miner-1", "min_kw": 0, "max_kw": 5, "value_per_kwh": 0.12, "priority": 4}],
}
RUN: dict[str, Any] = {
    "horizon": {"start": "2025-01-15T00:00:00Z", "step_minutes": 60, "steps": 24},
    "tariff": {
        "currency": "GBP",
        "energy_rates": [
            {"name": "night", "rate": 0.08, "schedule": {"start_time": "00:00", "end_time": "06:59"}},
            {"name": "day", "rate": 0.25, "schedule": {"start_time": "07:00", "end_time": "23:59"}},
        ],
        "export_rate": 0.05,
        "demand_charges": [
            {"name": "evening", "rate_per_kw": 5.0, "schedule": {"start_time": "16:00", "end_time": "19:59"}}
        ],
    },
}


def series(hours: int = 48) -> pd.DataFrame:
    index = pd.date_range("2025-01-14T00:00:00Z", periods=hours, freq="60min")
    hour = np.asarray(index.hour)
    return pd.DataFrame(
        {
            "timestamp": index,
            "load_kw": 15 + 10 * ((hour >= 8) & (hour < 18)),
            "pv_kw": np.clip(30 * np.sin((hour - 7) / 10 * np.pi), 0, None).round(3),
        }
    )


SESSIONS = (
    "session_id,arrival,departure,energy_kwh,max_kw,priority,charger_id\n"
    "ev-1,2025-01-15T17:00:00Z,2025-01-15T23:00:00Z,40,11,1,cp-1\n"
    "ev-2,2025-01-15T18:00:00Z,2025-01-15T22:00:00Z,30,50,2,\n"
)


def write_bundle(
    root: Path,
    *,
    site: dict | None = None,
    run: dict | None = None,
    frame: pd.DataFrame | None = None,
    sessions: str | None = SESSIONS,
    fmt: str = "parquet",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site_config.yaml").write_text(yaml.safe_dump(site if site is not None else SITE, sort_keys=False))
    (root / "run_config.yaml").write_text(yaml.safe_dump(run if run is not None else RUN, sort_keys=False))
    data = frame if frame is not None else series()
    if fmt == "parquet":
        data.to_parquet(root / "timeseries.parquet", index=False)
    else:
        data.to_csv(root / "timeseries.csv", index=False)
    if sessions is not None:
        (root / "sessions.csv").write_text(sessions)
    return root
