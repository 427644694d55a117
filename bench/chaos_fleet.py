"""The chaos soak's fleet: the demo's portfolio, three site nodes, OCPP 1.6 and 2.0.1 charge
points and a SunSpec battery, built with `services.demo`'s configs and certificates, each
node dialling the portfolio through its own `chaos_proxy.Proxy`; every child in its own
process group (killed as a group), with the parent-death signal of `services.lifecycle`,
its log appended to across restarts, and its device log (`sitenode.simulators.device_log`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from services.demo import CHARGERS_16, CHARGERS_201, SITES, START, DemoPlan, Layout, free_port, write_configs
from services.lifecycle import child_env
from sitenode.model.sessions import EVSession
from sitenode.simulators.device_log import ENV as DEVICE_LOG_ENV
import contextlib

ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_SECONDS = 6.0
CHARGER_GROUPS = {"chargers-1.6": ("1.6", CHARGERS_16), "chargers-2.0.1": ("2.0.1", CHARGERS_201)}
BATTERY_KWH, BATTERY_KW = 200.0, 100.0


def chaos_plan(days: float, speed: float, start: datetime = START) -> DemoPlan:
    """The demo's six vans, every evening of the run: back at the depot from 17:18 New York time
    (one every quarter hour), gone by 06:00, each needing what 11 kW gives in 40 % of its stay."""
    sessions = []
    for day in range(int(days + 0.999)):
        base = start + timedelta(days=day)
        for i, charger in enumerate(CHARGERS_16 + CHARGERS_201):
            arrival = base + timedelta(minutes=18 + 15 * i)
            departure = base + timedelta(hours=13)
            if departure > start + timedelta(days=days):
                continue
            energy = round(min(60.0, 0.4 * 11.0 * (departure - arrival).total_seconds() / 3600), 1)
            sessions.append(
                EVSession(
                    session_id=f"van-{i + 1:02d}-d{day + 1}",
                    arrival=arrival,
                    departure=departure,
                    energy_kwh=energy,
                    max_kw=11.0,
                    priority=1 + i % 2,
                    charger_id=charger,
                )
            )
    hours = days * 24
    event_start = start + timedelta(hours=2)
    return DemoPlan(start, hours, speed, tuple(sessions), event_start, event_start + timedelta(minutes=45))


@dataclass(eq=False)
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Fleet:
    """Children by name; `start` again restarts one with the same argv and environment."""

    logs: Path
    children: dict[str, Child] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # stopped on purpose (a fault): not restarted meanwhile

    def start(self, name: str, argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
        """(Re)start `gridmesh argv` as `name` in a process group of its own, from this (the
        main) thread: the parent-death signal is bound to the thread that forks."""
        child = self.children.get(name)
        if child is None:
            assert argv is not None and env is not None
            child = self.children[name] = Child(name, list(argv), dict(env))
        with (self.logs / f"{name}.log").open("a") as log:
            child.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *child.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(child.env),
                cwd=ROOT,
                start_new_session=True,
            )
        child.starts += 1
        child.pids.append(child.proc.pid)
        self.down.discard(name)
        return child.proc.pid

    def alive(self, name: str) -> bool:
        child = self.children.get(name)
        return child is not None and child.proc is not None and child.proc.poll() is None

    def pid(self, name: str) -> int | None:
        child = self.children.get(name)
        return child.proc.pid if child is not None and child.proc is not None and self.alive(name) else None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """`sig` (SIGKILL: no goodbye) to the child's whole group; reaped at once."""
        child = self.children[name]
        self.down.add(name)
        if child.proc is None or child.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, sig)
        if sig == signal.SIGKILL:
            child.proc.wait()

    def signal(self, name: str, sig: int) -> None:
        child = self.children[name]
        if child.proc is not None and child.proc.poll() is None:
            os.kill(child.proc.pid, sig)

    def check(self, essential: Sequence[str]) -> None:
        for name in essential:
            child = self.children.get(name)
            if name not in self.down and child is not None and child.proc is not None and child.proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {child.proc.returncode}: see {self.logs / (name + '.log')}"
                )

    def stop(self, names: Sequence[str] | None = None, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to each chosen child's group, SIGKILL to what is left after `grace`."""
        chosen = [c for n, c in self.children.items() if names is None or n in names]
        for c in chosen:
            if c.proc is not None and c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in chosen:
            if c.proc is None:
                continue
            try:
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
            self.down.add(c.name)


@dataclass(frozen=True)
class Built:
    plan: DemoPlan
    lay: Layout
    configs: dict
    password: str
    env: dict[str, str]
    device_logs: Path


def build(out: Path, plan: DemoPlan, link_ports: dict[str, int], token: str, password: str) -> Built:
    """Configs and certificates as the demo writes them (`services.demo.write_configs`), each
    node's portfolio address its proxy's; the depot's MIP time limit short, so a burst of
    sessions runs into it (a fault)."""
    lay = Layout(
        out, free_port(), {n: free_port() for n in SITES}, free_port(), free_port(), token,
        time.time() + 25.0, link_ports=link_ports,
    )  # fmt: skip
    configs = write_configs(plan, lay)
    depot = out / "config" / "depot.yaml"
    doc = yaml.safe_load(depot.read_text())
    doc["plan"]["solver"] = {"time_limit_seconds": 2.0, "mip_rel_gap": 0.0001}
    doc["plan"]["deadline_seconds"] = 20.0
    depot.write_text(yaml.safe_dump(doc, sort_keys=False))
    logs = out / "devices"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRIDMESH_DEMO_CP_PASSWORD": password}
    return Built(plan, lay, configs, password, env, logs)


def start_services(fleet: Fleet, b: Built) -> None:
    out = b.lay.out
    start_battery(fleet, b, soc_pct=50.0)
    fleet.start("portfolio", ["portfolio", "serve", "--config", str(out / "config" / "portfolio.yaml")], b.env)
    for name in SITES:
        argv = ["sitenode", "serve", "--config", str(out / "config" / f"{name}.yaml"), "--insecure-loopback"]
        fleet.start(f"node-{name}", argv, b.env)


def start_battery(fleet: Fleet, b: Built, soc_pct: float) -> None:
    """The battery simulator (again, after a fault: at the SOC it had when it went away)."""
    argv = [
        "sim", "battery", "--listen", f"127.0.0.1:{b.lay.battery_port}", "--capacity-kwh", f"{BATTERY_KWH}",
        "--max-kw", f"{BATTERY_KW}", "--soc", f"{soc_pct:.3f}", "--speed", f"{b.plan.speed}",
    ]  # fmt: skip
    env = {**b.env, DEVICE_LOG_ENV: str(b.device_logs / "battery.jsonl")}
    if "battery-sim" in fleet.children:
        fleet.children["battery-sim"].argv = argv
        fleet.start("battery-sim")
    else:
        fleet.start("battery-sim", argv, env)


def start_chargers(fleet: Fleet, b: Built, name: str) -> None:
    if name in fleet.children:
        fleet.start(name)
        return
    version, ids = CHARGER_GROUPS[name]
    argv = [
        "sim", "chargers", "--central-system", f"ws://127.0.0.1:{b.lay.ocpp_port}/ocpp", "--ids", ",".join(ids),
        f"--password={b.password}", "--ocpp", version, "--speed", f"{b.plan.speed}",
        "--clock-start", b.plan.start.isoformat(), "--clock-origin", f"{b.lay.origin_unix}",
        "--sessions", str(b.lay.out / "config" / "depot_sessions.csv"), "--meter-seconds", "300", "--ev-kw", "11",
    ]  # fmt: skip
    fleet.start(name, argv, {**b.env, DEVICE_LOG_ENV: str(b.device_logs / f"{name}.jsonl")})


def sim_time(b: Built, unix: float) -> datetime:
    return b.plan.start + timedelta(seconds=(unix - b.lay.origin_unix) * b.plan.speed)


def unix_at(b: Built, at: datetime) -> float:
    return b.lay.origin_unix + (at - b.plan.start).total_seconds() / b.plan.speed
