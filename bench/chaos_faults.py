"""The chaos soak's faults: a seeded schedule (sim time, kind, target, duration) and the
injectors that play each one against the fleet.

Faults run one after another, each in its own slot of the run, so each recovery is
measured on its own. Operator writes happen during an outage (the portfolio killed, or a
site's link black-holed) and are retried until the portfolio accepts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import yaml

from bench.chaos_fleet import CHARGER_GROUPS, Built, Fleet, sim_time, start_battery, start_chargers, unix_at
from bench.chaos_proxy import Proxy
from portfolio.model import Feeder, FlexEvent, FlexKind
from services import convert
from services import portfolio_convert as pc
from services.demo import SITES
from services.stubs.gridmesh.v1 import portfolio_pb2, portfolio_pb2_grpc, sitenode_pb2, sitenode_pb2_grpc

KINDS = (
    "node_kill",
    "portfolio_kill",
    "link_blackhole",
    "link_drop",
    "link_delay",
    "charger_reboot",
    "battery_restart",
    "battery_freeze",
    "plan_time_limit",
    "operator_writes",
)
# what each kind may last, simulated minutes
DURATION_MINUTES = {
    "node_kill": (10, 40),
    "portfolio_kill": (10, 40),
    "link_blackhole": (15, 60),
    "link_drop": (10, 45),
    "link_delay": (20, 60),
    "charger_reboot": (5, 20),
    "battery_restart": (10, 30),
    "battery_freeze": (20, 60),
    "plan_time_limit": (30, 60),
    "operator_writes": (15, 40),
}
LINK_KINDS = {
    "node_kill",
    "portfolio_kill",
    "link_blackhole",
    "link_drop",
    "link_delay",
    "operator_writes",
    "plan_time_limit",
}
FEEDER_NOTICE = timedelta(minutes=30)  # a new feeder cap is checked from the step after this
EVENT_NOTICE = timedelta(hours=2)  # a flex event made during an outage starts this far ahead


@dataclass
class Fault:
    at: datetime
    kind: str
    target: str
    duration: timedelta
    params: dict[str, Any] = field(default_factory=dict)
    # filled in as it runs (Unix seconds)
    began_u: float | None = None
    ended_u: float | None = None
    sites: list[str] = field(default_factory=list)  # site ids whose link it cut
    notes: dict[str, Any] = field(default_factory=dict)

    def doc(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "target": self.target,
            "duration_minutes": self.duration.total_seconds() / 60,
            "params": self.params,
            "began_u": self.began_u,
            "ended_u": self.ended_u,
            "sites": self.sites,
            "notes": self.notes,
        }


def make_schedule(seed: int, start: datetime, days: float, per_day: float, warmup: timedelta) -> list[Fault]:
    """Every kind at least once (in a seeded order), then seeded kinds; one fault per slot of
    the run after `warmup`, each lasting at most 40 % of its slot."""
    rng = random.Random(seed)
    n = max(len(KINDS), round(days * per_day))
    kinds = list(KINDS)
    rng.shuffle(kinds)
    kinds += [rng.choice(KINDS) for _ in range(n - len(kinds))]
    first, last = start + warmup, start + timedelta(days=days) - timedelta(hours=1.5)
    slot = (last - first) / n
    faults = []
    for i, kind in enumerate(kinds):
        low, high = DURATION_MINUTES[kind]
        duration = min(timedelta(minutes=rng.uniform(low, high)), slot * 0.4)
        at = first + slot * i + slot * rng.uniform(0.0, 0.15)
        at = at.replace(microsecond=0)
        target, params = _target(rng, kind, i)
        faults.append(Fault(at, kind, target, timedelta(seconds=round(duration.total_seconds())), params))
    return faults


def _target(rng: random.Random, kind: str, i: int) -> tuple[str, dict[str, Any]]:
    if kind in ("node_kill", "link_blackhole", "link_drop"):
        return rng.choice(list(SITES)), {}
    if kind == "link_delay":
        return rng.choice(list(SITES)), {"delay_ms": rng.choice((150, 400, 900))}
    if kind == "portfolio_kill":
        return "portfolio", {}
    if kind == "charger_reboot":
        return rng.choice(sorted(CHARGER_GROUPS)), {}
    if kind in ("battery_restart", "battery_freeze"):
        return "battery-sim", {}
    if kind == "plan_time_limit":  # the office: no charge points to take down with it
        return "office", {"deadline_seconds": 0.0001}
    # operator writes: alternately while the portfolio is down and while the office's link is cut
    outage = rng.choice(("portfolio", "office"))
    return outage, {"cap_factor": round(rng.uniform(0.95, 1.05), 3), "event_factor": round(rng.uniform(0.9, 0.97), 3)}


def read_share(journal: Path) -> dict[str, Any] | None:
    """The import limit the portfolio last gave a node, from its journal (read-only)."""
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=2)
        try:
            row = db.execute("SELECT value FROM settings WHERE key = 'portfolio_import_limit'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return json.loads(row[0]) if row else None


def last_battery_soc(path: Path, default: float) -> float:
    soc = default
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if "soc" in doc:
                    soc = float(doc["soc"])
    return soc


@dataclass(eq=False)
class Injector:
    fleet: Fleet
    built: Built
    proxies: dict[str, Proxy]
    portfolio: portfolio_pb2_grpc.PortfolioStub
    meta: tuple[tuple[str, str], ...]
    feeder: Feeder
    shares: list[dict[str, Any]] = field(default_factory=list)  # (u, site, share) at each outage's start
    writes: list[dict[str, Any]] = field(default_factory=list)  # operator writes, with when accepted
    chargers_held: bool = False  # True while the depot's node is down: its chargers are not restarted

    def _real(self, d: timedelta) -> float:
        return d.total_seconds() / self.built.plan.speed

    def snapshot_shares(self, names: list[str]) -> None:
        for name in names:
            share = read_share(self.built.lay.out / "nodes" / name / "journal.db")
            self.shares.append({"u": time.time(), "site": SITES[name], "share": share})

    async def run(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, unix_at(self.built, fault.at) - time.time()))
        fault.began_u = time.time()
        handler = getattr(self, f"_{fault.kind}")
        await handler(fault)
        fault.ended_u = time.time()

    async def _hold(self, fault: Fault) -> None:
        await asyncio.sleep(self._real(fault.duration))

    async def _wait_node(self, name: str) -> None:
        port = self.built.lay.node_ports[name]
        deadline = time.monotonic() + 90
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = sitenode_pb2_grpc.SiteNodeStub(channel)
            while time.monotonic() < deadline:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=self.meta, timeout=2)
                    return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"node {name} did not come back")

    async def _wait_portfolio(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.portfolio.ListSites(portfolio_pb2.ListSitesRequest(), metadata=self.meta, timeout=2)
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the portfolio did not come back")

    async def _node_kill(self, fault: Fault) -> None:
        name = fault.target
        fault.sites = [SITES[name]]
        self.snapshot_shares([name])
        if name == "depot":
            self.chargers_held = True  # the charge points lose their central system: they stop, as the sim does
        self.fleet.kill(f"node-{name}")
        await self._hold(fault)
        self.fleet.start(f"node-{name}")
        await self._wait_node(name)
        if name == "depot":
            self.chargers_held = False

    async def _portfolio_kill(self, fault: Fault) -> None:
        fault.sites = list(SITES.values())
        self.snapshot_shares(list(SITES))
        self.fleet.kill("portfolio")
        await self._hold(fault)
        self.fleet.start("portfolio")
        await self._wait_portfolio()

    async def _link(self, fault: Fault, mode: str) -> None:
        fault.sites = [SITES[fault.target]]
        self.snapshot_shares([fault.target])
        self.proxies[fault.target].set_mode(mode, float(fault.params.get("delay_ms", 0)))
        await self._hold(fault)
        self.proxies[fault.target].set_mode("pass")

    async def _link_blackhole(self, fault: Fault) -> None:
        await self._link(fault, "blackhole")

    async def _link_drop(self, fault: Fault) -> None:
        await self._link(fault, "drop")

    async def _link_delay(self, fault: Fault) -> None:
        await self._link(fault, "delay")

    async def _charger_reboot(self, fault: Fault) -> None:
        # SIGKILL: the websocket goes without a close frame, mid-transaction; the "reboot" restarts
        # the charge points, which boot again and resume their cars' sessions
        self.fleet.kill(fault.target)
        await self._hold(fault)
        start_chargers(self.fleet, self.built, fault.target)

    async def _battery_restart(self, fault: Fault) -> None:
        self.fleet.kill("battery-sim")
        soc = last_battery_soc(self.built.device_logs / "battery.jsonl", 50.0)
        fault.notes["soc_pct"] = soc
        await self._hold(fault)
        start_battery(self.fleet, self.built, soc)

    async def _battery_freeze(self, fault: Fault) -> None:
        self.fleet.signal("battery-sim", signal.SIGUSR1)
        await self._hold(fault)
        self.fleet.signal("battery-sim", signal.SIGUSR1)

    async def _plan_time_limit(self, fault: Fault) -> None:
        """The node restarted (SIGTERM, its own journal) with a plan deadline no solve can meet and
        its link cut: every plan it starts runs into the limit and is abandoned, for the
        fault's time; then it is restarted on its own config. Its log is read for the abandoned plans."""
        name = fault.target
        fault.sites = [SITES[name]]
        config = self.built.lay.out / "config" / f"{name}.yaml"
        tight = config.with_name(f"{name}-deadline.yaml")
        doc = yaml.safe_load(config.read_text())
        doc["plan"]["deadline_seconds"] = fault.params["deadline_seconds"]
        # a grace shorter than the fault: the node must plan alone while cut off (and fails to)
        doc["portfolio"]["grace_seconds"] = min(doc["portfolio"].get("grace_seconds", 300), 120)
        tight.write_text(yaml.safe_dump(doc, sort_keys=False))
        child = self.fleet.children[f"node-{name}"]
        log = self.fleet.logs / f"node-{name}.log"
        before = log.read_text().count("abandoned after") if log.exists() else 0
        self.snapshot_shares([name])
        self.fleet.stop([child.name])
        child.argv = [str(tight) if a == str(config) else a for a in child.argv]
        self.fleet.start(child.name)
        await self._wait_node(name)
        # a node in PORTFOLIO mode plans nothing of its own: its link cut, it falls back to planning
        # alone, and every plan it starts runs into the deadline (it keeps the schedule in force).
        # Reset, not black-holed: a silent link takes the ping timeout (real seconds) to notice,
        # longer than this fault lasts at the soak's speeds
        self.proxies[name].set_mode("drop")
        await self._hold(fault)
        self.proxies[name].set_mode("pass")
        self.fleet.stop([child.name])
        child.argv = [str(config) if a == str(tight) else a for a in child.argv]
        self.fleet.start(child.name)
        await self._wait_node(name)
        fault.notes["plans_abandoned"] = log.read_text().count("abandoned after") - before

    async def _operator_writes(self, fault: Fault) -> None:
        """Decide the writes while the portfolio is up, cut (portfolio or the office's link),
        send them, retried until accepted, and end the outage after its time."""
        cap = round((self.feeder.cap_kw or 0.0) * fault.params["cap_factor"], 1)
        feeder = self.feeder.model_copy(update={"cap_kw": cap})
        event = await self._event(fault)
        settings = portfolio_pb2.SetSiteSettingsRequest(
            site_id=SITES["warehouse"],
            weights=sitenode_pb2.ObjectiveWeights(
                cost=1.0, carbon=0.0, peak=round(0.01 * (1 + len(self.writes) % 3), 3)
            ),
        )
        if fault.target == "portfolio":
            fault.sites = list(SITES.values())
            self.snapshot_shares(list(SITES))
            self.fleet.kill("portfolio")
        else:
            fault.sites = [SITES[fault.target]]
            self.snapshot_shares([fault.target])
            self.proxies[fault.target].set_mode("blackhole")
        p, m = self.portfolio, self.meta
        calls: list[tuple[str, Any, dict[str, Any]]] = [
            (
                "SetFeeder",
                lambda: p.SetFeeder(
                    portfolio_pb2.SetFeederRequest(feeder=pc.feeder_out(feeder)), metadata=m, timeout=3
                ),
                {"feeder": feeder.model_dump(mode="json")},
            ),
            (
                "CreateFlexEvent",
                lambda: p.CreateFlexEvent(
                    portfolio_pb2.CreateFlexEventRequest(event=pc.event_out(event)), metadata=m, timeout=3
                ),
                {"event": event.model_dump(mode="json")},
            ),
            ("SetSiteSettings", lambda: p.SetSiteSettings(settings, metadata=m, timeout=3), {"site": settings.site_id}),
        ]
        hold = asyncio.create_task(self._hold(fault))
        sent = asyncio.gather(*(self._until_accepted(name, call, doc) for name, call, doc in calls))
        await hold
        if fault.target == "portfolio":
            self.fleet.start("portfolio")
        else:
            self.proxies[fault.target].set_mode("pass")
        await sent
        self.feeder = feeder

    async def _until_accepted(self, name: str, call: Any, doc: dict[str, Any]) -> None:
        tried, first = 0, time.time()
        while True:
            tried += 1
            try:
                await call()
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self.writes.append({"rpc": name, **doc, "error": f"{exc.code().name}: {exc.details()}"})
                    return
                await asyncio.sleep(1.0)
        self.writes.append({"rpc": name, **doc, "first_u": first, "accepted_u": time.time(), "attempts": tried})

    async def _event(self, fault: Fault) -> FlexEvent:
        """A CAP_AT event on the three sites, `EVENT_NOTICE` ahead, below their planned import there."""
        now = sim_time(self.built, time.time()) + EVENT_NOTICE + self.fault_slack(fault)
        begin = pd.Timestamp(now).ceil("15min").to_pydatetime()
        end = begin + timedelta(minutes=30)
        total = 0.0
        frames = []
        for site_id in SITES.values():
            with contextlib.suppress(grpc.aio.AioRpcError):
                got = await self.portfolio.GetSite(
                    portfolio_pb2.GetSiteRequest(site_id=site_id), metadata=self.meta, timeout=5
                )
                frames.append(convert.schedule_frame(got.schedule))
        for f in frames:
            window = f["grid_import_kw"][(f.index >= pd.Timestamp(begin)) & (f.index < pd.Timestamp(end))]
            total += float(window.max()) if len(window) else 0.0
        kw = round(max(total * fault.params["event_factor"], 1.0), 1)
        return FlexEvent(
            event_id=f"chaos-{int(begin.timestamp())}",
            kind=FlexKind.CAP_AT,
            kw=kw,
            start=begin,
            end=end,
            site_ids=list(SITES.values()),
        )

    def fault_slack(self, fault: Fault) -> timedelta:
        return fault.duration  # the event starts its notice after the outage ends
