"""`gridmesh demo`: a portfolio and three site nodes as separate processes on loopback,
with mTLS, simulated chargers and batteries, on one simulated clock.

* depot-north: 6 EV sessions on OCPP charge points (three speak 1.6, three 2.0.1) and a
  SunSpec battery simulator on Modbus TCP;
* office-east: PV and a battery; warehouse-west: PV, a battery and a miner (both dry-run:
  their commands are logged, as a node without devices does);
* depot and office share the feeder "north", whose cap the demo sets to bind once the
  first plan shows their joint peak; an evening flex event caps the three sites' import.

Every process reads one simulated clock (`clock_start` at `clock_origin_unix`, `speed`
times real time). At the end the sites' telemetry, stored by the portfolio, is priced
against business as usual; the run folder holds configs, certificates, logs, per-site
bundles of what happened, plots and an HTML page. Exit code 1 when a feeder cap, the
flex event or an EV's energy was not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from portfolio.model import Feeder, FlexEvent, FlexKind
from portfolio.outcome import (
    RunOutcome,
    SiteRealized,
    event_outcome,
    feeder_outcome,
    horizon_run,
    realized_frame,
    site_outcome,
)
from portfolio.store import PortfolioStore
from services import convert
from services import portfolio_convert as pc
from services.certs import channel_credentials, init_ca, issue_operator, issue_server, issue_site
from services.demo_page import TITLE, page_data, run_totals, write_index
from services.lifecycle import child_env
from services.stubs.gridmesh.v1 import (
    portfolio_pb2,
    portfolio_pb2_grpc,
    sitenode_pb2,
    sitenode_pb2_grpc,
)
from sitenode.metrics import metrics_document
from sitenode.model.run import Horizon, RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.validation import parse
from sitenode.node_config import NodeConfig
from sitenode.report import write_report
from sitenode.telemetry import TelemetryPoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "nodes"
SITES = {"depot": "depot-north", "office": "office-east", "warehouse": "warehouse-west"}
START = datetime(2025, 6, 20, 21, 0, tzinfo=UTC)  # 17:00 in New York: the vans come back; after every example history
EVENING_HOURS = timedelta(hours=6)  # from START: the flex event falls by 23:00 local time
REAL_SECONDS_PER_DAY = 100.0
STARTUP_SECONDS = 20.0  # five Python processes import their libraries on two cores
# a flex event is announced at least this far ahead (simulated time): the plan that keeps it
# must be solved, pushed and in force at every site before it starts, on a loaded machine too
EVENT_NOTICE = timedelta(minutes=60)
CHARGERS_16 = ("ac-01", "ac-02", "ac-03")
CHARGERS_201 = ("ac-04", "ac-05", "ac-06")
STOP_GRACE_SECONDS = 6.0  # from a child's SIGTERM to its SIGKILL: every gridmesh service stops well within it
TICK_REAL_SECONDS = 0.05  # a node's loop period in real time; `tick_seconds` is simulated, so it scales with speed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class DemoPlan:
    """Times and demands of one run, scaled to its length (pure: no I/O)."""

    start: datetime
    hours: float
    speed: float
    sessions: tuple[EVSession, ...]
    event_start: datetime
    event_end: datetime

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)

    @property
    def steps(self) -> int:
        return int(self.hours * 4)


def plan_demo(hours: float, start: datetime = START, speed: float | None = None) -> DemoPlan:
    h = timedelta(hours=hours)
    sessions = []
    for i, charger in enumerate(CHARGERS_16 + CHARGERS_201):
        arrival = start + h * (0.1 + 0.02 * i)
        departure = start + h * 0.85
        stay_h = (departure - arrival).total_seconds() / 3600
        # what 11 kW delivers in 40 % of the stay: a need a fleet can meet under a cap
        energy = round(min(60.0, 0.4 * 11.0 * stay_h), 1)
        sessions.append(
            EVSession(
                session_id=f"van-{i + 1:02d}",
                arrival=arrival.replace(second=0, microsecond=0),
                departure=departure.replace(second=0, microsecond=0),
                energy_kwh=energy,
                max_kw=11.0,
                priority=1 + i % 2,
                charger_id=charger,
            )
        )
    # in the evening, once every process is up and the first plan is in force
    event_start = (start + min(max(h / 8, timedelta(hours=1.5)), h / 2)).replace(second=0, microsecond=0)
    event_start = event_start - timedelta(minutes=event_start.minute % 15)
    event_end = event_start + max(timedelta(minutes=30), h / 12)
    return DemoPlan(start, hours, speed or 86_400 / REAL_SECONDS_PER_DAY, tuple(sessions), event_start, event_end)


@dataclass(eq=False)
class Processes:
    """Child processes with their logs in the run folder; all stopped together."""

    logs: Path
    children: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        """Start `gridmesh argv` as `name`; it gets SIGTERM if the demo dies, even by SIGKILL
        (`services.lifecycle`)."""
        with (self.logs / f"{name}.log").open("w") as log:  # the child has its own descriptor
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(env),
                cwd=ROOT,
            )

    def check(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}: see {self.logs / (name + '.log')}")

    def stop(self, names: Sequence[str] | None = None, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to the chosen children (all when `names` is None) at once, SIGKILL to any still
        running `grace` seconds later; returns once every one has exited."""
        chosen = [self.children[n] for n in (list(self.children) if names is None else names) if n in self.children]
        for proc in chosen:
            proc.send_signal(signal.SIGTERM)  # a no-op for one that has exited
        deadline = time.monotonic() + grace
        for proc in chosen:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Layout:
    out: Path
    portfolio_port: int
    node_ports: dict[str, int]
    ocpp_port: int
    battery_port: int
    token: str
    origin_unix: float
    viewer_token: str = ""
    dashboard_port: int = 0
    # site name -> the port its node dials for the portfolio (a proxy's; `bench/chaos.py`), else portfolio_port
    link_ports: dict[str, int] = field(default_factory=dict)


def write_configs(plan: DemoPlan, lay: Layout) -> dict[str, NodeConfig]:
    """Certificates, portfolio.yaml and one node.yaml per site under `out/config`; every path
    in them absolute (a service resolves relative paths from its config's folder)."""
    lay = dataclasses.replace(lay, out=lay.out.resolve())
    cfg, certs = lay.out / "config", lay.out / "certs"
    cfg.mkdir(parents=True, exist_ok=True)
    init_ca(certs)
    server = issue_server(certs, "portfolio", ["127.0.0.1", "localhost"])
    clock = {"clock_speed": plan.speed, "clock_start": plan.start.isoformat(), "clock_origin_unix": lay.origin_unix}
    portfolio = {
        "portfolio": {
            "listen": f"127.0.0.1:{lay.portfolio_port}",
            "store": str(lay.out / "portfolio.db"),
            "tls": {"cert": str(server.cert), "key": str(server.key), "client_ca": str(certs / "ca.pem")},
            "tokens": [
                {"token": lay.token, "role": "operator"},
                *([{"token": lay.viewer_token, "role": "viewer"}] if lay.viewer_token else []),
            ],
            "step_minutes": 15,
            "horizon_steps": 96,
            "solve_period_seconds": 900,
            "schedule_valid_minutes": 120,
            "plan_lead_seconds": 300,
            "ping_interval_seconds": 1,
            "ping_timeout_seconds": 4,
            "snapshot_seconds": 900,
            **clock,
        }
    }
    (cfg / "portfolio.yaml").write_text(yaml.safe_dump(portfolio, sort_keys=False))
    configs = {}
    for name, site_id in SITES.items():
        doc = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
        issued = issue_site(certs, site_id)
        doc["node"].update(
            journal=str(lay.out / "nodes" / name / "journal.db"),
            history=str((EXAMPLES / doc["node"]["history"]).resolve()),
            tick_seconds=round(TICK_REAL_SECONDS * plan.speed, 3),  # not 0.05 simulated s: a busy loop at 864x
            tokens=[{"token": lay.token, "role": "operator"}],
            listen=f"127.0.0.1:{lay.node_ports[name]}",
            **clock,
        )
        doc["plan"]["reoptimize_minutes"] = 15
        doc["portfolio"] = {
            "address": f"127.0.0.1:{lay.link_ports.get(name, lay.portfolio_port)}",
            "ca": str(certs / "ca.pem"),
            "cert": str(issued.cert),
            "key": str(issued.key),
            "grace_seconds": 1800,
            "telemetry_seconds": 300,
            "snapshot_seconds": 900,
            "ping_interval_seconds": 1,
            "ping_timeout_seconds": 4,
        }
        if name == "depot":
            doc["site"]["battery"] = {
                "capacity_kwh": 200,
                "soc_initial_kwh": 100,
                "soc_min_kwh": 20,
                "soc_max_kwh": 190,
                "max_charge_kw": 100,
                "max_discharge_kw": 100,
                "charge_efficiency": 0.95,
                "discharge_efficiency": 0.95,
                "degradation_cost_per_kwh": 0.01,
            }
            doc["devices"] = {
                "ocpp": {
                    "listen": f"127.0.0.1:{lay.ocpp_port}",
                    "password_env": "GRIDMESH_DEMO_CP_PASSWORD",
                    "response_timeout_seconds": 5,
                },
                "battery": {
                    "host": "127.0.0.1",
                    "port": lay.battery_port,
                    "poll_seconds": 60,
                    "stale_seconds": 900,
                    "revert_seconds": 600,
                },
            }
        else:
            doc.pop("devices", None)
        path = cfg / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        configs[name] = parse(NodeConfig, doc)
    sessions = pd.DataFrame(
        [
            {
                "session_id": s.session_id,
                "arrival": s.arrival.isoformat(),
                "departure": s.departure.isoformat(),
                "energy_kwh": s.energy_kwh,
                "max_kw": s.max_kw,
                "priority": s.priority,
                "charger_id": s.charger_id,
            }
            for s in plan.sessions
        ]
    )
    sessions.to_csv(cfg / "depot_sessions.csv", index=False)
    return configs


async def wait_serving(port: int, service: str, procs: Processes, timeout: float = 60.0) -> None:
    """Until `service` on the plaintext `port` reports SERVING (on the event loop: a signal
    meanwhile stops the demo at once)."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            procs.check()
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{service} on port {port} did not come up")


async def wait_page(url: str, procs: Processes, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check()
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as page:
            if page.status == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the dashboard at {url} did not come up")


def _progress(
    now: datetime,
    plan: DemoPlan,
    sites: Sequence[portfolio_pb2.SiteInfo],
    state: portfolio_pb2.GetPortfolioStateResponse,
) -> Group:
    done = min(1.0, max(0.0, (now - plan.start) / (plan.end - plan.start)))
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]simulated[/bold] {now:%Y-%m-%d %H:%M} UTC",
        f"{done:5.0%} of {plan.hours:g} h",
        f"import {state.import_kw:7.1f} kW",
        f"PV {state.pv_kw:6.1f} kW",
        f"EV {state.ev_kw:6.1f} kW",
        f"solves: {state.latest_solve.solve_id or '-'}",
    )
    table = Table(title="sites", expand=False)
    for col in ("site", "link", "mode", "import kW", "PV kW", "SOC kWh", "EV kW", "schedule"):
        table.add_column(col, justify="right" if "kW" in col or "kWh" in col else "left")
    for s in sites:
        p = s.latest
        table.add_row(
            s.site_id,
            "up" if s.connected else "[red]down[/red]",
            portfolio_pb2.NodeLinkMode.Name(s.mode).removeprefix("NODE_LINK_MODE_"),
            f"{p.grid_import_kw:.1f}",
            f"{p.pv_kw:.1f}",
            f"{p.soc_kwh:.1f}",
            f"{p.ev_kw:.1f}",
            f"{s.schedule_state or '-'}",
        )
    feeders = Table(title="feeders")
    for col in ("feeder", "sites", "import kW", "cap kW"):
        feeders.add_column(col)
    for f in state.feeders:
        feeders.add_row(f.feeder.feeder_id, ", ".join(f.feeder.site_ids), f"{f.import_kw:.1f}", f"{f.cap_kw:.1f}")
    return Group(head, table, feeders)


def outcome_table(outcome: RunOutcome) -> Table:
    table = Table(title=TITLE)
    for col in (
        "site",
        "cost",
        "business as usual",
        "saved",
        "peak kW",
        "BAU peak kW",
        "EV kWh",
        "EV needed kWh",
        "EV ok",
    ):
        table.add_column(col, justify="left" if col == "site" else "right")
    for s in outcome.sites:
        table.add_row(
            s.site_id,
            f"{s.cost:,.2f}",
            f"{s.bau_cost:,.2f}",
            f"{s.bau_cost - s.cost:,.2f}",
            f"{s.peak_import_kw:.1f}",
            f"{s.bau_peak_import_kw:.1f}",
            f"{s.ev_delivered_kwh:.1f}",
            f"{s.ev_required_kwh:.1f}",
            "yes" if s.ev_ok else "[red]NO[/red]",
        )
    total = run_totals(outcome)  # the run page's total row too
    table.add_row(
        "[bold]total[/bold]",
        f"{total.cost:,.2f}",
        f"{total.bau_cost:,.2f}",
        f"{total.saved:,.2f}",
        "",
        "",
        f"{total.ev_delivered_kwh:.1f}",
        f"{total.ev_required_kwh:.1f}",
        "yes" if total.ev_ok else "[red]NO[/red]",
        end_section=True,
    )
    for f in outcome.feeders:
        table.add_row(
            f"feeder {f.name}",
            f"cap {f.limit_kw:.1f} kW",
            f"worst excess {max(f.worst_excess_kw, 0):.2f} kW",
            "kept" if f.holds else "[red]BROKEN[/red]",
        )
    for e in outcome.events:
        table.add_row(
            f"flex {e.name}",
            f"limit {e.limit_kw:.1f} kW",
            f"worst excess {max(e.worst_excess_kw, 0):.2f} kW",
            "delivered" if e.holds else "[red]MISSED[/red]",
        )
    return table


def collect(
    store_path: Path,
    plan: DemoPlan,
    configs: dict[str, NodeConfig],
    feeders: Sequence[Feeder],
    events: Sequence[FlexEvent],
) -> tuple[RunOutcome, dict[str, SiteRealized], dict[str, RunConfig]]:
    index = pd.date_range(plan.start, periods=plan.steps, freq="15min", name="timestamp")
    store = PortfolioStore(store_path)
    try:
        realized: dict[str, SiteRealized] = {}
        runs: dict[str, RunConfig] = {}
        frames = {}
        for name, site_id in SITES.items():
            points = [_point(r.payload) for r in store.telemetry(site_id, limit=1_000_000)]
            frame, missing = realized_frame(points, index)
            frames[site_id] = frame
            config = configs[name]
            run = RunConfig(
                horizon=Horizon(start=plan.start, step_minutes=15, steps=plan.steps),
                tariff=config.plan.tariff,
                objective=config.plan.objective,
                priorities=config.plan.priorities,
            )
            runs[site_id] = horizon_run(run, plan.start, plan.steps)
            realized[site_id] = site_outcome(
                config.site, runs[site_id], frame, missing, plan.sessions if name == "depot" else ()
            )
    finally:
        store.close()
    outcome = RunOutcome(
        tuple(r.outcome for r in realized.values()),
        tuple(feeder_outcome(f, frames, plan.start) for f in feeders),
        tuple(event_outcome(e, frames) for e in events),
    )
    return outcome, realized, runs


def _point(payload: bytes) -> TelemetryPoint:
    p = portfolio_pb2.TelemetryPoint.FromString(payload)
    return TelemetryPoint(
        convert.from_ts(p.at),
        p.grid_import_kw,
        p.grid_export_kw,
        p.load_kw,
        p.pv_kw,
        p.battery_charge_kw,
        p.battery_discharge_kw,
        p.soc_kwh,
        p.ev_kw,
        p.flex_kw,
        pc.LINK_MODE_NAME.get(p.mode, ""),
        p.seq,
        p.ev_energy_kwh,
    )


def acked_schedules(store_path: Path) -> dict[str, int]:
    """Per site, how many schedules the portfolio pushed that the node acknowledged."""
    store = PortfolioStore(store_path)
    try:
        return {
            site_id: sum(1 for s in store.schedules(site_id, limit=100_000) if str(s.state) == "ACKED")
            for site_id in SITES.values()
        }
    finally:
        store.close()


def write_outcome(path: Path, outcome: RunOutcome, acked: dict[str, int], plan: DemoPlan) -> None:
    """`outcome.json`: what the table shows, for machines (the CI test reads it)."""
    totals = run_totals(outcome)
    doc = {
        "ok": outcome.ok,
        "start": plan.start.isoformat(),
        "hours": plan.hours,
        "sites": [{**asdict(s), "ev_ok": s.ev_ok, "acked_schedules": acked.get(s.site_id, 0)} for s in outcome.sites],
        "feeders": [{**asdict(f), "holds": f.holds} for f in outcome.feeders],
        "events": [{**asdict(e), "holds": e.holds} for e in outcome.events],
        "total_cost": totals.cost,
        "total_bau_cost": totals.bau_cost,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_reports(
    out: Path, realized: dict[str, SiteRealized], runs: dict[str, RunConfig], sessions: dict[str, Sequence[EVSession]]
) -> list[Path]:
    """Per site, a run bundle of the day as it happened (site and run config, the load and PV
    the node planned with, the EV sessions: `gridmesh optimize` on it gives the hindsight
    optimum), the realized schedule, its metrics against business as usual, and a report."""
    pages = []
    for site_id, r in realized.items():
        folder = out / "sites" / site_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "site_config.yaml").write_text(
            yaml.safe_dump(r.problem.site.model_dump(mode="json", exclude_none=True), sort_keys=False)
        )
        (folder / "run_config.yaml").write_text(
            yaml.safe_dump(runs[site_id].model_dump(mode="json", exclude_none=True), sort_keys=False)
        )
        series = pd.DataFrame({"load_kw": r.problem.load_kw, "pv_kw": r.problem.pv_kw}, index=r.problem.index)
        series.reset_index().assign(timestamp=lambda f: f["timestamp"].map(lambda t: t.isoformat())).to_csv(
            folder / "timeseries.csv", index=False
        )
        if sessions.get(site_id):
            pd.DataFrame(
                [
                    {
                        "session_id": s.session_id,
                        "arrival": s.arrival.isoformat(),
                        "departure": s.departure.isoformat(),
                        "energy_kwh": s.energy_kwh,
                        "max_kw": s.max_kw,
                        "priority": s.priority,
                        "charger_id": s.charger_id or "",
                    }
                    for s in sessions[site_id]
                ]
            ).to_csv(folder / "sessions.csv", index=False)
        r.schedule.reset_index().to_csv(folder / "realized.csv", index=False)
        (folder / "metrics.json").write_text(
            json.dumps(metrics_document(r.metrics, r.bau_metrics, r.outcome.currency), indent=2) + "\n"
        )
        pages.append(
            write_report(
                folder,
                r.problem,
                {"optimized": r.schedule},
                {"realized": r.metrics, "business_as_usual": r.bau_metrics},
                r.outcome.currency,
                title=f"{site_id}: the demo day, realized",
            )
        )
    return pages


async def run_demo(
    hours: float, out_root: Path, console: Console, speed: float | None = None, dashboard_port: int = 0
) -> int:
    plan = plan_demo(hours, speed=speed)
    # absolute: the configs written below name files that services resolve from their own folder
    out = (out_root / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    lay = Layout(
        out,
        free_port(),
        {n: free_port() for n in SITES},
        free_port(),
        free_port(),
        secrets.token_urlsafe(16),
        time.time() + STARTUP_SECONDS,
        secrets.token_urlsafe(16),
        dashboard_port or free_port(),
    )
    configs = write_configs(plan, lay)
    password = secrets.token_hex(12)  # hex: never starts with "-", which argparse would take for an option
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRIDMESH_DEMO_CP_PASSWORD": password}
    procs = Processes(out / "logs")
    console.print(f"[bold]gridmesh demo[/bold]: {hours:g} simulated hours at {plan.speed:.0f}x, run folder {out}")
    meta = (("authorization", f"Bearer {lay.token}"),)
    feeder: Feeder | None = None
    event: FlexEvent | None = None
    try:
        procs.start(
            "battery-sim",
            [
                "sim",
                "battery",
                "--listen",
                f"127.0.0.1:{lay.battery_port}",
                "--capacity-kwh",
                "200",
                "--max-kw",
                "100",
                "--soc",
                "50",
                "--speed",
                f"{plan.speed}",
            ],
            env,
        )
        procs.start("portfolio", ["portfolio", "serve", "--config", str(out / "config" / "portfolio.yaml")], env)
        for name in SITES:
            procs.start(
                f"node-{name}",
                ["sitenode", "serve", "--config", str(out / "config" / f"{name}.yaml"), "--insecure-loopback"],
                env,
            )
        for name in SITES:
            await wait_serving(lay.node_ports[name], "gridmesh.v1.SiteNode", procs)
        clock_args = [
            "--speed",
            f"{plan.speed}",
            "--clock-start",
            plan.start.isoformat(),
            "--clock-origin",
            f"{lay.origin_unix}",
            "--sessions",
            str(out / "config" / "depot_sessions.csv"),
            "--meter-seconds",
            "60",
            "--ev-kw",
            "11",
        ]
        central = f"ws://127.0.0.1:{lay.ocpp_port}/ocpp"
        procs.start(
            "chargers-1.6",
            [
                "sim",
                "chargers",
                "--central-system",
                central,
                "--ids",
                ",".join(CHARGERS_16),
                f"--password={password}",
                "--ocpp",
                "1.6",
                *clock_args,
            ],
            env,
        )
        procs.start(
            "chargers-2.0.1",
            [
                "sim",
                "chargers",
                "--central-system",
                central,
                "--ids",
                ",".join(CHARGERS_201),
                f"--password={password}",
                "--ocpp",
                "2.0.1",
                *clock_args,
            ],
            env,
        )
        # the fleet announces its vans to the depot's node, as a fleet system would
        async with grpc.aio.insecure_channel(f"127.0.0.1:{lay.node_ports['depot']}") as channel:
            node = sitenode_pb2_grpc.SiteNodeStub(channel)
            for s in plan.sessions:
                await node.UpsertSession(
                    sitenode_pb2.UpsertSessionRequest(session=convert.session_out(s)), metadata=meta
                )
        # with mTLS every client shows a certificate: the demo's operator console has its own,
        # and so has the dashboard (whose users still sign in with their own tokens)
        operator = issue_operator(out / "certs", "demo-console")
        board = issue_operator(out / "certs", "demo-dashboard")
        procs.start(
            "dashboard",
            [
                "dashboard",
                "--portfolio",
                f"127.0.0.1:{lay.portfolio_port}",
                "--listen",
                f"127.0.0.1:{lay.dashboard_port}",
                "--ca",
                str(out / "certs" / "ca.pem"),
                "--cert",
                str(board.cert),
                "--key",
                str(board.key),
            ],
            env,
        )
        await wait_page(f"http://127.0.0.1:{lay.dashboard_port}/", procs)
        console.print(
            f"dashboard: [bold]http://127.0.0.1:{lay.dashboard_port}/[/bold] (up until the demo ends) — "
            f"sign in with the operator token [bold]{lay.token}[/bold] or the viewer token {lay.viewer_token}"
        )
        credentials = channel_credentials(out / "certs" / "ca.pem", operator.cert, operator.key)
        async with grpc.aio.secure_channel(f"127.0.0.1:{lay.portfolio_port}", credentials) as channel:
            stub = portfolio_pb2_grpc.PortfolioStub(channel)
            feeder, event = await _first_plan_then_limits(stub, plan, meta, procs)
            console.print(
                f"feeder [bold]{feeder.feeder_id}[/bold] capped at {feeder.cap_kw:.0f} kW "
                f"over {', '.join(feeder.site_ids)}; "
                f"flex event caps import at {event.kw:.0f} kW from {event.start:%H:%M} to {event.end:%H:%M} UTC"
            )
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                while True:
                    procs.check()
                    sites = (await stub.ListSites(portfolio_pb2.ListSitesRequest(), metadata=meta)).sites
                    state = await stub.GetPortfolioState(portfolio_pb2.GetPortfolioStateRequest(), metadata=meta)
                    now = convert.from_ts(state.now)
                    live.update(_progress(now, plan, sites, state))
                    if now >= plan.end + timedelta(minutes=20):  # the last step's telemetry has arrived
                        break
                    await asyncio.sleep(0.5)
    except BaseException:  # a signal (cancelled), a child that died or a failure: every child goes at once
        procs.stop()
        raise
    # the day is over: chargers first (their central systems still up), then nodes, then the rest
    procs.stop([n for n in procs.children if n.startswith("chargers")])
    procs.stop([n for n in procs.children if n.startswith("node")])
    procs.stop()
    feeders, events = [feeder] if feeder else [], [event] if event else []
    outcome, realized, runs = collect(out / "portfolio.db", plan, configs, feeders, events)
    pages = write_reports(out, realized, runs, {SITES["depot"]: plan.sessions})
    write_outcome(out / "outcome.json", outcome, acked_schedules(out / "portfolio.db"), plan)
    reports = {site_id: page.relative_to(out).as_posix() for site_id, page in zip(realized, pages, strict=True)}
    index = write_index(
        out,
        page_data(
            outcome, realized, feeders, events, start=plan.start, hours=plan.hours, speed=plan.speed, reports=reports
        ),
    )
    console.print(outcome_table(outcome))
    for page in pages:
        console.print(f"report: {page}")
    console.print(f"run page: {index}")
    if not outcome.ok:
        console.print("[red]a cap, the flex event or an EV requirement was not kept[/red]")
    return 0 if outcome.ok else 1


def evening_event(plan: DemoPlan, imports: pd.Series) -> FlexEvent:
    """The flex event: the evening's busiest half hour of the planned import (`imports`,
    the three sites' sum) starts it, and it caps import at 85 % of the window's planned
    peak, so it binds and shows what flexibility delivers.

    The evening is the run's first hours (it starts at 17:00 in New York, `START`): the
    whole event ends within `EVENING_HOURS` of the start (or half the run), so the vans'
    overnight charging, the plan's real peak, cannot pull it into the night.
    """
    length = plan.event_end - plan.event_start
    close = plan.start + min(timedelta(hours=plan.hours / 2), EVENING_HOURS)
    evening = imports[(imports.index >= pd.Timestamp(plan.event_start)) & (imports.index < pd.Timestamp(close))]
    pairs = evening.rolling(2).mean().dropna()
    pairs = pairs[pairs.index - pd.Timedelta(minutes=15) <= pd.Timestamp(close - length)]
    begin = (pairs.idxmax() - pd.Timedelta(minutes=15)).to_pydatetime() if len(pairs) else plan.event_start
    window = imports[(imports.index >= pd.Timestamp(begin)) & (imports.index < pd.Timestamp(begin + length))]
    limit = round(0.85 * float(window.max()), 1) if len(window) else 0.0
    return FlexEvent(event_id="evening-peak", kind=FlexKind.CAP_AT, kw=limit, start=begin, end=begin + length)


async def _first_plan_then_limits(
    stub: portfolio_pb2_grpc.PortfolioStub, plan: DemoPlan, meta: tuple[tuple[str, str], ...], procs: Processes
) -> tuple[Feeder, FlexEvent]:
    """Wait for the first portfolio plan of all three sites; then cap the feeder below the
    depot's and office's joint planned peak, and the three sites' import in the evening
    below theirs, so both bind."""
    deadline = time.monotonic() + 120  # five processes share two cores: the first plan may take a while
    schedules: dict[str, pd.DataFrame] = {}
    while len(schedules) < len(SITES):
        procs.check()
        if time.monotonic() > deadline:
            raise RuntimeError("no portfolio plan reached every site within two minutes")
        for site_id in SITES.values():
            with contextlib.suppress(grpc.aio.AioRpcError):
                got = await stub.GetSite(portfolio_pb2.GetSiteRequest(site_id=site_id), metadata=meta)
                ready = bool(got.schedule.columns) and got.site.schedule_state == "ACKED"
                if site_id == "depot-north":  # planned with the vans the fleet announced
                    ready = ready and any(c.name.startswith("ev_van-") for c in got.schedule.columns)
                if ready:
                    schedules[site_id] = convert.schedule_frame(got.schedule)
        await asyncio.sleep(0.3)
    net = {s: f["grid_import_kw"] - f["grid_export_kw"] for s, f in schedules.items()}
    joint = (net["depot-north"] + net["office-east"]).dropna()
    feeder = Feeder(
        feeder_id="north",
        site_ids=["depot-north", "office-east"],
        cap_kw=round(0.85 * float(joint.max()), 1),
        description="shared 400 kVA transformer",
    )
    await stub.SetFeeder(portfolio_pb2.SetFeederRequest(feeder=pc.feeder_out(feeder)), metadata=meta)
    imports = sum(
        (f["grid_import_kw"] for f in schedules.values()), pd.Series(0.0, index=next(iter(schedules.values())).index)
    )
    event = evening_event(plan, imports)
    length = event.end - event.start
    now = convert.from_ts((await stub.GetPortfolioState(portfolio_pb2.GetPortfolioStateRequest(), metadata=meta)).now)
    if event.start < now + EVENT_NOTICE:
        # a slow start ate into the evening: the event moves out to give the notice
        begin = pd.Timestamp(now + EVENT_NOTICE).ceil("15min").to_pydatetime()
        # and caps its new window's planned peak: the old window may lie before the plans began
        # (nothing planned there: a limit of 0 kW that no site could keep)
        window = imports[(imports.index >= pd.Timestamp(begin)) & (imports.index < pd.Timestamp(begin + length))]
        limit = round(0.85 * float(window.max()), 1) if len(window) else event.kw
        event = event.model_copy(update={"start": begin, "end": begin + length, "kw": limit})
    await stub.CreateFlexEvent(portfolio_pb2.CreateFlexEventRequest(event=pc.event_out(event)), metadata=meta)
    return feeder, event


async def until_signalled(work: Coroutine[Any, Any, int], console: Console) -> int:
    """`work`'s exit code; on SIGTERM or SIGINT it is cancelled (`run_demo` then stops every
    child: SIGTERM, SIGKILL after a grace) and the code is 128 + the signal's number, as a shell
    reports a job a signal ended: an interrupted demo has no outcome to report."""
    task = asyncio.ensure_future(work)
    got: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        if not got:
            got.append(sig)
            console.print(f"[yellow]{sig.name}[/yellow]: stopping the demo's processes")
            task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if not got:
            raise
        return 128 + got[0]
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(hours: float, out: Path, console: Console, speed: float | None = None, dashboard_port: int = 0) -> int:
    return asyncio.run(until_signalled(run_demo(hours, out, console, speed, dashboard_port), console))
