"""Reading and writing run bundles. Every input error names its file and field.

The contract (file names, keys, columns) is shared/BUNDLE.md: others write these
files, so this module extends and never renames.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sitenode.errors import FieldViolation, InvalidInput
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession, check_sessions
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse

SITE, RUN, SESSIONS = "site_config.yaml", "run_config.yaml", "sessions.csv"
SERIES = ("timeseries.parquet", "timeseries.csv")
DISPATCH, METRICS, STATS, META = "dispatch.parquet", "metrics.json", "solve_stats.json", "bundle_metadata.json"
SESSION_COLUMNS = ("session_id", "arrival", "departure", "energy_kwh", "max_kw", "priority", "charger_id")


@dataclass(frozen=True, eq=False)
class BundleInputs:
    """A bundle's inputs, validated; `series` is UTC-indexed and may extend past the horizon."""

    path: Path
    site: SiteConfig
    run: RunConfig
    series: pd.DataFrame
    sessions: tuple[EVSession, ...]
    input_files: tuple[Path, ...]

    def problem(self, **overrides: Any) -> SiteProblem:
        """The site problem over the run's horizon (keyword overrides as `build_problem`)."""
        return build_problem(self.site, self.run, self.series, self.sessions, **overrides)


def _yaml(path: Path, label: str) -> Any:
    if not path.exists():
        raise InvalidInput.one(label, f"file is missing in {path.parent}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput.one(label, f"is not valid YAML ({exc})") from None


def read_series(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file, said plainly
        raise InvalidInput.one(path.name, f"cannot be read ({type(exc).__name__}: {exc})") from None


def read_sessions(path: Path, site: SiteConfig) -> tuple[EVSession, ...]:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput.one(SESSIONS, f"cannot be read ({type(exc).__name__}: {exc})") from None
    missing = [c for c in SESSION_COLUMNS if c not in frame.columns and c != "charger_id"]
    if missing:
        raise InvalidInput([FieldViolation(f"sessions.{c}", "column is required") for c in missing])
    out: list[EVSession] = []
    violations: list[FieldViolation] = []
    for i, row in enumerate(frame.to_dict("records")):
        record: dict[str, Any] = {k: v.strip() for k, v in row.items() if k in SESSION_COLUMNS and v.strip() != ""}
        for key in ("arrival", "departure"):
            if key in record and not any(z in record[key] for z in ("Z", "+")) and record[key][-6:-5] != "-":
                record[key] += "Z"  # the contract says UTC; a bare time means UTC
        try:
            out.append(parse(EVSession, record, f"sessions[{i}]"))
        except InvalidInput as exc:
            violations += exc.violations
    if violations:
        raise InvalidInput(violations)
    check_sessions(site, out)
    return tuple(out)


def load_bundle(path: str | Path) -> BundleInputs:
    """Read and validate every input of the bundle at `path`; raise InvalidInput naming the field."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInput.one("bundle", f"must be a directory, got {str(root)!r}")
    site = parse(SiteConfig, _yaml(root / SITE, SITE), "site_config")
    run = parse(RunConfig, _yaml(root / RUN, RUN), "run_config")
    series_path = next((root / name for name in SERIES if (root / name).exists()), None)
    if series_path is None:
        raise InvalidInput.one("timeseries", f"file is missing: {' or '.join(SERIES)} in {root}")
    series = check_series(read_series(series_path), run.horizon, run.tariff)
    sessions: tuple[EVSession, ...] = ()
    files = [root / SITE, root / RUN, series_path]
    if (root / SESSIONS).exists():
        sessions = read_sessions(root / SESSIONS, site)
        files.append(root / SESSIONS)
    inputs = BundleInputs(root, site, run, series, sessions, tuple(files))
    inputs.problem()  # horizon-level checks (final SOC reachable, tariff coverage) now, not mid-run
    return inputs


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def write_outputs(
    inputs: BundleInputs,
    schedule: pd.DataFrame,
    metrics: dict[str, Any],
    solve_stats: dict[str, Any],
    *,
    command: str,
    solver_version: str,
) -> None:
    """Write dispatch.parquet, metrics.json, solve_stats.json and bundle_metadata.json."""
    root = inputs.path
    frame = schedule.copy()
    frame.index = frame.index.rename("timestamp")
    frame.reset_index().to_parquet(root / DISPATCH, index=False)
    (root / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    (root / STATS).write_text(json.dumps(solve_stats, indent=2, default=str) + "\n")
    meta = {
        "package": "gridmesh",
        "package_version": _version("gridmesh"),
        "command": command,
        "solver_version": solver_version,
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in ("pandas", "numpy", "pyomo", "highspy", "pydantic")},
        "input_hashes": {p.name: _sha256(p) for p in inputs.input_files},
        "run_at": datetime.now(UTC).isoformat(),
    }
    (root / META).write_text(json.dumps(meta, indent=2) + "\n")


def read_dispatch(path: str | Path) -> pd.DataFrame:
    frame = pd.read_parquet(Path(path) / DISPATCH)
    return frame.set_index(pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True), name="timestamp")).drop(
        columns="timestamp"
    )
