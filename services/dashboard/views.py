"""What the dashboard's page shows, read off the portfolio's operator API replies.

Pure: protobuf messages in, dataclasses out (turned into JSON at the HTTP edge). The
energy flow diagram follows Module 11: solar, battery and grid supply the site; fleet
charging, facility, battery charging, mining and export consume. Flows are allocated
in that order (PV first to the facility, then the fleet, ...): telemetry gives the
totals on each side, not who fed whom, and a fixed order makes the picture steady.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from services.convert import from_ts
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2

MODES = {
    portfolio_pb2.NODE_LINK_MODE_PORTFOLIO: "portfolio",
    portfolio_pb2.NODE_LINK_MODE_LOCAL: "local",
    portfolio_pb2.NODE_LINK_MODE_FAILSAFE: "failsafe",
}
KINDS = {portfolio_pb2.FLEX_KIND_CAP_AT: "CAP_AT", portfolio_pb2.FLEX_KIND_REDUCE_BY: "REDUCE_BY"}
SOURCES = ("solar", "battery", "grid")
SINKS = ("facility", "fleet", "battery_charging", "mining", "export")
PRIORITY_KEYS = ("fleet", "facility", "battery", "mining", "export")
WEIGHT_KEYS = ("cost", "carbon", "peak")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclass(frozen=True)
class Live:
    """One site's latest telemetry, in kW (SOC in kWh); battery_kw > 0 charges."""

    at: str | None = None
    import_kw: float = 0.0
    export_kw: float = 0.0
    load_kw: float = 0.0
    pv_kw: float = 0.0
    battery_kw: float = 0.0
    soc_kwh: float | None = None
    ev_kw: float = 0.0
    flex_kw: float = 0.0

    @classmethod
    def of(cls, p: portfolio_pb2.TelemetryPoint | None) -> Live | None:
        if p is None or not p.HasField("at"):
            return None
        return cls(
            at=from_ts(p.at).isoformat(),
            import_kw=p.grid_import_kw,
            export_kw=p.grid_export_kw,
            load_kw=p.load_kw,
            pv_kw=p.pv_kw,
            battery_kw=p.battery_charge_kw - p.battery_discharge_kw,
            soc_kwh=p.soc_kwh,
            ev_kw=p.ev_kw,
            flex_kw=p.flex_kw,
        )


@dataclass(frozen=True)
class Day:
    """Today's realized cost against business as usual."""

    since: str | None
    currency: str
    cost: float
    bau_cost: float
    ev_delivered_kwh: float
    peak_import_kw: float
    bau_peak_import_kw: float
    steps: int


@dataclass(frozen=True)
class SiteCard:
    site_id: str
    connected: bool
    mode: str
    schedule_state: str
    schedule_version: str
    live: Live | None
    today: Day | None
    feeder_ids: tuple[str, ...]


@dataclass(frozen=True)
class Series:
    start: str
    step_minutes: int
    values: tuple[float, ...]


@dataclass(frozen=True)
class FeederView:
    feeder_id: str
    site_ids: tuple[str, ...]
    description: str
    cap_kw: float | None
    caps_kw: tuple[float, ...]
    import_kw: float
    cap_now_kw: float
    planned: Series | None


@dataclass(frozen=True)
class EventView:
    event_id: str
    kind: str
    kw: float
    start: str
    end: str
    site_ids: tuple[str, ...]
    state: str
    active: bool
    # for an active CAP_AT event: the cap less the live import of its sites (> 0: kept)
    headroom_kw: float | None
    planned_holds: bool | None
    planned_worst_shortfall_kw: float | None


@dataclass(frozen=True)
class SolveView:
    solve_id: str
    at: str
    trigger: str
    status: str
    method: str
    objective: float
    alone_objective: float
    coupling_cost: float
    gap: float
    iterations: int
    seconds: float
    all_hold: bool
    relaxed: tuple[str, ...]
    peak_kw: float
    peak_charge: float


@dataclass(frozen=True)
class Totals:
    import_kw: float
    export_kw: float
    pv_kw: float
    ev_kw: float
    currency: str
    cost_today: float
    bau_today: float


@dataclass(frozen=True)
class PortfolioView:
    now: str
    totals: Totals
    sites: tuple[SiteCard, ...]
    feeders: tuple[FeederView, ...]
    events: tuple[EventView, ...]
    solve: SolveView | None


@dataclass(frozen=True)
class Flow:
    source: str
    sink: str
    kw: float


@dataclass(frozen=True)
class CommandRow:
    command_id: str
    asset_id: str
    type: str
    value_kw: float
    due_at: str | None
    state: str
    attempts: int
    last_error: str
    source: str


@dataclass(frozen=True)
class Settings:
    """What the site plans with: an operator's settings where set, else the node's own."""

    weights: dict[str, float]
    priorities: dict[str, int]
    from_operator: bool
    updated_at: str | None


@dataclass(frozen=True)
class ScheduleView:
    version: str
    source: str
    start: str
    step_minutes: int
    columns: dict[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SiteView:
    card: SiteCard
    flows: tuple[Flow, ...]
    totals: dict[str, float]  # each source and sink's live kW
    schedule: ScheduleView | None
    commands: tuple[CommandRow, ...]
    settings: Settings | None
    capacity_kwh: float | None


# ---- builders -------------------------------------------------------------------------
def day_of(info: portfolio_pb2.SiteInfo) -> Day | None:
    if not info.HasField("today"):
        return None
    d = info.today
    return Day(
        since=_iso(from_ts(d.since)) if d.HasField("since") else None,
        currency=d.currency,
        cost=d.cost,
        bau_cost=d.bau_cost,
        ev_delivered_kwh=d.ev_delivered_kwh,
        peak_import_kw=d.peak_import_kw,
        bau_peak_import_kw=d.bau_peak_import_kw,
        steps=d.steps,
    )


def card_of(info: portfolio_pb2.SiteInfo) -> SiteCard:
    live = Live.of(info.latest) if info.HasField("latest") else None
    return SiteCard(
        site_id=info.site_id,
        connected=info.connected,
        mode=MODES.get(info.mode, "unknown") if live else "unknown",
        schedule_state=info.schedule_state,
        schedule_version=info.schedule_version_issued,
        live=live,
        today=day_of(info),
        feeder_ids=tuple(info.feeder_ids),
    )


def series_of(ts: common_pb2.TimeSeries) -> Series | None:
    if not ts.values:
        return None
    return Series(
        start=from_ts(ts.start).isoformat(), step_minutes=ts.step_minutes, values=tuple(round(v, 3) for v in ts.values)
    )


def solve_of(r: portfolio_pb2.SolveReport) -> SolveView:
    return SolveView(
        solve_id=r.solve_id,
        at=from_ts(r.at).isoformat(),
        trigger=r.trigger,
        status=r.status,
        method=r.method,
        objective=r.objective,
        alone_objective=r.alone_objective,
        coupling_cost=r.coupling_cost,
        gap=r.gap,
        iterations=r.iterations,
        seconds=r.seconds,
        all_hold=r.all_hold,
        relaxed=tuple(r.relaxed),
        peak_kw=r.peak_kw,
        peak_charge=r.peak_charge,
    )


def event_of(
    e: portfolio_pb2.FlexEvent, now: datetime, cards: dict[str, SiteCard], report: portfolio_pb2.SolveReport | None
) -> EventView:
    start, end = from_ts(e.start), from_ts(e.end)
    active = start <= now < end
    sites = list(e.site_ids) or [s for s, c in cards.items() if c.connected]
    headroom = None
    if active and e.kind == portfolio_pb2.FLEX_KIND_CAP_AT:
        live = [cards[s].live for s in sites if s in cards and cards[s].live is not None]
        headroom = round(e.kw - sum(p.import_kw for p in live if p is not None), 3)
    check = next((c for c in report.events if c.event_id == e.event_id), None) if report is not None else None
    return EventView(
        event_id=e.event_id,
        kind=KINDS.get(e.kind, "UNKNOWN"),
        kw=e.kw,
        start=start.isoformat(),
        end=end.isoformat(),
        site_ids=tuple(e.site_ids),
        state=e.state,
        active=active,
        headroom_kw=headroom,
        planned_holds=check.holds if check else None,
        planned_worst_shortfall_kw=check.worst_shortfall_kw if check else None,
    )


def feeder_of(f: portfolio_pb2.FeederState) -> FeederView:
    feeder = f.feeder
    return FeederView(
        feeder_id=feeder.feeder_id,
        site_ids=tuple(feeder.site_ids),
        description=feeder.description,
        cap_kw=feeder.cap_kw if feeder.HasField("cap_kw") else None,
        caps_kw=tuple(feeder.caps_kw),
        import_kw=round(f.import_kw, 3),
        cap_now_kw=f.cap_kw,
        planned=series_of(f.planned_import_kw) if f.HasField("planned_import_kw") else None,
    )


def portfolio_view(
    sites: portfolio_pb2.ListSitesResponse,
    state: portfolio_pb2.GetPortfolioStateResponse,
    events: portfolio_pb2.ListFlexEventsResponse,
) -> PortfolioView:
    cards = tuple(card_of(s) for s in sites.sites)
    by_id = {c.site_id: c for c in cards}
    now = from_ts(state.now)
    report = state.latest_solve if state.HasField("latest_solve") else None
    days = [c.today for c in cards if c.today is not None]
    totals = Totals(
        import_kw=round(state.import_kw, 3),
        export_kw=round(state.export_kw, 3),
        pv_kw=round(state.pv_kw, 3),
        ev_kw=round(state.ev_kw, 3),
        currency=days[0].currency if days else "",
        cost_today=round(sum(d.cost for d in days), 2),
        bau_today=round(sum(d.bau_cost for d in days), 2),
    )
    shown = [e for e in events.events if from_ts(e.end) > now]
    return PortfolioView(
        now=now.isoformat(),
        totals=totals,
        sites=cards,
        feeders=tuple(feeder_of(f) for f in state.feeders),
        events=tuple(event_of(e, now, by_id, report) for e in shown),
        solve=solve_of(report) if report is not None else None,
    )


def flows_of(live: Live | None) -> tuple[tuple[Flow, ...], dict[str, float]]:
    """Supply (solar, battery discharge, grid import) allocated to the consumers in Module 11's order."""
    if live is None:
        return (), {}
    supply = {"solar": max(live.pv_kw, 0.0), "battery": max(-live.battery_kw, 0.0), "grid": max(live.import_kw, 0.0)}
    demand = {
        "facility": max(live.load_kw, 0.0),
        "fleet": max(live.ev_kw, 0.0),
        "battery_charging": max(live.battery_kw, 0.0),
        "mining": max(live.flex_kw, 0.0),
        "export": max(live.export_kw, 0.0),
    }
    totals = {k: round(v, 3) for k, v in {**supply, **demand}.items()}
    left = dict(supply)
    flows: list[Flow] = []
    for sink in SINKS:
        need = demand[sink]
        # export comes from solar or battery, never from the grid
        for source in ("solar", "battery") if sink == "export" else SOURCES:
            take = min(need, left[source])
            if take > 1e-6:
                flows.append(Flow(source, sink, round(take, 3)))
                left[source] -= take
                need -= take
    return tuple(flows), totals


def schedule_of(s: common_pb2.Schedule) -> ScheduleView | None:
    if not s.columns:
        return None
    return ScheduleView(
        version=s.version,
        source=s.source,
        start=from_ts(s.start).isoformat(),
        step_minutes=s.step_minutes,
        columns={c.name: tuple(round(v, 3) for v in c.values) for c in s.columns},
    )


def command_of(c: portfolio_pb2.CommandStatus) -> CommandRow:
    return CommandRow(
        command_id=c.command_id,
        asset_id=c.asset_id,
        type=c.type,
        value_kw=c.value_kw,
        due_at=from_ts(c.due_at).isoformat() if c.HasField("due_at") else None,
        state=c.state,
        attempts=c.attempts,
        last_error=c.last_error,
        source=c.source,
    )


def settings_of(got: portfolio_pb2.GetSiteResponse) -> Settings | None:
    """The operator's settings over the node's own (its run config, as its snapshot carries it)."""
    weights: dict[str, float] = {}
    priorities: dict[str, int] = {}
    if got.HasField("snapshot") and got.snapshot.run_config_json:
        run = json.loads(got.snapshot.run_config_json)
        weights = {k: float(v) for k, v in (run.get("objective") or {}).items() if k in WEIGHT_KEYS}
        priorities = {k: int(v) for k, v in (run.get("priorities") or {}).items() if k in PRIORITY_KEYS}
    s = got.site.settings if got.site.HasField("settings") else None
    operator = False
    if s is not None and s.HasField("weights"):
        weights, operator = {"cost": s.weights.cost, "carbon": s.weights.carbon, "peak": s.weights.peak}, True
    if s is not None and s.HasField("priorities"):
        p = s.priorities
        priorities, operator = (
            {"fleet": p.fleet, "facility": p.facility, "battery": p.battery, "mining": p.mining, "export": p.export},
            True,
        )
    if not weights and not priorities:
        return None
    return Settings(
        weights=weights,
        priorities=priorities,
        from_operator=operator,
        updated_at=from_ts(s.updated_at).isoformat() if s is not None and s.HasField("updated_at") else None,
    )


def capacity_of(got: portfolio_pb2.GetSiteResponse) -> float | None:
    if got.HasField("snapshot") and got.snapshot.site_config_json:
        battery = json.loads(got.snapshot.site_config_json).get("battery")
        if battery:
            return float(battery.get("capacity_kwh") or 0.0) or None
    return None


def site_view(got: portfolio_pb2.GetSiteResponse) -> SiteView:
    card = card_of(got.site)
    flows, totals = flows_of(card.live)
    return SiteView(
        card=card,
        flows=flows,
        totals=totals,
        schedule=schedule_of(got.schedule) if got.HasField("schedule") else None,
        commands=tuple(command_of(c) for c in got.commands),
        settings=settings_of(got),
        capacity_kwh=capacity_of(got),
    )


def _live_site(s: portfolio_pb2.SiteFlow) -> dict:
    live = Live.of(s.latest) if s.HasField("latest") else None
    flows, totals = flows_of(live)
    return {
        "site_id": s.site_id,
        "connected": s.connected,
        "live": live,
        "flows": flows,
        "totals": totals,
        "mode": MODES.get(s.latest.mode, "unknown") if live is not None else "unknown",
    }


def live_update(w: portfolio_pb2.WatchPortfolioResponse) -> dict:
    """A WatchPortfolio message as the page's `flows` event carries it."""
    return {
        "at": from_ts(w.at).isoformat(),
        "totals": {
            "import_kw": round(w.import_kw, 3),
            "export_kw": round(w.export_kw, 3),
            "pv_kw": round(w.pv_kw, 3),
            "ev_kw": round(w.ev_kw, 3),
        },
        "sites": [_live_site(s) for s in w.sites],
        "latest_solve_id": w.latest_solve_id,
    }
