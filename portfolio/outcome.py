"""What a run of the portfolio achieved, read off the sites' telemetry: cost against
business as usual, peak import, EV energy, feeder caps and flex events kept.

Telemetry points are numbered samples taken during each step; a step's realized flows
are the mean of its samples (a step without one takes its neighbour's, and is counted).
The realized schedule is priced by `sitenode.metrics` exactly as a plan is, and set
against business as usual on the same load, PV and EV sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from portfolio.model import Feeder, FlexEvent, FlexKind
from sitenode.baselines import business_as_usual
from sitenode.metrics import CostBreakdown, compute_metrics
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import Horizon, RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.schedule import (
    CHARGE,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    LOAD,
    PV,
    SOC,
    ev_column,
    flex_column,
    schedule_columns,
)
from sitenode.telemetry import TelemetryPoint

TOLERANCE_KW = 0.05  # what metering resolves: profiles and meter values travel in 0.1 W, samples are means
EV_TOLERANCE = 0.02  # delivered energy may fall 2 % short of the need: meters sample once a step


@dataclass(frozen=True)
class SiteOutcome:
    site_id: str
    currency: str
    cost: float
    bau_cost: float
    peak_import_kw: float
    bau_peak_import_kw: float
    ev_delivered_kwh: float
    ev_required_kwh: float
    steps: int
    steps_without_telemetry: int

    @property
    def ev_ok(self) -> bool:
        return self.ev_delivered_kwh >= self.ev_required_kwh * (1 - EV_TOLERANCE) - 1e-6


@dataclass(frozen=True, eq=False)
class SiteRealized:
    """The realized schedule and business as usual, priced: what a report of the run draws."""

    outcome: SiteOutcome
    problem: SiteProblem  # load, PV and prices of the window; no sessions (telemetry sums the EVs)
    schedule: pd.DataFrame  # canonical columns, EV charging as one column, ev_fleet_kw
    metrics: CostBreakdown
    bau_schedule: pd.DataFrame
    bau_metrics: CostBreakdown


@dataclass(frozen=True)
class LimitOutcome:
    """A feeder cap or a flex event's limit, against the realized aggregate import."""

    name: str
    limit_kw: float  # the tightest limit over the checked steps
    worst_excess_kw: float
    steps_checked: int

    @property
    def holds(self) -> bool:
        return self.worst_excess_kw <= TOLERANCE_KW


@dataclass(frozen=True)
class RunOutcome:
    sites: tuple[SiteOutcome, ...]
    feeders: tuple[LimitOutcome, ...]
    events: tuple[LimitOutcome, ...]

    @property
    def ok(self) -> bool:
        return (
            all(s.ev_ok for s in self.sites)
            and all(f.holds for f in self.feeders)
            and all(e.holds for e in self.events)
        )


def realized_frame(points: Sequence[TelemetryPoint], index: pd.DatetimeIndex) -> tuple[pd.DataFrame, int]:
    """Per step of `index`, the mean of the samples taken in it; and how many steps had none."""
    names = [
        "grid_import_kw",
        "grid_export_kw",
        "load_kw",
        "pv_kw",
        "battery_charge_kw",
        "battery_discharge_kw",
        "soc_kwh",
        "ev_kw",
        "flex_kw",
        "ev_energy_kwh",
    ]
    if not points:
        return pd.DataFrame(0.0, index=index, columns=names), len(index)
    raw = pd.DataFrame(
        [[getattr(p, n) for n in names] for p in points],
        columns=names,
        index=pd.DatetimeIndex([pd.Timestamp(p.at) for p in points]).tz_convert("UTC"),
    )
    step = index[1] - index[0] if len(index) > 1 else pd.Timedelta(minutes=15)
    raw = raw[(raw.index >= index[0]) & (raw.index < index[-1] + step)]
    grouped = raw.groupby(raw.index.floor(step))
    by_step = grouped.mean()
    by_step["ev_energy_kwh"] = grouped["ev_energy_kwh"].max()  # a register: its reading at the end of the step
    by_step = by_step.reindex(index)
    missing = int(by_step.isna().any(axis=1).sum())
    return by_step.ffill().bfill().fillna(0.0), missing


def site_outcome(
    site: SiteConfig, run: RunConfig, frame: pd.DataFrame, missing: int, sessions: Sequence[EVSession]
) -> SiteRealized:
    """Realized cost and EV energy of one site over `run`'s horizon, and business as usual's."""
    series = pd.DataFrame(
        {"load_kw": frame["load_kw"].to_numpy(), "pv_kw": frame["pv_kw"].to_numpy()}, index=frame.index
    )
    idle = build_problem(
        site,
        run,
        series,
        [],
        soc_initial_kwh=float(frame["soc_kwh"].iloc[0]) if site.battery else None,
        reachable_final_soc=True,
    )
    columns = schedule_columns(idle)
    columns[GRID_IMPORT] = frame["grid_import_kw"].to_numpy()
    columns[GRID_EXPORT] = frame["grid_export_kw"].to_numpy()
    columns[LOAD], columns[PV] = frame["load_kw"].to_numpy(), frame["pv_kw"].to_numpy()
    if site.battery is not None:
        columns[CHARGE], columns[DISCHARGE], columns[SOC] = (
            frame[c].to_numpy() for c in ("battery_charge_kw", "battery_discharge_kw", "soc_kwh")
        )
    if site.flexible_loads:
        # telemetry carries the flexible loads' sum; the first load is credited with it
        columns[flex_column(site.flexible_loads[0].id)] = frame["flex_kw"].to_numpy()
    columns[ev_column("fleet")] = frame["ev_kw"].to_numpy()
    schedule = pd.DataFrame(columns, index=frame.index)
    realized = compute_metrics(idle, schedule)
    h = run.horizon
    within = [s for s in sessions if s.arrival < h.end and s.departure > h.start]
    with_evs = build_problem(
        site,
        run,
        series,
        within,
        soc_initial_kwh=idle.soc_initial_kwh if site.battery else None,
        reachable_final_soc=True,
    )
    bau_schedule = business_as_usual(with_evs)
    bau = compute_metrics(with_evs, bau_schedule)
    required = sum(w.need_kwh for w in with_evs.sessions)
    # the chargers' energy register over the window; sampled power where a node has no register
    register = frame["ev_energy_kwh"].to_numpy() if "ev_energy_kwh" in frame else np.zeros(len(frame))
    delivered = (
        float(register[-1] - register[0]) if register[-1] > register[0] else float(frame["ev_kw"].sum() * idle.dt_h)
    )
    outcome = SiteOutcome(
        site.site_id,
        run.tariff.currency,
        realized.total_cost,
        bau.total_cost,
        realized.peak_import_kw,
        bau.peak_import_kw,
        delivered,
        required,
        len(frame),
        missing,
    )
    return SiteRealized(outcome, idle, schedule, realized, bau_schedule, bau)


def _net(frames: dict[str, pd.DataFrame], sites: Sequence[str]) -> pd.Series | None:
    present = [frames[s]["grid_import_kw"] - frames[s]["grid_export_kw"] for s in sites if s in frames]
    return sum(present[1:], present[0]) if present else None


def feeder_outcome(feeder: Feeder, frames: dict[str, pd.DataFrame], horizon_start: datetime) -> LimitOutcome:
    net = _net(frames, feeder.site_ids)
    if net is None:
        return LimitOutcome(feeder.feeder_id, feeder.cap_at(0), 0.0, 0)
    step = net.index[1] - net.index[0] if len(net) > 1 else pd.Timedelta(minutes=15)
    at = ((net.index - pd.Timestamp(horizon_start)) / step).astype(int)
    caps = np.array([feeder.cap_at(max(0, int(i))) for i in at])
    return LimitOutcome(feeder.feeder_id, float(caps.min()), float((net.to_numpy() - caps).max()), len(net))


def event_outcome(
    event: FlexEvent, frames: dict[str, pd.DataFrame], baseline_import: pd.Series | None = None
) -> LimitOutcome:
    """CAP_AT: aggregate import at most kw in the window; REDUCE_BY: at most the baseline less kw."""
    sites = event.site_ids or list(frames)
    imports = [frames[s]["grid_import_kw"] for s in sites if s in frames]
    if not imports:
        return LimitOutcome(event.event_id, event.kw, 0.0, 0)
    total = sum(imports[1:], imports[0])
    window = total[(total.index >= pd.Timestamp(event.start)) & (total.index < pd.Timestamp(event.end))]
    if event.kind is FlexKind.CAP_AT:
        limit = pd.Series(event.kw, index=window.index)
    else:
        if baseline_import is None:
            raise ValueError("a REDUCE_BY event needs the baseline import")
        limit = baseline_import.reindex(window.index) - event.kw
    excess = (window - limit).max() if len(window) else 0.0
    return LimitOutcome(event.event_id, float(limit.min()) if len(limit) else event.kw, float(excess), len(window))


def horizon_run(run: RunConfig, start: datetime, steps: int) -> RunConfig:
    """`run` with its horizon moved to the realized window."""
    return run.model_copy(update={"horizon": Horizon(start=start, step_minutes=run.horizon.step_minutes, steps=steps)})


@dataclass(frozen=True)
class RunningDay:
    """A site's account of the current UTC day so far, over the whole steps that have ended."""

    since: datetime  # the day's start, or the start of the step of its first sample if later
    steps: int
    realized: SiteRealized | None  # None while no whole step has ended since `since`


def running_day(
    site: SiteConfig, run: RunConfig, points: Sequence[TelemetryPoint], sessions: Sequence[EVSession], now: datetime
) -> RunningDay | None:
    """Today's realized cost against business as usual, as `site_outcome` prices a window,
    over the steps of the UTC day of `now` that have ended; None when no sample was taken today.

    `run` gives the tariff and step (its horizon is replaced); a sample counts for the step it
    falls in, so the first step may hold samples from part of it only.
    """
    step = pd.Timedelta(minutes=run.horizon.step_minutes)
    at = pd.Timestamp(now).tz_convert("UTC")
    day = at.floor("D")
    today = [p for p in points if day <= pd.Timestamp(p.at) < at]
    if not today:
        return None
    since = max(day, min(pd.Timestamp(p.at) for p in today).tz_convert("UTC").floor(step))
    end = at.floor(step)
    steps = int((end - since) / step)
    if steps <= 0:
        return RunningDay(since.to_pydatetime(), 0, None)
    index = pd.date_range(since, periods=steps, freq=step, name="timestamp")
    frame, missing = realized_frame([p for p in today if pd.Timestamp(p.at) < end], index)
    realized = site_outcome(site, horizon_run(run, since.to_pydatetime(), steps), frame, missing, sessions)
    return RunningDay(since.to_pydatetime(), steps, realized)
