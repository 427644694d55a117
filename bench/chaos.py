"""A fault-injection soak with invariants: the demo's fleet (portfolio, three site nodes,
OCPP 1.6 and 2.0.1 charge points, a SunSpec battery) on the simulated clock for `--days`,
under a seeded schedule of faults (`bench/chaos_faults.py`): nodes and the portfolio
killed with SIGKILL and restarted, node<->portfolio links black-holed, reset or delayed by
our own TCP proxies (`bench/chaos_proxy.py`), charge points dropped mid-transaction and
rebooted, the battery's Modbus server gone or answering with frozen registers, plans run
into their time limit, operator writes during outages.

Invariants are checked afterwards from what the devices saw (the simulators' device logs),
the nodes' journals and the portfolio's store (`bench/chaos_check.py`); recovery times are
measured from each fault's end on the portfolio's view of the sites. JSON goes to
`--out`/chaos.json (default `bench/results/chaos.json`) and a table is printed.

    python bench/chaos.py --days 7 --seed 1 --speed 864 --faults-per-day 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import yaml
from rich.console import Console

from bench.chaos_check import check_all
from bench.chaos_faults import LINK_KINDS, Fault, Injector, make_schedule
from bench.chaos_fleet import CHARGER_GROUPS, Built, Fleet, build, chaos_plan, sim_time, start_chargers, start_services
from bench.chaos_proxy import Proxy
from bench.chaos_report import RssSampler, recovery_summary, render, write_json
from services import convert
from services.certs import channel_credentials, issue_operator
from services.demo import SITES, Layout, _first_plan_then_limits, wait_serving
from services.stubs.gridmesh.v1 import portfolio_pb2, portfolio_pb2_grpc, sitenode_pb2, sitenode_pb2_grpc
from sitenode.model.validation import parse
from sitenode.node_config import NodeConfig

ROOT = Path(__file__).resolve().parents[1]
ESSENTIAL = ("portfolio", "node-depot", "node-office", "node-warehouse", "battery-sim")


class _Check:
    """What `services.demo` helpers call `procs.check()` on."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def check(self) -> None:
        self.fleet.check(ESSENTIAL)


class Monitor:
    """The portfolio's view of the sites every half second: the timeline the checks read and
    each fault's recovery (stream back, schedule resynced, PORTFOLIO mode again)."""

    def __init__(self, built: Built, stub: portfolio_pb2_grpc.PortfolioStub, meta: tuple[tuple[str, str], ...]) -> None:
        self.built, self.stub, self.meta = built, stub, meta
        self.polls: list[dict[str, Any]] = []
        self.recoveries: list[dict[str, Any]] = []
        self._issued: dict[str, str] = {}
        self._began: dict[int, dict[str, str]] = {}
        self._open: list[dict[str, Any]] = []

    async def poll(self, faults: list[Fault]) -> None:
        now = time.time()
        sites: dict[str, dict[str, Any]] = {}
        up = True
        try:
            reply = await self.stub.ListSites(portfolio_pb2.ListSitesRequest(), metadata=self.meta, timeout=2)
            for s in reply.sites:
                sites[s.site_id] = {
                    "connected": s.connected,
                    "mode": portfolio_pb2.NodeLinkMode.Name(s.mode).removeprefix("NODE_LINK_MODE_"),
                    "state": s.schedule_state,
                    "held": s.schedule_version_held,
                    "issued": s.schedule_version_issued,
                }
                self._issued[s.site_id] = s.schedule_version_issued
        except grpc.aio.AioRpcError:
            up = False
        self.polls.append({"u": now, "up": up, "sites": {k: v["connected"] for k, v in sites.items()}})
        for i, f in enumerate(faults):
            if f.kind not in LINK_KINDS:
                continue
            if f.began_u is not None and i not in self._began:
                self._began[i] = dict(self._issued)
            if f.ended_u is not None and not any(r["fault"] == i for r in self._open + self.recoveries):
                for site in f.sites:
                    self._open.append(
                        {
                            "fault": i,
                            "kind": f.kind,
                            "site": site,
                            "end_u": f.ended_u,
                            "before": self._began[i].get(site, ""),
                        }  # noqa: E501
                    )
        for r in list(self._open):
            s = sites.get(r["site"])
            if s is None:
                continue
            if s["connected"] and "stream_u" not in r:
                r["stream_u"] = now
            # a schedule issued after the fault began, acknowledged by the node
            if "stream_u" in r and "resync_u" not in r and s["state"] == "ACKED" and s["issued"] != r["before"]:
                r["resync_u"] = now
            if "stream_u" in r and "mode_u" not in r and s["connected"] and s["mode"] == "PORTFOLIO":
                r["mode_u"] = now
            if all(k in r for k in ("stream_u", "resync_u", "mode_u")):
                self._open.remove(r)
                self.recoveries.append(self._times(r))

    def _times(self, r: dict[str, Any]) -> dict[str, Any]:
        speed = self.built.plan.speed
        out = {k: v for k, v in r.items() if not k.endswith("_u")}
        for key in ("stream", "resync", "mode"):
            u = r.get(f"{key}_u")
            out[f"{key}_sim_s"] = None if u is None else round(max(0.0, u - r["end_u"]) * speed, 1)
            out[f"{key}_real_s"] = None if u is None else round(max(0.0, u - r["end_u"]), 2)
        return out

    def finish(self) -> None:
        for r in self._open:
            self.recoveries.append({**self._times(r), "unrecovered": True})
        self._open = []


async def soak(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    started = time.monotonic()
    run = (Path(args.out) / f"chaos-{datetime.now(UTC):%Y%m%d-%H%M%S}-s{args.seed}").resolve()
    (run / "logs").mkdir(parents=True, exist_ok=True)
    plan = chaos_plan(args.days, args.speed)
    proxies = {name: Proxy(0) for name in SITES}
    for p in proxies.values():
        await p.start()
    token, password = secrets.token_urlsafe(16), secrets.token_hex(12)
    built = build(run, plan, {n: p.port for n, p in proxies.items()}, token, password)
    for p in proxies.values():
        p.target_port = built.lay.portfolio_port
    fleet = Fleet(run / "logs")
    meta = (("authorization", f"Bearer {token}"),)
    faults: list[Fault] = []
    injector: Injector | None = None
    monitor: Monitor | None = None
    rss = RssSampler()
    restarts: dict[str, int] = {}
    console.print(
        f"[bold]chaos soak[/bold]: {args.days:g} simulated days at {plan.speed:g}x, seed {args.seed}, run {run}"
    )
    try:
        start_services(fleet, built)
        for name in SITES:
            await wait_serving(built.lay.node_ports[name], "gridmesh.v1.SiteNode", _Check(fleet), timeout=120)  # type: ignore[arg-type]
        for group in CHARGER_GROUPS:
            start_chargers(fleet, built, group)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.lay.node_ports['depot']}") as channel:
            node = sitenode_pb2_grpc.SiteNodeStub(channel)
            for s in plan.sessions:
                await node.UpsertSession(
                    sitenode_pb2.UpsertSessionRequest(session=convert.session_out(s)), metadata=meta
                )
        operator = issue_operator(run / "certs", "chaos-console")
        credentials = channel_credentials(run / "certs" / "ca.pem", operator.cert, operator.key)
        async with grpc.aio.secure_channel(f"127.0.0.1:{built.lay.portfolio_port}", credentials) as channel:
            stub = portfolio_pb2_grpc.PortfolioStub(channel)
            feeder, event = await _first_plan_then_limits(stub, plan, meta, _Check(fleet))  # type: ignore[arg-type]
            now = sim_time(built, time.time())
            console.print(f"first plan in force at {now:%Y-%m-%d %H:%M} (sim); feeder cap {feeder.cap_kw} kW")
            warmup = max(timedelta(hours=2), now - plan.start + timedelta(hours=1))
            faults = make_schedule(args.seed, plan.start, args.days, args.faults_per_day, warmup)
            injector = Injector(fleet, built, proxies, stub, meta, feeder)
            injector.writes.append(
                {"rpc": "SetFeeder", "feeder": feeder.model_dump(mode="json"), "accepted_u": time.time()}
            )  # noqa: E501
            injector.writes.append(
                {"rpc": "CreateFlexEvent", "event": event.model_dump(mode="json"), "accepted_u": time.time()}
            )  # noqa: E501
            monitor = Monitor(built, stub, meta)
            chain = asyncio.create_task(_play(injector, faults, console, built))
            end = plan.end + timedelta(minutes=20)
            last_rss = 0.0
            while sim_time(built, time.time()) < end:
                if chain.done() and chain.exception() is not None:
                    raise chain.exception()  # type: ignore[misc]
                fleet.check([n for n in ESSENTIAL])
                await monitor.poll(faults)
                for group in CHARGER_GROUPS:  # a charge point that lost its central system stops: reboot it
                    if not fleet.alive(group) and group not in fleet.down and not injector.chargers_held:
                        restarts[group] = restarts.get(group, 0) + 1
                        start_chargers(fleet, built, group)
                if time.time() - last_rss >= 3.0:
                    last_rss = time.time()
                    rss.sample(fleet)
                await asyncio.sleep(0.5)
            if not chain.done():
                chain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chain
            monitor.finish()
    finally:
        fleet.stop([n for n in fleet.children if n.startswith("chargers")])
        fleet.stop([n for n in fleet.children if n.startswith("node")])
        fleet.stop()
        for p in proxies.values():
            await p.stop()
    assert injector is not None and monitor is not None
    state = {
        "days": args.days,
        "speed": plan.speed,
        "origin_unix": built.lay.origin_unix,
        "faults": [f.doc() for f in faults],
        "shares": injector.shares,
        "writes": injector.writes,
        "polls": monitor.polls,
    }
    (run / "harness.json").write_text(json.dumps(state, default=str) + "\n")
    checks = check_all(built, faults, _Recorded(injector.shares, injector.writes), monitor.polls)  # type: ignore[arg-type]
    checks["memory"] = rss.check(warmup_fraction=0.3, limit=0.10)
    result = {
        "run": str(run),
        "days": args.days,
        "seed": args.seed,
        "speed": plan.speed,
        "faults_per_day": args.faults_per_day,
        "wall_seconds": round(time.monotonic() - started, 1),
        "faults": [f.doc() for f in faults],
        "faults_by_kind": _by_kind(faults),
        "consequential_restarts": restarts,
        "operator_writes": injector.writes,
        "recoveries": monitor.recoveries,
        "recovery": recovery_summary(monitor.recoveries),
        "invariants": checks,
        "violations": sum(len(c["violations"]) for c in checks.values()),
    }
    return result


class _Recorded:
    """What the checks read of the injector."""

    def __init__(self, shares: list[dict[str, Any]], writes: list[dict[str, Any]]) -> None:
        self.shares, self.writes = shares, writes


def recheck(run: Path) -> dict[str, Any]:
    """The invariants of a finished run again, from its folder (`harness.json`, logs, journals, store)."""
    state = json.loads((run / "harness.json").read_text())
    plan = chaos_plan(state["days"], state["speed"])
    configs = {n: parse(NodeConfig, yaml.safe_load((run / "config" / f"{n}.yaml").read_text())) for n in SITES}
    lay = Layout(run, 0, {}, 0, 0, "", state["origin_unix"])
    built = Built(plan, lay, configs, "", {}, run / "devices")
    faults = []
    for d in state["faults"]:
        f = Fault(datetime.fromisoformat(d["at"]), d["kind"], d["target"], timedelta(minutes=d["duration_minutes"]))
        f.params, f.began_u, f.ended_u, f.sites, f.notes = (
            d["params"],
            d["began_u"],
            d["ended_u"],
            d["sites"],
            d["notes"],
        )
        faults.append(f)
    return check_all(built, faults, _Recorded(state["shares"], state["writes"]), state["polls"])  # type: ignore[arg-type]


def _by_kind(faults: list[Fault]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in faults:
        if f.ended_u is not None:
            out[f.kind] = out.get(f.kind, 0) + 1
    return out


async def _play(injector: Injector, faults: list[Fault], console: Console, built: Built) -> None:
    for f in faults:
        await injector.run(f)
        console.print(
            f"  {f.at:%m-%d %H:%M} {f.kind:16s} {f.target:15s} {f.duration.total_seconds() / 60:5.1f} min"
            f"  (now {sim_time(built, time.time()):%m-%d %H:%M})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=float, default=7.0, help="simulated days")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=864.0, help="simulated seconds per real second")
    parser.add_argument("--faults-per-day", type=float, default=10.0)
    parser.add_argument("--out", default=str(ROOT / "runs"), help="where the run folder chaos-<time>/ goes")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "chaos.json"), help="the result's JSON")
    parser.add_argument("--recheck", help="a finished run's folder: check its invariants again and print them")
    args = parser.parse_args(argv)
    console = Console()
    if args.recheck:
        checks = recheck(Path(args.recheck))
        console.print_json(json.dumps(checks, default=str))
        return 0 if sum(len(c["violations"]) for c in checks.values()) == 0 else 1
    result = asyncio.run(soak(args, console))
    write_json(Path(args.json), result)
    console.print(render(result))
    console.print(f"JSON: {args.json}")
    return 0 if result["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
