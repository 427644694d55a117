"""The CLI as a user runs it: a real subprocess, exit codes, no tracebacks on bad input."""

import copy
import json
import subprocess
import sys

import pytest
from factories.bundles import SITE, write_bundle

GRIDMESH = [sys.executable, "-m", "services.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDMESH, *args], capture_output=True, text=True, timeout=240)


def test_validate_accepts_a_good_bundle(tmp_path):
    done = run("validate", str(write_bundle(tmp_path / "b")))
    assert done.returncode == 0, done.stderr
    assert "tiny-depot" in done.stdout and "24 steps" in done.stdout


@pytest.mark.parametrize("command", ["validate", "optimize", "backtest", "report"])
def test_bad_input_exits_2_naming_the_field_without_traceback(tmp_path, command):
    site = copy.deepcopy(SITE)
    site["battery"]["soc_min_kwh"] = 39
    root = write_bundle(tmp_path / "b", site=site)
    done = run(command, str(root))
    assert done.returncode == 2
    assert "site_config.battery.soc_min_kwh: must be <= soc_max_kwh (38), got 39" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (root / "dispatch.parquet").exists()


def test_missing_bundle_directory(tmp_path):
    done = run("optimize", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "bundle" in done.stderr and "Traceback" not in done.stderr


def test_optimize_then_report_write_every_output(tmp_path):
    root = write_bundle(tmp_path / "b")
    done = run("optimize", str(root))
    assert done.returncode == 0, done.stderr
    for name in ("dispatch.parquet", "metrics.json", "solve_stats.json", "bundle_metadata.json"):
        assert (root / name).exists(), name
    metrics = json.loads((root / "metrics.json").read_text())
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
        assert key in metrics and key in metrics["baseline"] and key in metrics["savings"]
    assert metrics["total_cost"] <= metrics["baseline"]["total_cost"] + 1e-6
    assert metrics["savings"]["total_cost"] == pytest.approx(
        metrics["baseline"]["total_cost"] - metrics["total_cost"], abs=1e-5
    )
    assert "business_as_usual" in done.stdout

    done = run("report", str(root))
    assert done.returncode == 0, done.stderr
    assert "report.html" in done.stdout
    page = (root / "report.html").read_text()
    assert "tiny-depot" in page


def test_report_before_optimize_says_what_to_do(tmp_path):
    done = run("report", str(write_bundle(tmp_path / "b")))
    assert done.returncode == 2 and "gridmesh optimize" in done.stderr


def _break_series_csv(root):
    path = root / "timeseries.csv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",oops"
    path.write_text("\n".join(lines) + "\n")


def _break_series_parquet(root):
    import pandas as pd

    frame = pd.read_parquet(root / "timeseries.parquet").drop(index=[7])
    frame.to_parquet(root / "timeseries.parquet", index=False)


@pytest.mark.parametrize(
    ("fmt", "breaker", "field"),
    [
        ("csv", _break_series_csv, "timeseries.pv_kw"),
        ("parquet", _break_series_parquet, "timeseries.timestamp"),
        (
            "parquet",
            lambda root: (root / "run_config.yaml").write_text("horizon: {start: 2025-01-15T00:00:00Z, steps: -1}\n"),
            "run_config.horizon.steps",
        ),
        (
            "parquet",
            lambda root: (root / "sessions.csv").write_text("session_id,arrival\nx,2025\n"),
            "sessions.departure",
        ),
        ("parquet", lambda root: (root / "timeseries.parquet").write_bytes(b"not parquet"), "timeseries.parquet"),
    ],
)
def test_every_bad_input_gives_its_field_error_and_exit_2(tmp_path, capsys, fmt, breaker, field):
    from services.cli import main

    root = write_bundle(tmp_path / "b", fmt=fmt)
    breaker(root)
    assert main(["optimize", str(root)]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert not (root / "dispatch.parquet").exists()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["demo", "--hours", "0"], "hours"),
        (["demo", "--hours", "6", "--speed", "0.5"], "speed"),
        (["portfolio", "serve", "--config", "nowhere.yaml"], "config"),
    ],
)
def test_services_refuse_bad_arguments_naming_them(tmp_path, args, field):
    argv = [a.replace("nowhere.yaml", str(tmp_path / "nowhere.yaml")) for a in args]
    done = run(*argv, *(["--out", str(tmp_path)] if args[0] == "demo" else []))
    assert done.returncode == 2 and f"{field}:" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("demo-*"))  # nothing started, nothing written


def test_certs_commands_make_a_ca_and_refuse_a_bad_site(tmp_path):
    assert run("certs", "init", "--dir", str(tmp_path)).returncode == 0
    good = run("certs", "issue", "--site", "depot-north", "--dir", str(tmp_path))
    assert good.returncode == 0 and (tmp_path / "sites" / "depot-north.pem").exists()
    bad = run("certs", "issue", "--site", "not a site", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "site_id:" in bad.stderr


def test_a_bad_log_level_is_refused_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDMESH_LOG_LEVEL", "chatty")
    done = run("portfolio", "serve", "--config", str(tmp_path / "portfolio.yaml"))
    assert done.returncode == 2 and "GRIDMESH_LOG_LEVEL:" in done.stderr and "chatty" in done.stderr.lower()
    assert "Traceback" not in done.stderr
