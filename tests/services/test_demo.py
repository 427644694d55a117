"""`gridmesh demo`, shortened: a portfolio and three nodes as processes with mTLS, simulated
chargers and battery, four simulated hours at 480x (the suite runs beside it on two cores,
so the clock runs slower than the demo's own 864x); its outcome is asserted, not only its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo


def test_the_demo_keeps_caps_and_ev_needs_and_beats_business_as_usual(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--hours", "4", "--speed", "480", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    folders = list(tmp_path.glob("demo-*"))
    assert len(folders) == 1, run.stdout + run.stderr
    out = folders[0]
    outcome = json.loads((out / "outcome.json").read_text())
    assert run.returncode == (0 if outcome["ok"] else 1), run.stderr
    # every node followed the portfolio: each acknowledged schedules it was sent
    assert {s["site_id"] for s in outcome["sites"]} == {"depot-north", "office-east", "warehouse-west"}
    assert all(s["acked_schedules"] > 0 for s in outcome["sites"]), outcome["sites"]
    # the feeder cap held in every realized step, and the flex event was delivered
    assert [f["name"] for f in outcome["feeders"]] == ["north"] and all(
        f["holds"] and f["steps_checked"] == 16 for f in outcome["feeders"]
    ), outcome["feeders"]
    assert [e["name"] for e in outcome["events"]] == ["evening-peak"] and all(
        e["holds"] and e["steps_checked"] >= 2 for e in outcome["events"]
    ), outcome["events"]
    depot = next(s for s in outcome["sites"] if s["site_id"] == "depot-north")
    assert depot["ev_required_kwh"] > 0 and depot["ev_ok"], depot
    assert outcome["total_cost"] < outcome["total_bau_cost"]
    assert outcome["ok"] and run.returncode == 0
    # the run folder: configs, certificates, logs, a report per site
    for site in ("depot-north", "office-east", "warehouse-west"):
        assert (out / "sites" / site / "report.html").exists() and (out / "sites" / site / "realized.csv").exists()
    assert (out / "certs" / "ca.pem").exists() and (out / "logs" / "portfolio.log").exists()
    # the run's page: each site with its report linked, the verdict, the plots beside it; its path printed
    page = (out / "index.html").read_text(encoding="utf-8")
    for site in ("depot-north", "office-east", "warehouse-west"):
        assert f"<th scope='row'>{site}</th>" in page and f"href='sites/{site}/report.html'" in page
    assert "exit code 0" in page and "<td>kept</td>" in page and "<td>delivered</td>" in page
    assert (out / "plots" / "feeder-1-north.png").exists() and (out / "plots" / "portfolio-import.png").exists()
    assert "run page:" in run.stdout and str(out / "index.html") in run.stdout.replace(
        "\n", ""
    )  # rich folds a long path
    # the dashboard ran beside it, its address printed once its page answered
    assert "dashboard: http://127.0.0.1:" in run.stdout and "viewer token" in run.stdout
    assert "dashboard serving on" in (out / "logs" / "dashboard.log").read_text()
    # each site's folder is a run bundle of the day as it happened: it loads, and optimizes in hindsight
    from sitenode.bundle import load_bundle

    depot_bundle = load_bundle(out / "sites" / "depot-north")
    assert len(depot_bundle.sessions) == 6 and depot_bundle.problem().steps == 16
    hindsight = subprocess.run(
        [sys.executable, "-m", "services.cli", "optimize", str(out / "sites" / "depot-north")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert hindsight.returncode == 0, hindsight.stderr
    assert "gridmesh demo: what the day cost and kept" in run.stdout
    assert Path(out / "config" / "portfolio.yaml").read_text().count("client_ca") == 1


def test_demo_configs_hold_absolute_paths_that_load(tmp_path, monkeypatch):
    # `make demo` passes a relative --out: every service must still find its files
    from portfolio.config import load_portfolio_config
    from services.demo import Layout, plan_demo, write_configs
    from sitenode.node_config import load_node_config

    monkeypatch.chdir(tmp_path)
    lay = Layout(Path("runs") / "demo-x", 1, {"depot": 2, "office": 3, "warehouse": 4}, 5, 6, "token", 0.0)
    write_configs(plan_demo(4), lay)
    config, _ = load_portfolio_config(tmp_path / "runs" / "demo-x" / "config" / "portfolio.yaml")
    tls = config.portfolio.tls
    assert tls is not None and all(
        Path(p).is_absolute() and Path(p).exists() for p in (tls.cert, tls.key, tls.client_ca)
    )
    node, _ = load_node_config(tmp_path / "runs" / "demo-x" / "config" / "depot.yaml")
    link = node.portfolio
    assert link is not None and all(Path(p).is_absolute() and Path(p).exists() for p in (link.ca, link.cert, link.key))
    assert Path(node.node.journal).is_absolute()


def test_the_flex_event_falls_in_the_evening_even_when_the_night_is_busier():
    import pandas as pd

    from services.demo import EVENING_HOURS, evening_event, plan_demo

    plan = plan_demo(24)
    index = pd.date_range(plan.start, periods=96, freq="15min")
    imports = pd.Series(50.0, index=index)
    imports[(index >= plan.start + pd.Timedelta(hours=8)) & (index < plan.start + pd.Timedelta(hours=10))] = (
        400.0  # the vans, 01:00 local
    )
    imports[(index >= plan.start + pd.Timedelta(hours=4)) & (index < plan.start + pd.Timedelta(hours=4.5))] = (
        120.0  # 21:00 local
    )
    event = evening_event(plan, imports)
    local = event.start.astimezone(ZoneInfo("America/New_York"))
    assert event.start == plan.start + pd.Timedelta(hours=4)  # the evening's busiest half hour starts it
    assert plan.event_start <= event.start and event.end <= plan.start + EVENING_HOURS, (event.start, event.end)
    assert 17 <= local.hour < 23 and event.kw == round(0.85 * 120.0, 1)  # binds the evening's peak, not the night's
