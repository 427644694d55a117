"""Build the example run bundles in examples/bundles/ from data that packages ship.

    python scripts/build_example_bundles.py [--out DIR]

* PV: the Greensboro NC TMY3 file in pvlib's data folder (723170TYA.CSV), run through
  pvlib: solar position, plane-of-array irradiance on a 25° south-facing array, cell
  temperature, PVWatts DC and a flat inverter/loss factor, as kW per kWp. TMY rows come
  from mixed years and are stamped hour-ending in local standard time (UTC−5): each
  value is placed at its hour's middle, re-stamped onto 2025, and interpolated to
  15-minute UTC steps.
* Load: demandlib's BDEW standard load profiles (g0 general trade, g1 office hours, g3
  continuous trade), scaled to an annual energy. They are German profiles of local wall
  clock time; we read them as a shape of local time at the site (America/New_York).

demandlib 0.2.2 calls `warnings.simplefilter("error")` while building its profiles, which
turns pandas 3's deprecation warnings into exceptions and would leak into every later
warning. The call is made inside `warnings.catch_warnings()` with that one function
stubbed, so the filters are restored and nothing outside the call changes.

Deterministic: fixed seeds, rounded values, fixed writers — the same bytes every run.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

TZ = "America/New_York"
TMY_OFFSET = "-05:00"
YEAR = 2025
STEP = "15min"


def bdew_profiles(year: int, annual_kwh: dict[str, float]) -> pd.DataFrame:
    """BDEW profiles in kW at 15-minute steps of local wall-clock time (naive index)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import demandlib.bdew as bdew

        real = warnings.simplefilter
        warnings.simplefilter = lambda *args, **kwargs: None  # demandlib's "error" stays out
        try:
            slp = bdew.ElecSlp(year)
            return slp.get_scaled_power_profiles(annual_kwh)
        finally:
            warnings.simplefilter = real


def pv_per_kwp() -> pd.Series:
    """AC output per kWp at hourly resolution, indexed by UTC time of the hour's middle."""
    import pvlib

    path = Path(pvlib.__path__[0]) / "data" / "723170TYA.CSV"
    data, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    hours = [t.replace(year=YEAR) for t in data.index.tz_localize(None)]
    index = pd.DatetimeIndex(hours).tz_localize(TMY_OFFSET) - pd.Timedelta(minutes=30)
    data = data.set_axis(index).sort_index()
    data = data[~data.index.duplicated()]
    site = pvlib.location.Location(meta["latitude"], meta["longitude"], altitude=meta["altitude"])
    sun = site.get_solarposition(data.index)
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=25,
        surface_azimuth=180,
        solar_zenith=sun["apparent_zenith"],
        solar_azimuth=sun["azimuth"],
        dni=data["dni"],
        ghi=data["ghi"],
        dhi=data["dhi"],
    )["poa_global"].fillna(0.0)
    cell = pvlib.temperature.faiman(poa, data["temp_air"], data["wind_speed"])
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, pdc0=1.0, gamma_pdc=-0.004)
    ac = (dc * 0.96).clip(lower=0.0, upper=1.0)  # inverter efficiency and wiring losses, clipped at the rating
    return ac.tz_convert("UTC")


def on_grid(hourly: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:
    joined = hourly.reindex(hourly.index.union(index)).interpolate(method="time").reindex(index)
    return joined.fillna(0.0).clip(lower=0.0).to_numpy()


def local_days(first_day: str, days: int) -> pd.DatetimeIndex:
    start = pd.Timestamp(first_day, tz=TZ)
    end = start + pd.DateOffset(days=days)
    return pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq=STEP, inclusive="left")


def load_on(index: pd.DatetimeIndex, profiles: pd.DataFrame, column: str) -> np.ndarray:
    local = index.tz_convert(TZ).tz_localize(None)
    return profiles[column].reindex(local, method="nearest").to_numpy()


def carbon(index: pd.DatetimeIndex) -> np.ndarray:
    hour = index.tz_convert(TZ).hour + index.tz_convert(TZ).minute / 60
    return 0.35 + 0.08 * np.cos((hour - 3) / 24 * 2 * np.pi) + 0.05 * np.exp(-((hour - 19) ** 2) / 4)


def day_ahead_prices(index: pd.DatetimeIndex, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hour = index.tz_convert(TZ).hour + index.tz_convert(TZ).minute / 60
    shape = (
        0.11
        + 0.05 * np.exp(-((hour - 8) ** 2) / 6)
        + 0.14 * np.exp(-((hour - 18.5) ** 2) / 5)
        - 0.03 * np.exp(-((hour - 13) ** 2) / 8)
    )
    imp = np.clip(shape + rng.normal(0, 0.008, len(index)), 0.03, None)
    return imp, np.clip(imp * 0.55, 0.01, None)


TOU_OFFICE = [
    {"name": "off_peak", "rate": 0.09, "schedule": {"start_time": "00:00", "end_time": "06:59"}},
    {"name": "mid", "rate": 0.15, "schedule": {"start_time": "07:00", "end_time": "15:59"}},
    {"name": "peak", "rate": 0.32, "schedule": {"start_time": "16:00", "end_time": "20:59"}},
    {"name": "off_peak_late", "rate": 0.09, "schedule": {"start_time": "21:00", "end_time": "23:59"}},
]


@dataclass(frozen=True)
class Bundle:
    name: str
    site: dict[str, Any]
    run: dict[str, Any]
    series: pd.DataFrame
    series_format: str
    sessions: pd.DataFrame | None = None


def _run(start_local: str, tariff: dict[str, Any]) -> dict[str, Any]:
    start = pd.Timestamp(start_local, tz=TZ).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "horizon": {"start": start, "step_minutes": 15, "steps": 96},
        "mode": "optimize",
        "backtest": {"window_steps": 96, "reoptimize_every_steps": 4, "forecast": "persistence"},
        "tariff": {"currency": "USD", **tariff},
        "objective": {"cost": 1.0, "carbon": 0.0, "peak": 0.0},
    }


def office(pv: pd.Series, slp: pd.DataFrame) -> Bundle:
    index = local_days("2025-06-10", 3)
    series = pd.DataFrame(
        {
            "timestamp": index,
            "load_kw": load_on(index, slp, "g1"),
            "pv_kw": 150 * on_grid(pv, index),
            "carbon_kg_per_kwh": carbon(index),
        }
    )
    site = {
        "site_id": "office-east",
        "timezone": TZ,
        "grid": {"import_limit_kw": 200, "export_limit_kw": 60, "breach_margin": 0.2, "breach_penalty_per_kwh": 10.0},
        "battery": {
            "capacity_kwh": 200,
            "soc_initial_kwh": 100,
            "soc_min_kwh": 20,
            "soc_max_kwh": 190,
            "max_charge_kw": 100,
            "max_discharge_kw": 100,
            "charge_efficiency": 0.95,
            "discharge_efficiency": 0.95,
            "degradation_cost_per_kwh": 0.01,
        },
        "pv": {"curtailable": True},
    }
    tariff = {
        "energy_rates": TOU_OFFICE,
        "export_rate": 0.04,
        "demand_charges": [
            {"name": "peak_window", "rate_per_kw": 14.0, "schedule": {"start_time": "16:00", "end_time": "20:59"}}
        ],
    }
    return Bundle("office", site, _run("2025-06-11 00:00", tariff), series, "parquet")


def depot(slp: pd.DataFrame) -> Bundle:
    index = local_days("2025-01-14", 3)
    series = pd.DataFrame(
        {
            "timestamp": index,
            "load_kw": load_on(index, slp, "g3"),
            "pv_kw": np.zeros(len(index)),
            "carbon_kg_per_kwh": carbon(index),
        }
    )
    chargers = [{"id": f"ac-{i:02d}", "max_kw": 22, "kind": "ac"} for i in range(1, 17)]
    chargers += [{"id": f"dc-{i:02d}", "max_kw": 60, "kind": "dc"} for i in range(1, 5)]
    site = {
        "site_id": "depot-north",
        "timezone": TZ,
        "grid": {"import_limit_kw": 260, "export_limit_kw": 0, "breach_margin": 0.2, "breach_penalty_per_kwh": 10.0},
        "chargers": chargers,
        "circuits": [{"id": "ac-panel", "max_kw": 150, "members": [c["id"] for c in chargers[:16]]}],
    }
    tariff = {
        "energy_rates": [
            {"name": "off_peak", "rate": 0.10, "schedule": {"start_time": "00:00", "end_time": "06:59"}},
            {"name": "peak", "rate": 0.28, "schedule": {"start_time": "07:00", "end_time": "22:59"}},
            {"name": "off_peak_night", "rate": 0.10, "schedule": {"start_time": "23:00", "end_time": "23:59"}},
        ],
        "export_rate": 0.0,
        "demand_charges": [
            {"name": "evening", "rate_per_kw": 9.0, "schedule": {"start_time": "17:00", "end_time": "21:59"}}
        ],
    }
    return Bundle("depot", site, _run("2025-01-15 12:00", tariff), series, "csv", depot_sessions(series))


def depot_sessions(series: pd.DataFrame) -> pd.DataFrame:
    """20 vans back in the evening, out in the morning; the first six on named AC chargers."""
    rng = np.random.default_rng(20250115)
    rows = []
    for i in range(20):
        back = pd.Timestamp("2025-01-15 17:00", tz=TZ) + pd.Timedelta(minutes=15 * int(rng.integers(0, 13)))
        out = pd.Timestamp("2025-01-16 05:00", tz=TZ) + pd.Timedelta(minutes=15 * int(rng.integers(0, 11)))
        rows.append(
            {
                "session_id": f"van-{i + 1:02d}",
                "arrival": back.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                "departure": out.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                "energy_kwh": round(float(rng.uniform(20, 80)), 1),
                "max_kw": float(rng.choice([11.0, 22.0, 50.0])),
                "priority": int(rng.integers(1, 4)),
                "charger_id": f"ac-{i + 1:02d}" if i < 6 else "",
            }
        )
    sessions = pd.DataFrame(rows)
    hours = 10.0  # the shortest overnight stay, roughly
    spare_kw = 260 - float(series["load_kw"].max())
    assert sessions["energy_kwh"].sum() <= 0.8 * spare_kw * hours, "sessions would not fit the depot's connection"
    return sessions


def warehouse(pv: pd.Series, slp: pd.DataFrame) -> Bundle:
    index = local_days("2025-06-17", 3)
    imp, exp = day_ahead_prices(index, 617)
    series = pd.DataFrame(
        {
            "timestamp": index,
            "load_kw": load_on(index, slp, "g0"),
            "pv_kw": 300 * on_grid(pv, index),
            "import_price_per_kwh": imp,
            "export_price_per_kwh": exp,
            "carbon_kg_per_kwh": carbon(index),
        }
    )
    site = {
        "site_id": "warehouse-west",
        "timezone": TZ,
        "grid": {"import_limit_kw": 350, "export_limit_kw": 150, "breach_margin": 0.2, "breach_penalty_per_kwh": 10.0},
        "battery": {
            "capacity_kwh": 500,
            "soc_initial_kwh": 250,
            "soc_min_kwh": 50,
            "soc_max_kwh": 475,
            "max_charge_kw": 250,
            "max_discharge_kw": 250,
            "charge_efficiency": 0.95,
            "discharge_efficiency": 0.95,
            "degradation_cost_per_kwh": 0.01,
        },
        "pv": {"curtailable": True},
        "flexible_loads": [{"id": "miner-1", "min_kw": 0, "max_kw": 80, "value_per_kwh": 0.11, "priority": 4}],
    }
    tariff = {
        "energy_rates": TOU_OFFICE,
        "export_rate": 0.05,
        "demand_charges": [
            {"name": "monthly_peak", "rate_per_kw": 6.0, "schedule": {"start_time": "00:00", "end_time": "23:59"}}
        ],
    }
    return Bundle("warehouse", site, _run("2025-06-18 00:00", tariff), series, "parquet")


def write(bundle: Bundle, root: Path) -> None:
    folder = root / bundle.name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("timeseries.csv", "timeseries.parquet"):
        (folder / stale).unlink(missing_ok=True)
    (folder / "site_config.yaml").write_text(yaml.safe_dump(bundle.site, sort_keys=False))
    (folder / "run_config.yaml").write_text(yaml.safe_dump(bundle.run, sort_keys=False))
    series = bundle.series.copy()
    numeric = series.columns.drop("timestamp")
    series[numeric] = series[numeric].astype(float).round(4)
    if bundle.series_format == "csv":
        series.assign(timestamp=series["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
            folder / "timeseries.csv", index=False, float_format="%.4f"
        )
    else:
        series.to_parquet(folder / "timeseries.parquet", index=False, compression="snappy")
    if bundle.sessions is not None:
        bundle.sessions.to_csv(folder / "sessions.csv", index=False, float_format="%.1f")


def build(root: Path) -> list[Path]:
    pv = pv_per_kwp()
    slp = bdew_profiles(YEAR, {"g0": 500_000.0, "g1": 350_000.0, "g3": 120_000.0})
    bundles = [office(pv, slp), depot(slp), warehouse(pv, slp)]
    for b in bundles:
        write(b, root)
    return [root / b.name for b in bundles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "examples" / "bundles"))
    args = parser.parse_args()
    for path in build(Path(args.out)):
        print(path)


if __name__ == "__main__":
    main()
