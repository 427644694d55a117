"""The chaos soak's invariants, checked after the run from the devices' side.

Sources: the simulators' device logs (`<run>/devices/*.jsonl`: every setpoint a charge
point or the battery applied, and their meters), the dry-run logs of assets without a
device (what reached their "device"), the nodes' journals and the portfolio's store.
A site's import per 15-minute step is rebuilt from the devices: its fixed load and PV
(no meter exists for them in the simulation: the schedule in force at the step, from the
node's journal) plus the chargers' metered energy, the battery's metered power and the
dry-run assets' applied setpoints.

Command ids: OCPP 2.0.1 carries the node's command id in the request's customData; OCPP
1.6 in the charging profile id (`command_profile_id`); SunSpec carries none, so a battery
command is matched by asset, value (±0.15 kW) and time, and a battery repeat cannot be
told from a new command with the same value.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.chaos_faults import FEEDER_NOTICE, Fault, Injector
from bench.chaos_fleet import CHARGER_GROUPS, Built, sim_time, unix_at
from portfolio.report import SolveReport
from portfolio.store import PortfolioStore
from services.demo import CHARGERS_16, CHARGERS_201, SITES
from sitenode.devices.ocpp_central import command_profile_id
from sitenode.dispatch.commands import SETPOINTS, CommandState
from sitenode.journal import Journal
from sitenode.schedule import CHARGE, CURTAIL, DISCHARGE, GRID_IMPORT, LOAD, PV, ev_column

STEP = timedelta(minutes=15)
TOL_KW = 0.5  # metered means over a step against a limit: setpoints change at step boundaries
EV_TOLERANCE = 0.02
BATTERY_KW_TOL = 0.15
OPEN_GRACE = timedelta(minutes=30)
DISPATCH_LAG_REAL_SECONDS = 0.25  # from a step's start to its setpoints at the devices (node tick, OCPP, Modbus)
STALL_REAL_SECONDS = 5.0  # a node up, taking no telemetry sample for longer than this (wall time), is a gap
END_TAIL_REAL_SECONDS = 3.0  # what a node journals this close to the run's end may not be stored before it stops


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def spread(line: dict[str, Any]) -> list[tuple[datetime, float]]:
    """A meter line's energy (kWh) over the steps its interval (t - dt, t] overlaps, pro rata: a
    simulator held up for a while (a loaded machine) meters a long interval in one line."""
    end = datetime.fromisoformat(line["t"])
    kwh = float(line["wh"]) / 1000
    dt = timedelta(seconds=float(line.get("dt", 0.0)))
    if dt <= timedelta(0):
        return [(pd.Timestamp(end).floor("15min").to_pydatetime(), kwh)]
    start, out = end - dt, []
    at = pd.Timestamp(start).floor("15min").to_pydatetime()
    while at < end:
        overlap = min(end, at + STEP) - max(start, at)
        if overlap > timedelta(0):
            out.append((at, kwh * (overlap / dt)))
        at += STEP
    return out


class Run:
    """What the checks share: steps, device data, journals, the link timeline."""

    def __init__(self, built: Built, faults: list[Fault], injector: Injector, polls: list[dict[str, Any]]) -> None:
        self.built, self.faults, self.injector, self.polls = built, faults, injector, polls
        self.limit_reported = 0
        plan = built.plan
        first = max(sim_time(built, polls[0]["u"]), plan.start) if polls else plan.start
        self.check_from = pd.Timestamp(first).ceil("15min").to_pydatetime()
        self.steps = list(pd.date_range(self.check_from, plan.end, freq="15min", inclusive="left"))
        out = built.lay.out
        self.charger_lines = [x for g in CHARGER_GROUPS for x in _lines(out / "devices" / f"{g}.jsonl")]
        self.battery_lines = _lines(out / "devices" / "battery.jsonl")
        self.journals = {name: Journal(out / "nodes" / name / "journal.db") for name in SITES}
        self.dry = {name: _lines(out / "nodes" / name / "dry_run_commands.jsonl") for name in SITES}
        self.poll_u = np.array([p["u"] for p in polls])
        self.dead = self._dead_windows()
        self.net = {name: self._net(name) for name in SITES}
        with PortfolioStore(out / "portfolio.db") as store:
            reports = [SolveReport.from_json(r.payload) for r in store.reports(limit=1_000_000)]
        self.reports = sorted(reports, key=lambda r: r.at)
        self.report_at = [r.at for r in self.reports]

    def lag_allowance(self, name: str, step: datetime) -> float:
        """What the devices may draw above a step's plan, on average over the step, while the
        step's lower setpoints travel (`DISPATCH_LAG_REAL_SECONDS` of wall time: minutes of the
        simulated clock at hundreds of times real time, milliseconds at 1x): the planned
        decrease of device-driven kW at the step's start times the lag's share of the step."""
        prev = self.net[name].get(step - STEP)
        if prev is None:
            return 0.0
        now, before = self.net[name][step][1], prev[1]
        drop = sum(
            max(0.0, before.get(c, 0.0) - now.get(c, 0.0)) for c in set(before) | set(now) if c.startswith("ev_")
        )
        drop += max(0.0, before.get(CHARGE, 0.0) - now.get(CHARGE, 0.0))
        drop += max(0.0, now.get(DISCHARGE, 0.0) - before.get(DISCHARGE, 0.0))
        share = min(1.0, DISPATCH_LAG_REAL_SECONDS * self.built.plan.speed / STEP.total_seconds())
        return drop * share

    def reported_broken(self, kind: str, name: str, step: datetime) -> bool:
        """The coupled solve in force at `step` (the latest before it) said it would not keep
        this feeder cap or flex event (a relaxation it reports, in its documented order)."""
        i = bisect.bisect_right(self.report_at, step) - 1
        if i < 0:
            return False
        r = self.reports[i]
        results = r.feeders if kind == "feeder" else r.events
        key = "feeder_id" if kind == "feeder" else "event_id"
        return any(getattr(x, key) == name and not x.holds for x in results)

    def close(self) -> None:
        for j in self.journals.values():
            j.close()

    def u(self, at: datetime) -> float:
        return unix_at(self.built, at)

    def _dead_windows(self) -> dict[str, list[tuple[float, float]]]:
        """Per site name, when its node was down (killed, until it served again)."""
        out: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for f in self.faults:
            if f.kind in ("node_kill", "plan_time_limit") and f.began_u is not None:  # both restart the node
                out[f.target].append((f.began_u, (f.ended_u or f.began_u) + 5.0))
        return out

    def node_dead(self, name: str, start: datetime, end: datetime) -> bool:
        a, b = self.u(start), self.u(end)
        return any(x < b and a < y for x, y in self.dead.get(name, []))

    def reachable(self, site_id: str, start: datetime, end: datetime) -> bool:
        """The portfolio up and the site's stream up at every poll from a step before `start`
        (a schedule for the step must have arrived) to `end`."""
        a, b = self.u(start - STEP), self.u(end)
        idx = np.nonzero((self.poll_u >= a) & (self.poll_u < b))[0]
        return len(idx) > 0 and all(self.polls[i]["up"] and self.polls[i]["sites"].get(site_id) for i in idx)

    def schedule_row(self, name: str, at: datetime) -> dict[str, float]:
        s = self.journals[name].schedule_at(at + timedelta(minutes=7.5))
        if s is None:
            return {}
        i = s.frame.index.searchsorted(pd.Timestamp(at), side="right") - 1
        return {} if i < 0 else {str(k): float(v) for k, v in s.frame.iloc[i].items() if np.isfinite(v)}

    def _net(self, name: str) -> dict[datetime, tuple[float, dict[str, float]]]:
        """Per step: the site's net import as the devices saw it, and the schedule row in force."""
        config = self.built.configs[name]
        flex_ids = {f.id for f in config.site.flexible_loads}
        ev: dict[datetime, float] = defaultdict(float)
        batt: dict[datetime, list[float]] = defaultdict(list)
        if name == "depot":
            for x in self.charger_lines:
                if x.get("kind") == "meter":
                    for step, kwh in spread(x):
                        ev[step] += kwh / (STEP.total_seconds() / 3600)
            for x in self.battery_lines:
                if x.get("kind") == "meter":
                    step = pd.Timestamp(sim_time(self.built, x["u"])).floor("15min").to_pydatetime()
                    batt[step].append(float(x["kw"]))
        dry = sorted(self.dry[name], key=lambda x: x["due_at"])  # stable: file order within a due time
        out = {}
        for step in self.steps:
            row = self.schedule_row(name, step)
            applied: dict[tuple[str, str], float] = {}
            for x in dry:
                if datetime.fromisoformat(x["due_at"]) > step:
                    break
                applied[(x["asset_id"], x["type"])] = float(x["value_kw"] or 0.0)
            net = row.get(LOAD, 0.0) - (row.get(PV, 0.0) - row.get(CURTAIL, 0.0))
            if name == "depot":
                net += ev.get(step, 0.0) + (float(np.mean(batt[step])) if batt.get(step) else 0.0)
            for (asset, kind), kw in applied.items():
                sign = -1.0 if kind == "SET_DISCHARGE_RATE" else 1.0
                if asset == "battery" or asset in flex_ids or name != "depot":
                    net += sign * kw
            out[step] = (net, row)
        return out


def check_site_import(run: Run) -> dict[str, Any]:
    checked, violations = 0, []
    for name, site_id in SITES.items():
        grid = run.built.configs[name].site.grid
        limit = grid.import_limit_kw
        if limit is None:
            continue
        for step, (net, row) in run.net[name].items():
            checked += 1
            planned_breach = row.get(GRID_IMPORT, 0.0) > limit + 0.01
            allowed = limit * (1 + grid.breach_margin) if planned_breach else limit
            if max(net, 0.0) > allowed + TOL_KW:
                violations.append(
                    {"site": site_id, "step": step.isoformat(), "import_kw": round(net, 2), "allowed_kw": allowed,
                     "planned_import_kw": round(row.get(GRID_IMPORT, 0.0), 2), "node_dead": run.node_dead(name, step, step + STEP)}  # noqa: E501
                )  # fmt: skip
    return {"checked": checked, "violations": violations}


def _share_at(run: Run, site_id: str, step: datetime) -> float | None:
    before = [s for s in run.injector.shares if s["site"] == site_id and s["u"] <= run.u(step + STEP)]
    if not before or before[-1]["share"] is None:
        return None
    share = before[-1]["share"]
    k = int((pd.Timestamp(step) - pd.Timestamp(share["start"])) / pd.Timedelta(minutes=share["step_minutes"]))
    values = share["values_kw"]
    if k < 0:
        return None  # the share starts later: this step was still under the schedule pushed before it
    return float(values[min(k, len(values) - 1)])


def _limit_check(
    run: Run, label: str, name_of: str, site_ids: list[str], steps: list[tuple[datetime, float]]
) -> tuple[int, int, list[dict[str, Any]]]:  # noqa: E501
    """A cap on the sites' summed net import at each (step, kw): held while every site was
    reachable; while one was not, each unreachable site within its last share."""
    names = {v: k for k, v in SITES.items()}
    checked = shared = reported = 0
    violations: list[dict[str, Any]] = []
    for step, kw in steps:
        if step not in run.net["depot"]:
            continue
        down = [s for s in site_ids if not run.reachable(s, step, step + STEP)]
        total = sum(run.net[names[s]][step][0] for s in site_ids)
        if not down:
            checked += 1
            if total > kw + TOL_KW + sum(run.lag_allowance(names[s], step) for s in site_ids):
                if run.reported_broken(label, name_of, step):
                    reported += 1
                    continue
                per_site = {s: round(run.net[names[s]][step][0], 2) for s in site_ids}
                planned = {s: round(run.net[names[s]][step][1].get(GRID_IMPORT, 0.0), 2) for s in site_ids}
                violations.append({label: name_of, "step": step.isoformat(), "sum_kw": round(total, 2), "cap_kw": kw,
                                   "sites_kw": per_site, "planned_import_kw": planned})  # fmt: skip
            continue
        for s in down:
            if run.node_dead(names[s], step, step + STEP):
                continue  # no node: nobody to keep a share (its chargers keep the site's connection)
            share = _share_at(run, s, step)
            if share is None:
                continue
            shared += 1
            net = run.net[names[s]][step][0]
            if net > share + TOL_KW:
                violations.append({label: name_of, "step": step.isoformat(), "site": s, "unreachable": True,
                                   "net_kw": round(net, 2), "share_kw": share})  # fmt: skip
    run.limit_reported += reported
    return checked, shared, violations


def check_feeders_and_events(run: Run) -> dict[str, Any]:
    checked = shared = 0
    violations: list[dict[str, Any]] = []
    caps: list[tuple[datetime, dict[str, Any]]] = []
    events = []
    for w in run.injector.writes:
        if "accepted_u" not in w:
            continue
        if w["rpc"] == "SetFeeder":
            effective = pd.Timestamp(sim_time(run.built, w["accepted_u"]) + FEEDER_NOTICE).ceil("15min")
            caps.append((effective.to_pydatetime(), w["feeder"]))
        elif w["rpc"] == "CreateFlexEvent":
            events.append(w["event"])
    caps.sort(key=lambda c: c[0])
    by_feeder: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    members: dict[str, list[str]] = {}
    for step in run.steps:
        current: dict[str, dict[str, Any]] = {}
        for at, f in caps:
            if at <= step:
                current[f["feeder_id"]] = f
        for fid, f in current.items():
            by_feeder[fid].append((step, float(f["cap_kw"])))
            members[fid] = f["site_ids"]
    for fid, steps in by_feeder.items():
        c, s, v = _limit_check(run, "feeder", fid, members[fid], steps)
        checked, shared, violations = checked + c, shared + s, violations + v
    for e in events:
        start, end = datetime.fromisoformat(e["start"]), datetime.fromisoformat(e["end"])
        steps = [(st, float(e["kw"])) for st in run.steps if start <= st < end]
        c, s, v = _limit_check(run, "event", e["event_id"], e["site_ids"] or list(SITES.values()), steps)
        checked, shared, violations = checked + c, shared + s, violations + v
    return {"checked": checked, "checked_within_shares": shared, "violations": violations,
            "feeders": len(by_feeder), "events": len(events),
            "over_but_reported_by_the_solve": run.limit_reported}  # fmt: skip


def check_commands(run: Run) -> dict[str, Any]:
    """Every setpoint the node journaled is applied, superseded or reported failed; none applied
    twice (a repeat after another command reached the device would undo a newer setpoint)."""
    violations: list[dict[str, Any]] = []
    checked = redelivered = unmatched = 0
    end = run.built.plan.end
    # device applications per device, in order, keyed as the protocol carried the id
    applied: dict[str, list[Any]] = defaultdict(list)
    for x in sorted(run.charger_lines, key=lambda x: x["u"]):
        if x.get("kind") != "apply" or x.get("purpose") in ("ChargePointMaxProfile", "ChargingStationMaxProfile"):
            continue
        applied[x["dev"]].append(x.get("cmd") if x["dev"] in CHARGERS_201 else x.get("profile_id"))
    for name in SITES:
        commands = [c for c in run.journals[name].commands() if c.type in SETPOINTS]
        dry_ids = {x["id"] for x in run.dry[name]}
        known: dict[str, set[Any]] = defaultdict(set)
        for c in commands:
            on_ocpp = name == "depot" and c.asset_id in CHARGERS_16 + CHARGERS_201
            on_battery = name == "depot" and c.asset_id == "battery"
            key: Any = c.id if c.asset_id in CHARGERS_201 else command_profile_id(c.id)
            if on_ocpp:
                known[c.asset_id].add(key)
            if c.state in (CommandState.PENDING, CommandState.DISPATCHED):
                checked += 1
                if c.due_at < end - OPEN_GRACE:
                    violations.append({"site": SITES[name], "command": c.id, "asset": c.asset_id, "state": str(c.state),
                                       "due_at": c.due_at.isoformat(), "why": "still open at the end"})  # fmt: skip
                continue
            if c.state is not CommandState.COMPLETED:
                checked += 1  # SUPERSEDED, FAILED, TIMED_OUT: reported
                continue
            checked += 1
            if on_ocpp:
                seen = applied[c.asset_id].count(key)
                if seen == 0:
                    why = "journaled COMPLETED, never applied"
                    violations.append({"site": SITES[name], "command": c.id, "asset": c.asset_id,
                                       "value_kw": c.value_kw, "due_at": c.due_at.isoformat(), "why": why})  # fmt: skip
                elif seen > 1:
                    order = applied[c.asset_id]
                    first = order.index(key)
                    last = len(order) - 1 - order[::-1].index(key)
                    if any(k != key for k in order[first:last]):
                        violations.append({"site": SITES[name], "command": c.id, "asset": c.asset_id, "times": seen,
                                           "why": "applied again after a newer setpoint"})  # fmt: skip
                    else:
                        redelivered += 1
            elif on_battery:
                if not _battery_applied(run, c.type, c.value_kw or 0.0, c.due_at):
                    why = "no matching write at the battery"
                    violations.append({"site": SITES[name], "command": c.id, "asset": "battery",
                                       "value_kw": c.value_kw, "due_at": c.due_at.isoformat(), "why": why})  # fmt: skip
            elif c.id not in dry_ids and c.asset_id not in CHARGERS_16 + CHARGERS_201:
                dev_backed = name == "depot" and c.asset_id.startswith(("ac-", "dc-"))
                if not dev_backed:
                    violations.append({"site": SITES[name], "command": c.id, "asset": c.asset_id,
                                       "why": "journaled COMPLETED, not in the dry-run device log"})  # fmt: skip
        for dev, keys in known.items():
            unmatched += sum(1 for k in applied[dev] if k not in keys)
    return {"checked": checked, "violations": violations, "redelivered_in_place": redelivered,
            "applied_without_journal_entry": unmatched,
            "note": "battery commands matched by value and time (SunSpec carries no id)"}  # fmt: skip


def _battery_applied(run: Run, kind: str, value: float, due: datetime) -> bool:
    field = "charge_kw" if kind == "SET_CHARGE_RATE" else "discharge_kw"
    lo, hi = run.u(due - timedelta(minutes=15)), run.u(due + timedelta(hours=3))
    return any(
        x.get("kind") == "apply" and lo <= x["u"] <= hi and abs(float(x.get(field, -1e9)) - value) <= BATTERY_KW_TOL
        for x in run.battery_lines
    )


def check_telemetry(run: Run) -> dict[str, Any]:
    violations: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    checked = 0
    store = PortfolioStore(run.built.lay.out / "portfolio.db")
    try:
        for name, site_id in SITES.items():
            period = run.built.configs[name].portfolio.telemetry_seconds
            recs = store.telemetry(site_id, limit=10_000_000)
            checked += len(recs)
            seqs = [r.seq for r in recs]
            if len(set(seqs)) != len(seqs):
                violations.append({"site": site_id, "why": "duplicate seq", "n": len(seqs) - len(set(seqs))})
            for a, b in zip(seqs, seqs[1:], strict=False):
                if b != a + 1:
                    violations.append({"site": site_id, "why": "seq gap", "after": a, "next": b})
            slots = [int(np.floor((r.at.timestamp() - period / 2) / period)) for r in recs]
            counts: dict[int, int] = defaultdict(int)
            for s in slots:
                counts[s] += 1
            for s, n in counts.items():
                if n > 1:
                    violations.append(
                        {"site": site_id, "why": "two samples in one period", "slot_at": _slot_at(s, period)}
                    )
            stored = max(seqs, default=0)
            journal_path = run.built.lay.out / "nodes" / name / "journal.db"
            journaled = _journal_seq(journal_path)
            # the points a node journals in the run's last real seconds may be unacknowledged when
            # it stops: a tail that short is not a loss (at 864x a 5-minute period is 0.35 s)
            tail = _unstored_span_seconds(journal_path, stored)
            if journaled > stored and tail > END_TAIL_REAL_SECONDS * run.built.plan.speed:
                violations.append({"site": site_id, "why": "journaled, never stored", "node_seq": journaled,
                                   "stored_seq": stored, "unstored_span_s": tail})  # fmt: skip
            # periods in which the node took no sample: while it was down, or while its loop did not
            # run at all (a loaded machine holds a process for seconds: at 600x a period is 0.5 s);
            # longer than `STALL_REAL_SECONDS` of wall time with the node up is a gap
            lo = int(np.floor((run.check_from.timestamp() - period / 2) / period)) + 1
            hi = int(np.floor((run.built.plan.end.timestamp() - period / 2) / period)) - 1
            missing = [s for s in range(lo, hi) if s not in counts]
            for first, last in _runs(missing):
                at = datetime.fromisoformat(_slot_at(first, period)) - timedelta(seconds=period / 2)
                until = datetime.fromisoformat(_slot_at(last, period)) + timedelta(seconds=period / 2)
                gaps.append({"site": site_id, "from": at.isoformat(), "until": until.isoformat()})
                if run.node_dead(name, at - timedelta(seconds=period), until + timedelta(seconds=period)):
                    continue
                if (until - at).total_seconds() / run.built.plan.speed > STALL_REAL_SECONDS:
                    violations.append({"site": site_id, "why": "no sample for a while", "from": at.isoformat(),
                                       "until": until.isoformat()})  # fmt: skip
    finally:
        store.close()
    return {"checked": checked, "violations": violations, "periods_without_a_sample": gaps}


def _unstored_span_seconds(path: Path, stored: int) -> float:
    """Simulated seconds from the first point the store lacks to the last one the node journaled
    (points not yet acked are still in the journal); inf when the journal no longer holds them."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT seq, body FROM telemetry WHERE seq > ? ORDER BY seq", (stored,)).fetchall()
    finally:
        db.close()
    if not rows:
        return 0.0
    if rows[0][0] != stored + 1:
        return float("inf")  # pruned without being stored: lost
    times = [pd.Timestamp(json.loads(body)["at"]) for _, body in rows]
    return (times[-1] - times[0]).total_seconds()


def _journal_seq(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def _runs(values: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _slot_at(slot: int, period: float) -> str:
    return pd.Timestamp(slot * period + period / 2, unit="s", tz="UTC").isoformat()


def check_ev(run: Run) -> dict[str, Any]:
    delivered: dict[str, float] = defaultdict(float)
    for x in run.charger_lines:
        if x.get("kind") == "meter" and x.get("session"):
            delivered[x["session"]] += float(x["wh"]) / 1000
    violations, rows = [], []
    reported = 0
    # what the depot's node said when each car left: its measured delivery and the shortfall
    closed = {o.session_id: o for o in run.journals["depot"].session_outcomes()}
    for s in run.built.plan.sessions:
        if s.arrival < run.check_from or s.departure > run.built.plan.end:
            continue
        got = delivered.get(s.session_id, 0.0)
        row = {"session": s.session_id, "need_kwh": s.energy_kwh, "delivered_kwh": round(got, 2)}
        if got >= s.energy_kwh * (1 - EV_TOLERANCE) - 0.05:
            rows.append(row)
            continue
        # the node's last plan for the car: what the devices gave it before that plan began, and what
        # the plan meant to give it from then to its departure
        planned = None
        last = run.journals["depot"].schedule_at(s.departure - STEP)
        if last is not None and ev_column(s.session_id) in last.frame:
            start = max(last.valid_from, s.arrival)
            before = sum(
                float(x["wh"]) / 1000
                for x in run.charger_lines
                if x.get("kind") == "meter"
                and x.get("session") == s.session_id
                and datetime.fromisoformat(x["t"]) < start
            )
            col = last.frame[ev_column(s.session_id)]
            ahead = col[(col.index >= pd.Timestamp(start)) & (col.index < pd.Timestamp(s.departure))]
            planned = before + float(ahead.sum()) * STEP.total_seconds() / 3600
            row |= {"last_plan": last.version, "last_plan_from": last.valid_from.isoformat()}
        row["planned_kwh"] = None if planned is None else round(planned, 2)
        outcome = closed.get(s.session_id)
        if outcome is not None and outcome.shortfall_kwh >= (s.energy_kwh - got) - 0.05:
            # closed at departure with a shortfall at least the devices' (the node measures no more
            # than they gave): reported, however the plans stood (the node may have been down then)
            reported += 1
            rows.append({**row, "shortfall_reported": True, "closed_short_kwh": round(outcome.shortfall_kwh, 2)})
        elif planned is None:
            violations.append({**row, "why": "short, and no plan of the node's held the car"})
        elif planned < s.energy_kwh * (1 - EV_TOLERANCE):
            reported += 1
            rows.append({**row, "shortfall_reported": True})
        else:
            violations.append({**row, "why": "short, while the plans in force promised the need"})
    return {"checked": len(rows) + len(violations), "violations": violations, "shortfall_reported": reported,
            "sessions": rows}  # fmt: skip


def check_all(built: Built, faults: list[Fault], injector: Injector, polls: list[dict[str, Any]]) -> dict[str, Any]:
    run = Run(built, faults, injector, polls)
    try:
        return {
            "site_import": check_site_import(run),
            "feeder_caps_and_flex_events": check_feeders_and_events(run),
            "commands": check_commands(run),
            "telemetry": check_telemetry(run),
            "ev_energy": check_ev(run),
        }
    finally:
        run.close()
