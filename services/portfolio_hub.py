"""The portfolio's live half: one stream per connected site, the coupled solve on a
period and on every change, schedules pushed down and their acks recorded.

`PortfolioHub` holds the connections and runs solves; `PortfolioLinkServicer` is the
stream's gRPC face. A node's site id comes from its certificate (mTLS); with
`--insecure-loopback` (tests, demo) the hello's site id is trusted.

A second connection for a site that is already connected replaces the first: a node
that lost its stream silently reconnects before the portfolio notices, and must not be
locked out until the old stream times out.

For the operators, the hub also keeps (in memory) each site's latest command report and
its running account of the current UTC day (`site_day`): realized cost against business
as usual over the whole steps that have ended, priced by `portfolio.outcome` from the
stored telemetry and the site's snapshot. That account is cached per site and worked out
again off the event loop once a step has ended (`DAY_SETTLE_SECONDS` later, so that step's
last samples are stored) or, at most every `DAY_CHECK_SECONDS`, when stored telemetry of
the counted steps, sessions or tariff changed; never more often than every
`DAY_MIN_SECONDS` (a demo's sped-up clock ends a step every second or two).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import grpc
import numpy as np
import pandas as pd
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from portfolio.config import PortfolioSettings
from portfolio.coupled import (
    CoupledSolver,
    HeldShare,
    PortfolioPlan,
    SitePlan,
    common_index,
    reserved_for_absent,
)
from portfolio.model import Feeder, FlexState, SiteSettings
from portfolio.outcome import running_day
from portfolio.report import EventResult, FeederResult, SiteCost, SolveReport
from portfolio.snapshot import CommonHorizon, SiteSnapshot, check_snapshot, common_horizon
from portfolio.store import PortfolioStore
from services import portfolio_convert as pc
from services.certs import site_id_from_auth_context
from services.errors import abort
from services.push_window import PushWindow
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, portfolio_pb2_grpc
from sitenode import logfields
from sitenode.clock import Clock
from sitenode.errors import GridmeshError, InvalidInput
from sitenode.model.problem import SiteProblem
from sitenode.model.sessions import EVSession
from sitenode.model.validation import ID_PATTERN
from sitenode.schedule import GRID_EXPORT, GRID_IMPORT
from sitenode.telemetry import TelemetryPoint

log = logging.getLogger("gridmesh.portfolio")
_CLOSE = object()  # put in an outbox: end that stream
PLANNED = frozenset({"optimal", "time_limit"})  # solve statuses that come with a plan (SolverStatus.has_solution)
DAY_LOOP_SECONDS = 0.5  # how often (wall clock) the hub looks for sites whose day account is due
DAY_SETTLE_SECONDS = 2.0  # a step that has ended is counted this long (wall clock) after: its last samples are in
DAY_CHECK_SECONDS = 30.0  # within a step, a site's day account is looked at again at most this often (wall clock)
DAY_MIN_SECONDS = 5.0  # and never more often than this (wall clock): a sped-up clock ends a step every second
PUSH_BATCH = 50  # a solve's schedules are encoded this many sites at a time, the streams sending in between
PUSH_QUIET_SECONDS = (
    2.0  # a push's spell ends this long (wall clock) after its last schedule was sent, if acks are missing
)
PING_SLOTS = 10  # the heartbeat looks at a tenth of the streams every tenth of the ping interval
PUSH_FLUSH_POLL_SECONDS = 0.05  # during a push, the gathered writes look this often (wall clock) whether it is through


@dataclass(eq=False)
class Connection:
    site_id: str
    connected_at: datetime
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    last_heard: float = field(default_factory=time.monotonic)  # time.monotonic() of the node's latest message
    last_sent: float = field(default_factory=time.monotonic)  # and of the latest message handed to the stream
    slot: int = 0  # the heartbeat's slot for this stream (0 .. PING_SLOTS - 1)


@dataclass
class SiteLive:
    """What the portfolio holds of a site between solves."""

    latest: portfolio_pb2.TelemetryPoint | None = None
    snapshot: SiteSnapshot | None = None
    snapshot_msg: common_pb2.SiteSnapshot | None = None
    # the node's recent dispatch commands as it last reported them, newest first (at most pc.MAX_COMMANDS)
    commands: list[portfolio_pb2.CommandStatus] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class _Outgoing:
    """A site's part of a solve, ready to go: its version, the message, its bytes for the store."""

    version: str
    message: portfolio_pb2.PortfolioMessage
    payload: bytes


@dataclass(eq=False)
class _PushTimes:
    """A solve's push: where its time went around the solver (seconds, for the log), and what
    the push's spell and the report take from it (its id, the sites served, `solved_at`)."""

    building: float = 0.0
    built: int = 0  # problems built by the solve (the rest were built at their snapshot)
    encoding: float = 0.0
    storing: float = 0.0  # in the store thread, summed over the batches
    last_stored: float = 0.0  # from the solver's end until the last batch was stored
    solved: float = 0.0  # time.perf_counter() at the solver's end
    solved_at: datetime | None = None  # and the hub's clock then (the report's solved_at)
    resumed: float = 0.0  # from the solver's end until the solve went on, on the event loop
    push_id: int = 0  # the PushWindow's id of this push (0: the solver did not return)
    delivered: set[str] = field(default_factory=set)  # sites whose stream took their schedule
    first_pushed: float = 0.0  # from the solver's end until the first batch was in its outboxes


@dataclass(eq=False)
class _Day:
    """A site's running account of the current UTC day, and what it was worked out from."""

    points: list[TelemetryPoint] = field(default_factory=list)  # today's stored samples read so far, in seq order
    seq: int = 0  # the newest stored seq read
    day: date | None = None  # the UTC day of `points`
    step_end: datetime | None = None  # the end of the last whole step when last looked at
    checked_at: float = float("-inf")  # time.monotonic() of the last look
    ended_at: float | None = None  # time.monotonic() when a step was first seen to have ended since the last look
    inputs: tuple | None = None  # what the cached value was worked out from
    value: portfolio_pb2.SiteDay | None = None


class PortfolioHub:
    def __init__(
        self,
        settings: PortfolioSettings,
        store: PortfolioStore,
        solver: CoupledSolver,
        clock: Clock,
        *,
        trust_hello: bool,
    ) -> None:
        self.settings, self.store, self.solver, self.clock = settings, store, solver, clock
        self.trust_hello = trust_hello
        self.connections: dict[str, Connection] = {}
        self.sites: dict[str, SiteLive] = {}
        self.watchers: set[asyncio.Queue] = set()
        self.planned_start: datetime | None = None
        self._planned_parts: dict[str, SitePlan] = {}  # the latest solve's pushed parts: `planned` reads them on demand
        self._planned: dict[str, np.ndarray] | None = {}
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._reasons: list[str] = []
        self._ids = itertools.count(1)
        self._slots = itertools.count()  # streams take the heartbeat's slots in turn
        self.issued: dict[str, set[str]] = {}  # versions pushed since start, per site (acks are checked against them)
        self.last_seq: dict[str, int] = {}  # the newest stored telemetry seq per site
        self._unacked: set[str] = set()  # sites whose newest stored seq is not yet acked
        self._acked_at: dict[str, float] = {}  # time.monotonic() of each site's latest telemetry ack
        self._telemetry: dict[str, list[portfolio_pb2.TelemetryPoint]] = {}  # received, not yet stored, per site
        self._acks: list[tuple[str, str, bool, str, datetime]] = []
        # per site, the version of the newest schedule its node accepted since start (a solve
        # reserves the share it carries while the site is away; the store may not have the ack yet)
        self._accepted: dict[str, str] = {}
        self._snapshots: dict[str, tuple[bytes, datetime]] = {}  # checked, not yet stored, per site (the latest)
        # the store's writes run in one thread of their own, in order: a thousand snapshot checks
        # queued in the default executor must not hold up telemetry acks or a solve's schedules
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="portfolio-store")
        self._flush_wanted = asyncio.Event()
        self._write_lock = asyncio.Lock()  # one flush at a time: a failed one puts its items back ahead of newer ones
        # per site: the UTC day and the EV sessions its snapshots showed that day (by id; a
        # departed session still counts in the day's business as usual)
        self.day_sessions: dict[str, tuple[date, dict[str, EVSession]]] = {}
        self._days: dict[str, _Day] = {}
        # per site: (snapshot, horizon start, steps, its problem), built in worker threads when
        # the snapshot came or by the last solve, and taken by a solve over the same horizon
        self._problems: dict[str, tuple[SiteSnapshot, datetime, int, SiteProblem]] = {}
        self.push_window = PushWindow(PUSH_QUIET_SECONDS)
        # for the metrics (services.metrics_portfolio): solves by status ("failed": raised), the
        # latest report and the latest with a plan, and each site's newest stored telemetry time
        self.solves: dict[str, int] = {}
        self.last_report: SolveReport | None = None
        self.last_planned: SolveReport | None = None
        self.started_at = clock.now()
        self.stored_at: dict[str, Timestamp] = {}
        self._restore()

    def _restore(self) -> None:
        """After a restart: the sites' last snapshots, so a solve can run as soon as they reconnect."""
        for record in self.store.sites():
            stored = self.store.snapshot(record.site_id)
            if stored is None:
                continue
            msg = common_pb2.SiteSnapshot.FromString(stored[0])
            try:
                self.sites[record.site_id] = SiteLive(None, pc.snapshot_in(msg), msg)
            except GridmeshError:
                log.warning("stored snapshot of %s no longer valid; waiting for a new one", record.site_id)

    @property
    def planned(self) -> dict[str, np.ndarray]:
        """Site -> planned net import (kW per step from `planned_start`) of the latest solve's schedules."""
        if self._planned is None:
            self._planned = {site_id: _net_import(part) for site_id, part in self._planned_parts.items()}
        return self._planned

    # -- triggers -------------------------------------------------------------------------
    def want_solve(self, reason: str) -> None:
        self._reasons.append(reason)
        self._wanted.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The hub's background work: solves, the gathered writes, heartbeats, today's accounts."""
        try:
            await asyncio.gather(
                self.solve_loop(stop), self.flush_loop(stop), self.heartbeat_loop(stop), self.day_loop(stop)
            )
        finally:
            self.push_window.end()

    async def heartbeat_loop(self, stop: asyncio.Event) -> None:
        """One timer for every stream (a timer per stream costs the event loop dearly at a
        thousand): the portfolio keeps each stream alive, and a stream silent past the
        timeout is closed.

        The streams are spread over PING_SLOTS slots and the timer looks at one slot every
        interval / PING_SLOTS, so each stream is looked at once an interval and the pings go
        out evenly. One pass over every stream at once pinged a thousand nodes together,
        their pongs came back together, and a solve ending then had its schedules queue
        behind them. A stream is pinged when nothing was heard from it or nothing was sent to
        it for half an interval: it is then never silent much past 1.5 intervals, which the
        node's own rule (it pings only after two silent intervals) counts on. A stream with
        traffic both ways gets no ping (each side has just heard the other, and any message
        counts as a sign of life), nor does one whose schedule is on its way."""
        nonce = itertools.count(1)
        interval = self.settings.ping_interval_seconds
        tick = interval / PING_SLOTS
        woke, slot, spare_until = time.monotonic(), 0, 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
            now = time.monotonic()
            # a tick far later than asked: something held the event loop (the GIL), and what the
            # nodes sent meanwhile is still unread; that is no node's silence, so no stream is
            # dropped until every slot has been looked at once more
            late, woke = now - woke - tick, now
            if late > interval:
                log.warning("heartbeat %.1f s late (the event loop was held): no stream dropped for an interval", late)
                spare_until = now + interval
            slot = (slot + 1) % PING_SLOTS
            ping = portfolio_pb2.PortfolioMessage(
                ping=portfolio_pb2.Ping(nonce=next(nonce), sent_at=pc.ts(self.clock.now()))
            )
            for conn in list(self.connections.values()):
                if conn.slot != slot:
                    continue
                if now - conn.last_heard > self.settings.ping_timeout_seconds and now >= spare_until:
                    log.warning("site %s silent for %.1f s: stream dropped", conn.site_id, now - conn.last_heard)
                    conn.outbox.put_nowait(_CLOSE)
                elif (
                    now - conn.last_heard >= interval / 2 or now - conn.last_sent >= interval / 2
                ) and not self.push_window.coming(conn.site_id):
                    conn.outbox.put_nowait(ping)

    async def solve_loop(self, stop: asyncio.Event) -> None:
        """Solve on the period, and soon after anything asked for one (requests within
        a short spell share one solve)."""
        period = self.settings.solve_period_seconds / self.settings.clock_speed
        stopping = asyncio.ensure_future(stop.wait())  # a stop wakes the loop, as a request does
        try:
            while not stop.is_set():
                wanted = asyncio.ensure_future(self._wanted.wait())
                try:
                    await asyncio.wait({wanted, stopping}, timeout=period, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wanted.cancel()
                if stop.is_set():
                    return
                await asyncio.sleep(0.05)
                reasons = sorted(set(self._reasons)) or ["period"]
                self._reasons.clear()
                self._wanted.clear()
                try:
                    await self.solve(",".join(reasons))
                except Exception:  # noqa: BLE001 - a failed solve is logged; nodes keep their schedules
                    self.solves["failed"] = self.solves.get("failed", 0) + 1
                    log.exception("portfolio solve failed")
        finally:
            stopping.cancel()

    # -- the solve --------------------------------------------------------------------------
    async def solve(self, trigger: str) -> SolveReport:
        async with self._lock:
            now, began = self.clock.now(), time.perf_counter()
            solve_id = f"{now.strftime('%Y%m%dT%H%M%S')}-{next(self._ids)}"
            snapshots = {
                s: live.snapshot
                for s, live in self.sites.items()
                if s in self.connections and live.snapshot is not None
            }
            s = self.settings
            # a plan starts at the first step boundary at least `plan_lead_seconds` away: it is
            # solved, pushed and in force at every site before that step begins
            horizon = common_horizon(
                snapshots, now + timedelta(seconds=s.plan_lead_seconds), s.step_minutes, s.horizon_steps
            )
            if horizon is None:
                report = SolveReport(
                    solve_id,
                    now,
                    trigger,
                    "no_sites",
                    "none",
                    0.0,
                    0.0,
                    0.0,
                    float("nan"),
                    float("nan"),
                    0,
                    0.0,
                    None,
                    s.step_minutes,
                    0,
                )
                await self._in_store(self.store.save_report, solve_id, now, report.to_json())
                return self._solved(report)
            feeders = self.store.feeders()
            events = [
                e
                for e in self.store.events(include_cancelled=False)
                if e.state is FlexState.SCHEDULED and e.start < horizon.end and e.end > horizon.start
            ]
            valid_until = min(now + timedelta(minutes=s.schedule_valid_minutes), horizon.end)
            # building and solving run off the event loop; encoding runs on it, a batch at a
            # time between the sends of the batches before (in a worker thread it would fight
            # the loop for the GIL), and storing runs in the store thread
            times = _PushTimes()
            try:
                plan, seconds = await asyncio.to_thread(self._solve, snapshots, horizon, feeders, events, times)
                times.resumed = time.perf_counter() - times.solved
                outgoing = await self._push_plan(plan, horizon, f"pf-{solve_id}", valid_until, now, times)
            finally:
                if times.push_id:  # the push's spell lasts until its acks are in
                    self.push_window.sent(times.push_id, f"pf-{solve_id}", times.delivered)
            # worked out when asked for, not now: the streams are still sending this solve's schedules
            self._planned_parts, self._planned, self.planned_start = (
                {site_id: plan.sites[site_id] for site_id in outgoing},
                None,
                horizon.start,
            )
            versions = {site_id: item.version for site_id, item in outgoing.items()}
            log.info(
                "solve %s: problems %.3f s (%d of %d built, the rest built at their snapshot), solver %.3f s, "
                "back on the event loop %.3f s later, encoding %.3f s, storing %d schedules %.3f s "
                "(encoded %d at a time, pushed once stored: the first %.3f s after the solver, "
                "the last stored %.3f s after); all but the solver %.3f s",
                solve_id,
                times.building,
                times.built,
                len(snapshots),
                seconds,
                times.resumed,
                times.encoding,
                len(outgoing),
                times.storing,
                PUSH_BATCH,
                times.first_pushed,
                times.last_stored,
                time.perf_counter() - began - seconds,
            )
            report = SolveReport(
                solve_id,
                now,
                trigger,
                plan.status,
                plan.method,
                plan.objective,
                plan.alone_objective,
                plan.coupling_cost,
                plan.bound,
                plan.gap,
                plan.iterations,
                seconds,
                horizon.start,
                horizon.step_minutes,
                horizon.steps,
                sites=tuple(SiteCost(k, v.alone_cost, v.coupled_cost) for k, v in plan.sites.items()),
                feeders=tuple(
                    FeederResult(c.feeder_id, c.holds, c.max_excess_kw, c.binding_steps, c.reserved_kw)
                    for c in plan.feeders
                ),
                events=tuple(EventResult(c.event_id, c.holds, c.worst_shortfall_kw) for c in plan.events),
                relaxed=plan.relaxed,
                all_hold=plan.all_hold,
                schedules=versions,
                peak_kw=plan.peak_kw,
                peak_charge=plan.peak_charge,
                solved_at=times.solved_at,
            )
            # serialized in the store thread: a thousand sites' costs are milliseconds the streams need now
            await self._in_store(lambda: self.store.save_report(solve_id, now, report.to_json()))
            log.info(
                "solve %s (%s): %d sites, objective %.2f, coupling %.2f, all hold: %s",
                solve_id,
                trigger,
                len(plan.sites),
                plan.objective,
                plan.coupling_cost,
                plan.all_hold,
            )
            self.notify()
            return self._solved(report)

    def _solved(self, report: SolveReport) -> SolveReport:
        self.solves[report.status] = self.solves.get(report.status, 0) + 1
        self.last_report = report
        if report.status in PLANNED:
            self.last_planned = report
        return report

    def _solve(
        self, snapshots: dict[str, SiteSnapshot], horizon: CommonHorizon, feeders: list, events: list, times: _PushTimes
    ) -> tuple[PortfolioPlan, float]:
        """Worker thread: the sites' problems (most built when their snapshots came) and the
        coupled solve; the push's spell (`PushWindow`) begins the moment the solver returns."""
        started = time.perf_counter()
        problems, built = {}, 0
        for site_id, snap in snapshots.items():
            problem = self._prebuilt_problem(site_id, snap, horizon.start, horizon.steps)
            if problem is None:
                try:
                    problem = snap.problem(horizon.start, horizon.steps)
                except GridmeshError as exc:
                    log.warning("site %s left out of the solve: %s", site_id, exc)
                    continue
                built += 1
                self._problems[site_id] = (snap, horizon.start, horizon.steps, problem)
            problems[site_id] = problem
        reserved = self._reserved(feeders, problems, horizon)
        times.building, times.built = time.perf_counter() - started, built
        started = time.perf_counter()
        plan = self.solver.solve(
            problems,
            feeders,
            events,
            coincident_peak_price_per_kw=self.settings.coincident_peak_price_per_kw,
            reserved_kw=reserved,
        )
        times.solved_at = self.clock.now()
        times.push_id = self.push_window.begin(set(plan.sites))
        times.solved = time.perf_counter()
        return plan, times.solved - started

    def _reserved(
        self, feeders: list[Feeder], problems: dict[str, SiteProblem], horizon: CommonHorizon
    ) -> dict[str, np.ndarray]:
        """Worker thread: per feeder, kW per step kept out of its cap for its members not in this
        solve (link down, or left out): each such node plans alone within the share of the
        schedule it last acked, so the sites in the solve may use only the cap less those
        shares (`reserved_for_absent`). A member that never acked a schedule holds no share
        from the portfolio (its node plans within its own site's import limit) and is reserved
        nothing: the portfolio cannot tell that limit of a site it may never have heard from,
        and reserving a site's whole connection would leave its neighbours nothing for a node
        that is not running under the portfolio at all."""
        absent = {s for f in feeders for s in f.site_ids if s not in problems}
        if not absent:
            return {}
        held = self.store.last_acked(sorted(absent))
        for site_id in absent:  # an accepted ack the store has not written yet is newer
            version = self._accepted.get(site_id)
            if version is not None and (site_id not in held or held[site_id].version != version):
                record = self.store.schedule(site_id, version)
                if record is not None and (site_id not in held or record.issued_at >= held[site_id].issued_at):
                    held[site_id] = record
        shares: dict[str, HeldShare] = {}
        for site_id, record in held.items():
            try:
                limit = pc.import_limit_in(portfolio_pb2.SetpointSchedule.FromString(record.payload))
            except (GridmeshError, DecodeError) as exc:
                log.warning("site %s: the share of schedule %s is unreadable: %s", site_id, record.version, exc)
                continue
            if limit is not None:
                shares[site_id] = HeldShare(limit.start, limit.step_minutes, limit.values_kw)
        if problems:
            index = common_index(problems)
        else:
            index = pd.date_range(horizon.start, periods=horizon.steps, freq=f"{horizon.step_minutes}min")
        reserved = reserved_for_absent(feeders, problems.keys(), shares, index)
        for f in feeders:
            if f.feeder_id in reserved:
                log.info(
                    "feeder %s: up to %.1f kW of its cap reserved for absent members %s (the shares they hold)",
                    f.feeder_id,
                    float(reserved[f.feeder_id].max()),
                    ", ".join(s for s in f.site_ids if s in shares and s not in problems),
                )
        return reserved

    async def _push_plan(
        self,
        plan: PortfolioPlan,
        horizon: CommonHorizon,
        version: str,
        valid_until: datetime,
        now: datetime,
        times: _PushTimes,
    ) -> dict[str, _Outgoing]:
        """Each site's schedule encoded (PUSH_BATCH sites at a time, the streams sending in
        between), stored and pushed. One store write at a time takes every schedule encoded
        since the last began (a group commit: few transactions, the first one small), and its
        schedules go to their streams once it is written; so the first nodes have theirs while
        later ones are still being encoded. Returns once every schedule is stored; a write the
        store refused is not pushed, and its error is raised once the others are stored."""
        loop = asyncio.get_running_loop()
        outgoing: dict[str, _Outgoing] = {}
        pending: dict[str, _Outgoing] = {}
        writing: list[asyncio.Future] = []  # the write under way, if any
        refused: list[BaseException] = []

        def write_pending() -> None:
            nonlocal pending
            if writing or not pending:
                return
            batch, pending = pending, {}
            future = loop.run_in_executor(
                self._store_thread, self._store_batch, batch, horizon.start, valid_until, now, times
            )
            future.add_done_callback(functools.partial(written, batch))
            writing.append(future)

        def written(batch: dict[str, _Outgoing], future: asyncio.Future) -> None:
            writing.clear()
            if future.cancelled() or future.exception() is not None:
                refused.append(future.exception() or asyncio.CancelledError())
            else:
                self._deliver(batch, times)
            write_pending()

        encoder = pc.SetpointEncoder(
            version, horizon.start, horizon.step_minutes, valid_until
        )  # every site's plan starts there
        parts = list(plan.sites.items())
        for first in range(0, len(parts), PUSH_BATCH):
            began = time.perf_counter()
            for site_id, part in parts[first : first + PUSH_BATCH]:
                item = _encoded(part, version, encoder)
                if item is not None:
                    outgoing[site_id] = pending[site_id] = item
            times.encoding += time.perf_counter() - began
            write_pending()
            await asyncio.sleep(0)  # the streams send what is queued before more is encoded
        while writing:  # `written` runs before this wait ends, and starts the next write if any
            await asyncio.wait(list(writing))
        if refused:
            raise refused[0]
        return outgoing

    def _store_batch(
        self, batch: dict[str, _Outgoing], valid_from: datetime, valid_until: datetime, now: datetime, times: _PushTimes
    ) -> None:
        """Store thread: one transaction for the batch. Stored first, sent next: a node never
        holds a schedule the store lacks, so its ack always finds it and a restart resends it;
        and the store thread writes in order, so the acks (a later flush) come after."""
        began = time.perf_counter()
        self.store.issue_schedules(
            [(site_id, item.version, valid_from, valid_until, item.payload) for site_id, item in batch.items()], now
        )
        times.storing += time.perf_counter() - began
        times.last_stored = time.perf_counter() - times.solved

    def _deliver(self, batch: dict[str, _Outgoing], times: _PushTimes) -> None:
        """A stored batch of schedules into the sites' outboxes (acks are checked against `issued`)."""
        times.first_pushed = times.first_pushed or time.perf_counter() - times.solved
        for site_id, item in batch.items():
            self.issued.setdefault(site_id, set()).add(item.version)
            self.push_window.delivered(site_id)
            if self.push(site_id, item.message):
                times.delivered.add(site_id)

    def _prebuilt_problem(self, site_id: str, snap: SiteSnapshot, start: datetime, steps: int) -> SiteProblem | None:
        held = self._problems.get(site_id)
        if held is not None and held[0] is snap and held[1] == start and held[2] == steps:
            return held[3]
        return None

    def _prebuild(self, site_id: str, snap: SiteSnapshot, now: datetime) -> None:
        """Worker thread, at a snapshot's receipt: the site's problem over the horizon a solve
        now would use (the site alone decides it unless other sites' horizons are shorter),
        so the solve finds it built. A solve over another horizon builds its own."""
        s = self.settings
        horizon = common_horizon(
            {site_id: snap}, now + timedelta(seconds=s.plan_lead_seconds), s.step_minutes, s.horizon_steps
        )
        if horizon is None:
            return
        try:
            self._problems[site_id] = (snap, horizon.start, horizon.steps, snap.problem(horizon.start, horizon.steps))
        except GridmeshError:
            self._problems.pop(site_id, None)  # the solve tries again, and says why it leaves the site out

    # -- writes, gathered: one transaction (one disk sync) for everything that arrived meanwhile --
    async def flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_wanted.wait(), 0.5)
            if self.push_window.open:
                # the store thread is the push's: a solve's schedules are written there, a batch
                # at a time, and each waits for the writes queued before it; what came meanwhile
                # (the first nodes' acks, telemetry) is written once the push is through
                await asyncio.sleep(PUSH_FLUSH_POLL_SECONDS)
                continue
            self._flush_wanted.clear()
            if self._telemetry or self._acks or self._snapshots:
                try:
                    await self.flush()
                except Exception:  # noqa: BLE001 - a failed write is logged; unacked telemetry comes again
                    log.exception("storing telemetry and acks failed")
            elif self._unacked:
                self.ack_telemetry()  # what the last writes stored, held back by the ack cadence

    async def flush(self) -> None:
        """Store what arrived since the last flush in one transaction, in a worker thread; only
        then ack the telemetry (one ack per site: every seq up to it is stored). A failed write
        stores nothing and acks nothing: its points and acks wait for the next flush."""
        async with self._write_lock:
            telemetry, self._telemetry = self._telemetry, {}
            acks, self._acks = self._acks, []
            snapshots, self._snapshots = self._snapshots, {}
            try:
                await self._in_store(self._write, telemetry, acks, snapshots)
            except BaseException:
                for site_id, points in telemetry.items():  # ahead of whatever came meanwhile
                    self._telemetry[site_id] = points + self._telemetry.get(site_id, [])
                self._acks[:0] = acks
                for site_id, snapshot in snapshots.items():
                    self._snapshots.setdefault(site_id, snapshot)  # unless a newer one came
                raise
        for site_id, points in telemetry.items():
            newest = max(points, key=lambda p: p.seq)
            if newest.seq >= self.last_seq.get(site_id, 0):
                self.stored_at[site_id] = newest.at
            self.last_seq[site_id] = max(self.last_seq.get(site_id, 0), newest.seq)
            self._unacked.add(site_id)
        self.ack_telemetry()
        self.notify()

    def ack_telemetry(self) -> None:
        """Ack each site's stored telemetry up to its newest seq, unless the site had an ack
        within `telemetry_ack_seconds` (then a later call acks it: every flush, and the flush
        loop's wake at least every half second). A node keeps unacked points in its journal
        and prunes it by the ack, so an ack a moment late costs it nothing; an ack per write
        costs a flooded portfolio a send for every message it takes in."""
        now, every = time.monotonic(), self.settings.telemetry_ack_seconds
        for site_id in list(self._unacked):
            if now - self._acked_at.get(site_id, -math.inf) >= every:
                self._unacked.discard(site_id)
                self._acked_at[site_id] = now
                self.push(
                    site_id,
                    portfolio_pb2.PortfolioMessage(
                        telemetry_ack=portfolio_pb2.TelemetryAck(up_to_seq=self.last_seq[site_id])
                    ),
                )

    def _write(
        self,
        telemetry: dict[str, list[portfolio_pb2.TelemetryPoint]],
        acks: list[tuple[str, str, bool, str, datetime]],
        snapshots: dict[str, tuple[bytes, datetime]],
    ) -> None:
        """Store thread: one transaction (one disk sync) for the telemetry, the schedule acks and the snapshots."""
        rows = {
            site_id: [(p.seq, pc.from_ts(p.at), p.SerializeToString()) for p in points]
            for site_id, points in telemetry.items()
        }
        self.store.write_many(rows, acks, snapshots)

    async def _in_store(self, fn: Callable, *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, functools.partial(fn, *args))

    def close(self) -> None:
        """End the store's thread (the writes queued to it finish first), then close the store."""
        self._store_thread.shutdown(wait=True)
        self.store.close()

    # -- operators' settings -----------------------------------------------------------------
    async def set_settings(self, site_id: str, change: SiteSettings) -> SiteSettings:
        """Merge `change` into the site's settings, keep them, and pass them to its node."""
        current = self.store.settings(site_id) or SiteSettings()
        merged = SiteSettings(
            weights=change.weights or current.weights,
            priorities=change.priorities or current.priorities,
            updated_at=self.clock.now(),
        )
        await asyncio.to_thread(self.store.put_settings, site_id, merged)
        self.push(site_id, portfolio_pb2.PortfolioMessage(settings=pc.settings_out(merged)))
        # the node's next snapshot carries them, and that snapshot asks for a solve
        self.notify()
        return merged

    # -- today's account per site ------------------------------------------------------------
    def site_day(self, site_id: str) -> portfolio_pb2.SiteDay | None:
        """The cached account of the site's current UTC day (None: no snapshot, or no telemetry today)."""
        state = self._days.get(site_id)
        return None if state is None else state.value

    def remember_sessions(self, site_id: str, sessions: tuple[EVSession, ...], now: datetime) -> None:
        """Keep the sessions a snapshot shows, for the day. The latest snapshot wins, except for
        the energy: a node reports what a session still needs, so the largest need seen today
        stands for the session's whole need (business as usual must deliver all of it)."""
        day = now.astimezone(UTC).date()
        held_day, held = self.day_sessions.get(site_id, (day, {}))
        if held_day != day:
            held = {}
        self.day_sessions[site_id] = (day, _merged_sessions(held, sessions))

    async def day_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), DAY_LOOP_SECONDS)
            if stop.is_set():
                return
            try:
                await self.refresh_days()
            except Exception:  # noqa: BLE001 - the account is a view; streams and solves go on
                log.exception("today's accounts could not be refreshed")

    async def refresh_days(self) -> None:
        """Work the due sites' day accounts out again, in a worker thread (not while a push is on)."""
        if self.push_window.open:  # a view waits for the push: its pricing would take the GIL from the streams
            return
        now, mono = self.clock.now(), time.monotonic()
        day = now.astimezone(UTC).date()
        jobs = []
        step_ends: dict[int, datetime] = {}  # per step length: one pandas floor per pass, not one per site
        for site_id, live in self.sites.items():
            snap = live.snapshot
            if snap is None:
                continue
            state = self._days.setdefault(site_id, _Day())
            if mono - state.checked_at < DAY_MIN_SECONDS:
                continue
            minutes = snap.run.horizon.step_minutes
            step_end = step_ends.get(minutes)
            if step_end is None:
                step_end = step_ends[minutes] = pd.Timestamp(now).floor(pd.Timedelta(minutes=minutes)).to_pydatetime()
            if state.step_end != step_end and state.ended_at is None:
                state.ended_at = mono
            settled = state.ended_at is not None and mono - state.ended_at >= DAY_SETTLE_SECONDS
            if not settled and mono - state.checked_at < DAY_CHECK_SECONDS:
                continue
            state.step_end, state.checked_at, state.ended_at = step_end, mono, None
            held_day, held = self.day_sessions.get(site_id, (day, {}))
            sessions = _merged_sessions(held if held_day == day else {}, snap.sessions)
            jobs.append((site_id, state, step_end, snap, tuple(sessions.values())))
        if jobs:
            await asyncio.to_thread(self._work_days, jobs, now)

    def _work_days(
        self, jobs: list[tuple[str, _Day, datetime, SiteSnapshot, tuple[EVSession, ...]]], now: datetime
    ) -> None:
        """Worker thread: read each site's new samples, and price its day when its inputs changed.
        A push that begins meanwhile stops the work: the sites not reached are due again."""
        for k, (site_id, state, end, snap, sessions) in enumerate(jobs):
            if self.push_window.open:
                for _, left, _, _, _ in jobs[k:]:
                    left.checked_at = float("-inf")
                return
            try:
                self._work_day(site_id, state, end, snap, sessions, now)
            except Exception as exc:  # noqa: BLE001 - one site's bad inputs leave the others' accounts
                log.warning("today's account of %s not worked out: %s: %s", site_id, type(exc).__name__, exc)

    def _work_day(
        self,
        site_id: str,
        state: _Day,
        end: datetime,
        snap: SiteSnapshot,
        sessions: tuple[EVSession, ...],
        now: datetime,
    ) -> None:
        day_start = pd.Timestamp(now).tz_convert("UTC").floor("D").to_pydatetime()
        if state.day != day_start.date():  # a new day: yesterday's samples go, the seq cursor stays
            state.day, state.points, state.value, state.inputs = day_start.date(), [], None, None
        while True:
            records = self.store.telemetry_since(site_id, day_start, state.seq, 5000)
            state.points.extend(pc.telemetry_in(portfolio_pb2.TelemetryPoint.FromString(r.payload)) for r in records)
            if records:
                state.seq = records[-1].seq
            if len(records) < 5000:
                break
        counted = sum(1 for p in state.points if p.at < end)
        # the result depends on the samples of the steps that have ended, the site and its tariff, and the sessions
        inputs = (end, counted, snap.site, snap.run.tariff, snap.run.horizon.step_minutes, sessions)
        if inputs == state.inputs:
            return
        result = running_day(snap.site, snap.run, state.points, sessions, now)
        state.inputs = inputs
        state.value = None if result is None else pc.site_day_out(result, snap.run.tariff.currency)

    # -- connections ------------------------------------------------------------------------
    def push(self, site_id: str, message: portfolio_pb2.PortfolioMessage) -> bool:
        conn = self.connections.get(site_id)
        if conn is None:
            return False
        conn.outbox.put_nowait(message)
        return True

    def notify(self) -> None:
        for queue in list(self.watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(True)

    def attach(self, site_id: str) -> Connection:
        old = self.connections.get(site_id)
        if old is not None:
            log.warning("site %s connected again: the older stream is closed", site_id)
            old.outbox.put_nowait(_CLOSE)
        conn = Connection(site_id, self.clock.now(), slot=next(self._slots) % PING_SLOTS)
        self.connections[site_id] = conn
        self.sites.setdefault(site_id, SiteLive())
        self.notify()
        return conn

    def detach(self, conn: Connection) -> None:
        if self.connections.get(conn.site_id) is conn:
            del self.connections[conn.site_id]
            self.notify()

    def receive(self, conn: Connection, message: portfolio_pb2.NodeMessage) -> bool:
        """One message from a node (after its hello), without awaiting anything; False for a
        snapshot, which `handle_snapshot` takes (its check runs in a worker thread). A
        coroutine per message is dear at thousands of messages a second. InvalidInput:
        refused, nothing kept."""
        conn.last_heard = time.monotonic()
        kind = message.WhichOneof("body")
        site_id = conn.site_id
        if kind == "telemetry":
            points = message.telemetry.points
            for i, p in enumerate(points):
                pc.check_telemetry(p, i)
            if points:
                # kept as received; converted and serialized by the writer, off the event loop
                pending = self._telemetry.get(site_id)
                if pending is None:
                    pending = self._telemetry[site_id] = []
                pending.extend(points)
                live = self.sites.get(site_id)
                if live is None:
                    live = self.sites[site_id] = SiteLive()
                newest = points[-1] if len(points) == 1 else max(points, key=lambda p: p.seq)
                if live.latest is None or newest.seq >= live.latest.seq:
                    live.latest = newest
                self._flush_wanted.set()
        elif kind == "ping":
            if not self.push_window.coming(site_id):  # else its schedule, on its way, answers for the portfolio
                self.push(site_id, portfolio_pb2.PortfolioMessage(pong=portfolio_pb2.Pong(nonce=message.ping.nonce)))
        elif kind == "pong":
            pass
        elif kind == "snapshot":
            return False
        elif kind == "ack":
            ack = message.ack
            if ack.version not in self.issued.get(site_id, set()) and not any(
                r.version == ack.version for r in self.store.schedules(site_id, 50)
            ):
                raise InvalidInput.one("ack.version", f"no schedule {ack.version!r} was issued to {site_id}")
            self.push_window.acked(site_id, ack.version)
            if ack.accepted:
                self._accepted[site_id] = ack.version
            else:
                log.warning(
                    "site %s refused schedule %s: %s",
                    site_id,
                    ack.version,
                    ack.reason,
                    extra=logfields.fields(site=site_id, schedule_version=ack.version),
                )
            self._acks.append((site_id, ack.version, ack.accepted, ack.reason, self.clock.now()))
            self._flush_wanted.set()
        elif kind == "commands":
            # a view for operators: a report the portfolio cannot read is logged and dropped,
            # and the stream (telemetry, acks) goes on
            try:
                commands = pc.commands_in(message.commands)
            except InvalidInput as exc:
                log.warning("site %s sent a command report that was ignored: %s", site_id, exc)
            else:
                if len(message.commands.commands) > len(commands):
                    log.warning(
                        "site %s reported %d commands: the %d due last are kept",
                        site_id,
                        len(message.commands.commands),
                        len(commands),
                    )
                self.sites.setdefault(site_id, SiteLive()).commands = commands
        elif kind == "hello":
            raise InvalidInput.one("hello", "only the first message of a stream may be a hello")
        else:
            raise InvalidInput.one("body", "an empty NodeMessage")
        return True

    async def handle_snapshot(self, conn: Connection, msg: common_pb2.SiteSnapshot) -> None:
        now = self.clock.now()
        site_id = conn.site_id
        # checking a snapshot builds the site's problem: milliseconds, kept off the event loop
        snap, payload = await asyncio.to_thread(self._checked_snapshot, msg, site_id, now)
        # stored with the next gathered write (a restart finds it; a node sends one again soon anyway)
        self._snapshots[site_id] = (payload, now)
        self._flush_wanted.set()
        live = self.sites.setdefault(site_id, SiteLive())
        live.snapshot, live.snapshot_msg = snap, msg
        self.remember_sessions(site_id, snap.sessions, now)
        self.want_solve("snapshot")

    def _checked_snapshot(
        self, msg: common_pb2.SiteSnapshot, site_id: str, now: datetime
    ) -> tuple[SiteSnapshot, bytes]:
        """Worker thread: the snapshot read and checked, its problem built for the next solve, its
        bytes for the store."""
        snap = pc.snapshot_in(msg)
        check_snapshot(snap, site_id, self.settings.step_minutes)
        self._prebuild(site_id, snap, now)
        return snap, msg.SerializeToString()


def _encoded(part: SitePlan, version: str, encoder: pc.SetpointEncoder) -> _Outgoing | None:
    """A site's part of the plan as its message and the message's bytes for the store; None for
    a part with no plan (NaN). A part the solver's workers encoded (`SitePlan.encoded`) only gets
    what the solve's sites share; another is encoded here, from numpy (at a thousand sites pandas'
    per-call cost was most of the encoding)."""
    body = part.encoded
    if body is None:
        frame = part.plan.schedule
        values = frame.to_numpy(dtype=float)
        if np.isnan(values).any():
            return None
        body = pc.schedule_body(frame.columns.tolist(), values, part.plan.charger_assignment)
    msg, payload = encoder.from_body(body, part.import_share_kw)
    return _Outgoing(version, msg, payload)


def _net_import(part: SitePlan) -> np.ndarray:
    frame = part.plan.schedule
    return frame[GRID_IMPORT].to_numpy(dtype=float) - frame[GRID_EXPORT].to_numpy(dtype=float)


def _merged_sessions(held: dict[str, EVSession], sessions: tuple[EVSession, ...]) -> dict[str, EVSession]:
    """`held` updated by `sessions` (by id): each session as last seen, with the largest need seen."""
    out = dict(held)
    for s in sessions:
        before = out.get(s.session_id)
        out[s.session_id] = (
            s
            if before is None or s.energy_kwh >= before.energy_kwh
            else s.model_copy(update={"energy_kwh": before.energy_kwh})
        )
    return out


def _check_hello(message: portfolio_pb2.NodeMessage, certified: str | None, trust_hello: bool) -> str:
    if message.WhichOneof("body") != "hello":
        raise InvalidInput.one("hello", "the first message of a stream must be a hello")
    site_id = message.hello.site_id
    if not site_id or not re.match(ID_PATTERN, site_id) or len(site_id) > 64:
        raise InvalidInput.one("hello.site_id", f"must be a site id, got {site_id!r}")
    if certified is None and not trust_hello:
        raise PermissionError("the client certificate names no site")
    if certified is not None and certified != site_id:
        raise PermissionError(f"this certificate speaks for site {certified!r}, not {site_id!r}")
    return site_id


class PortfolioLinkServicer(portfolio_pb2_grpc.PortfolioLinkServicer):
    def __init__(self, hub: PortfolioHub) -> None:
        self.hub = hub

    async def Connect(
        self, request_iterator: AsyncIterator[portfolio_pb2.NodeMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[portfolio_pb2.PortfolioMessage]:
        hub, s = self.hub, self.hub.settings
        certified = site_id_from_auth_context(context.auth_context())
        try:
            first = await asyncio.wait_for(anext(aiter(request_iterator)), s.ping_timeout_seconds * 3)
            site_id = _check_hello(first, certified, hub.trust_hello)
        except PermissionError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            return
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no hello")
            return
        except GridmeshError as exc:
            await abort(context, exc)
            return
        hello = first.hello
        now = hub.clock.now()
        hub.store.touch_site(
            site_id, software_version=hello.software_version, schedule_version=hello.schedule_version, at=now
        )
        conn = hub.attach(site_id)
        log.info(
            "site %s connected (holds %r)",
            site_id,
            hello.schedule_version,
            extra=logfields.fields(site=site_id, schedule_version=hello.schedule_version),
        )
        yield portfolio_pb2.PortfolioMessage(
            welcome=portfolio_pb2.Welcome(
                site_id=site_id,
                last_telemetry_seq=hub.store.last_telemetry_seq(site_id),
                ping_interval_ms=int(s.ping_interval_seconds * 1000),
                ping_timeout_ms=int(s.ping_timeout_seconds * 1000),
                snapshot_period_seconds=s.snapshot_seconds,
            )
        )
        settings = hub.store.settings(site_id)
        if settings is not None:  # an operator's choice reaches a node that was away when it was made
            yield portfolio_pb2.PortfolioMessage(settings=pc.settings_out(settings))
        # the site's newest schedule is resent only while it is part of the newest solve's: a solve
        # made since without this site (its link was down) has the other sites following plans that
        # schedule was not coupled with, so neither its plan nor the share it carries holds any more.
        # The node keeps the schedule and share it holds until the solve its snapshot brings (the
        # newest issue is read first: a solve storing in between makes `current` newer, not older)
        latest = hub.store.latest_issue()
        current = hub.store.current_schedule(site_id, now)
        if (
            current is not None
            and current.version != hello.schedule_version
            and (latest is None or current.issued_at >= latest)
        ):
            yield portfolio_pb2.PortfolioMessage(schedule=portfolio_pb2.SetpointSchedule.FromString(current.payload))
        failure: list[BaseException] = []

        async def read() -> None:
            try:
                async for message in request_iterator:
                    if not hub.receive(conn, message):
                        await hub.handle_snapshot(conn, message.snapshot)
            except GridmeshError as exc:
                failure.append(exc)
            finally:
                conn.outbox.put_nowait(_CLOSE)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await conn.outbox.get()  # pings and the silence check come from the hub's heartbeat
                if item is _CLOSE:
                    break
                conn.last_sent = time.monotonic()
                yield item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            hub.detach(conn)
            log.info("site %s disconnected", site_id, extra=logfields.fields(site=site_id))
        if failure:
            await abort(context, failure[0])
