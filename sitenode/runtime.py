"""The site node's runtime: the pieces of a site gateway wired together.

It keeps the asset state machines, EV sessions and the schedule in force (journalled),
re-optimizes on a period and whenever something changes (a session arrives or ends, an
asset faults, the objective changes), turns each new schedule into commands, and ticks
the dispatch engine. With no valid schedule it holds the failsafe: chargers at a safe
rate, the battery idle. Device adapters plug in through the registry; the gRPC service
in `services` is a thin layer over the methods here. Time comes from a `Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from sitenode import logfields
from sitenode.baselines import business_as_usual
from sitenode.bundle.io import read_series
from sitenode.clock import Clock
from sitenode.devices.ocpp_status import OCPP_TO_STATE, path_to
from sitenode.dispatch import (
    AdapterRegistry,
    AssetMap,
    AssetRating,
    Command,
    CommandType,
    DispatchEngine,
    clamp,
    commands_from_schedule,
)
from sitenode.errors import InvalidInput, NotFound
from sitenode.events import (
    EventBus,
    EventType,
    PlanAbandonedEvent,
    ScheduleReceived,
    SessionClosed,
    StateChanged,
)
from sitenode.forecast import provider_for
from sitenode.journal import Journal, SessionOutcome, StoredSchedule
from sitenode.metrics import compute_metrics
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import Horizon, Objective, Priorities, RunConfig
from sitenode.model.sessions import EVSession, check_sessions
from sitenode.model.site import SiteConfig
from sitenode.node_config import NodeConfig
from sitenode.optimizer.solve import Plan, optimize_site
from sitenode.planning import PlanAbandoned, PlanWorker, Superseded
from sitenode.schedule import (
    CHARGE,
    DISCHARGE,
    FIXED,
    GRID_EXPORT,
    GRID_IMPORT,
    LOAD,
    PV,
    SOC,
    ev_column,
    ev_columns,
    flex_column,
    flex_columns,
)
from sitenode.state import BATTERY, CHARGER, StateChange, StateMachine
from sitenode.telemetry import TelemetryPoint

log = logging.getLogger(__name__)
BATTERY_ID = "battery"
MAX_OVERRIDE_SECONDS = 86_400


class Mode(StrEnum):
    LOCAL = "LOCAL"
    PORTFOLIO = "PORTFOLIO"
    FAILSAFE = "FAILSAFE"


@dataclass(frozen=True)
class NodeStatus:
    site_id: str
    mode: Mode
    now: datetime
    schedule_version: str
    schedule_source: str
    last_optimized_at: datetime | None
    open_commands: int
    active_sessions: int
    last_solve_status: str
    relaxed: tuple[str, ...]


@dataclass(frozen=True)
class AssetView:
    asset_id: str
    kind: str  # grid, battery, pv, charger, flexible_load
    state: str
    max_charge_kw: float
    max_discharge_kw: float
    setpoint_kw: float = 0.0
    soc_kwh: float = 0.0


@dataclass(frozen=True, eq=False)
class OptimizeOutcome:
    version: str
    plan: Plan
    total_cost: float
    baseline_total_cost: float
    commands_created: int


@dataclass(frozen=True, eq=False)
class SiteInputs:
    """What the node plans from now: the portfolio models the site from the same."""

    run: RunConfig
    forecast: pd.DataFrame
    sessions: list[EVSession]
    soc_kwh: float


@dataclass(frozen=True)
class ImportLimit:
    """The import limit the portfolio gave the site, per step from `start`; the last value
    holds beyond the end."""

    start: datetime
    step_minutes: int
    values_kw: tuple[float, ...]

    def over(self, index: pd.DatetimeIndex) -> np.ndarray:
        steps = ((index - pd.Timestamp(self.start)) / pd.Timedelta(minutes=self.step_minutes)).to_numpy()
        at = np.clip(np.floor(steps).astype(int), 0, len(self.values_kw) - 1)
        return np.asarray(self.values_kw, dtype=float)[at]


@dataclass
class LinkState:
    """Whether the portfolio's stream is up, and since when it has been down."""

    connected: bool = False
    down_since: datetime | None = None


@dataclass(eq=False)
class _Settings:
    objective: Objective
    priorities: Priorities
    dirty: bool = True
    history: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {"load_kw": [], "pv_kw": []}, index=pd.DatetimeIndex([], tz="UTC", name="timestamp"), dtype=float
        )
    )


class NodeRuntime:
    def __init__(self, config: NodeConfig, base: Path, clock: Clock, registry: AdapterRegistry | None = None) -> None:
        plan = config.plan
        if not plan.tariff.energy_rates or plan.tariff.export_rate is None:
            raise InvalidInput.one("plan.tariff", "a node needs energy_rates and export_rate to price its plans")
        self.config, self.clock = config, clock
        site = config.site
        self.journal = Journal(base / config.node.journal)
        self.bus = EventBus()
        self.registry = registry or AdapterRegistry()
        self.machines: dict[str, StateMachine] = {c.id: StateMachine(CHARGER, c.id) for c in site.chargers}
        self.ratings = {c.id: AssetRating(c.id, "charger", c.max_kw) for c in site.chargers}
        if site.battery is not None:
            self.machines[BATTERY_ID] = StateMachine(BATTERY, BATTERY_ID)
            b = site.battery
            self.ratings[BATTERY_ID] = AssetRating(
                BATTERY_ID, "battery", b.max_charge_kw or b.capacity_kwh, b.max_discharge_kw or b.capacity_kwh
            )
        self.engine = DispatchEngine(self.registry, self.bus, self.journal, self.ratings, self._state_of)
        self.settings = _Settings(plan.objective, plan.priorities)
        if config.node.history:
            frame = read_series(base / config.node.history)
            frame = frame.set_index(pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True)))
            self.settings.history = frame[["load_kw", "pv_kw"]].astype(float)
        self.last_plan: Plan | None = None
        self.last_optimized_at: datetime | None = None
        self.planner = PlanWorker(config.plan.deadline_seconds)
        self._plan_task: asyncio.Task[OptimizeOutcome] | None = None
        self._plan_asked_at: datetime | None = None
        # the portfolio's schedule stopped being followed and no plan of the node's own is in yet:
        # that schedule stays in force (while valid) rather than the failsafe, which keeps no share
        self._bridging = False
        self._next_departure: datetime | None = None  # None: look in the journal at the next turn
        # after a restart the journalled schedule stays in force until the next planned re-plan
        current = self.journal.current_schedule()
        if current is not None and current.valid_until > clock.now():
            self.last_optimized_at, self.settings.dirty = current.received_at, False
            self._plan_asked_at = current.received_at
        self.soc_kwh = site.battery.soc_initial_kwh if site.battery is not None else 0.0
        self._failsafe_since: datetime | None = None
        self.charger_kw: dict[str, float] = {}
        self._charger_sample: dict[str, tuple[datetime, float]] = {}
        self._register: dict[str, float] = {}  # each charger's last energy register reading, kWh
        # measured per session: plans ask only for the rest. Kept in the journal (each plan and
        # telemetry period), so a node restarted mid-session does not ask for the whole need again
        stored_delivered = self.journal.setting("delivered_kwh")
        active = {s.session_id for s in self.journal.sessions()}
        self.delivered_kwh: dict[str, float] = {
            k: float(v) for k, v in (json.loads(stored_delivered) if stored_delivered else {}).items() if k in active
        }
        self.ev_energy_kwh = float(
            self.journal.setting("ev_energy_kwh") or 0.0
        )  # every charger, cumulative, kept across restarts
        # the link: a node that has never reached the portfolio counts as down since it started
        self.link = LinkState(False, clock.now())
        self.revision = 0  # bumped on every change the portfolio should hear of
        self._was_following = False
        self._mode: Mode | None = None
        self._last_telemetry_at: datetime | None = None
        stored_limit = self.journal.setting("portfolio_import_limit")
        self.import_limit: ImportLimit | None = None
        if stored_limit:
            raw = json.loads(stored_limit)
            self.import_limit = ImportLimit(
                datetime.fromisoformat(raw["start"]), raw["step_minutes"], tuple(raw["values_kw"])
            )

    def _changed(self) -> None:
        self.settings.dirty = True
        self.revision += 1

    def _state_of(self, asset_id: str) -> str | None:
        machine = self.machines.get(asset_id)
        return machine.state if machine is not None else None

    # -- reading ------------------------------------------------------------------------
    def schedule(self) -> StoredSchedule | None:
        return self.journal.current_schedule()

    def mode(self, now: datetime) -> Mode:
        current = self.schedule()
        if current is None or current.valid_until <= now:
            return Mode.FAILSAFE
        if current.source == "portfolio":
            # past the grace the node plans alone; until a plan of its own is in (however long its
            # plans take, fail or are abandoned) the portfolio's schedule stays in force while valid
            return Mode.PORTFOLIO if self.following_portfolio(now) or self._bridging else Mode.FAILSAFE
        return Mode.LOCAL

    def following_portfolio(self, now: datetime) -> bool:
        """The portfolio's schedule is in force, valid, and the link is up or down for less than the grace."""
        current = self.schedule()
        if current is None or current.source != "portfolio" or current.valid_until <= now:
            return False
        link = self.config.portfolio
        if link is None or self.link.connected:
            return True
        down_since = self.link.down_since or now
        return (now - down_since).total_seconds() < link.grace_seconds

    def status(self) -> NodeStatus:
        now = self.clock.now()
        current = self.schedule()
        result = self.last_plan.result if self.last_plan else None
        return NodeStatus(
            site_id=self.config.site.site_id,
            mode=self.mode(now),
            now=now,
            schedule_version=current.version if current else "",
            schedule_source=current.source if current else "",
            last_optimized_at=self.last_optimized_at,
            open_commands=len(self.engine.open),
            active_sessions=len(self.journal.sessions()),
            last_solve_status=str(result.status) if result else "",
            relaxed=self.last_plan.relaxation.stages if self.last_plan else (),
        )

    def assets(self) -> list[AssetView]:
        site = self.config.site
        held = self.journal.last_setpoints()
        out = [AssetView("grid", "grid", "", site.grid.import_limit_kw or 0.0, site.grid.export_limit_kw or 0.0)]
        if site.battery is not None:
            r = self.ratings[BATTERY_ID]
            setpoint = held.get((BATTERY_ID, CommandType.SET_CHARGE_RATE), 0.0) - held.get(
                (BATTERY_ID, CommandType.SET_DISCHARGE_RATE), 0.0
            )
            out.append(
                AssetView(
                    BATTERY_ID,
                    "battery",
                    self.machines[BATTERY_ID].state,
                    r.max_charge_kw,
                    r.max_discharge_kw,
                    setpoint,
                    self.soc_kwh,
                )
            )
        if site.pv is not None:
            out.append(AssetView("pv", "pv", "", 0.0, 0.0))
        for c in site.chargers:
            out.append(
                AssetView(
                    c.id,
                    "charger",
                    self.machines[c.id].state,
                    c.max_kw,
                    0.0,
                    held.get((c.id, CommandType.SET_CHARGE_RATE), 0.0),
                )
            )
        for f in site.flexible_loads:
            out.append(AssetView(f.id, "flexible_load", "", f.max_kw, 0.0))
        return out

    # -- changing ----------------------------------------------------------------------
    def upsert_session(self, session: EVSession) -> EVSession:
        check_sessions(self.config.site, [session], prefix="session", indexed=False)
        self.journal.upsert_session(session)
        self._next_departure = None
        self._changed()
        return session

    def end_session(self, session_id: str) -> None:
        if not self.journal.end_session(session_id):
            raise NotFound(f"no active session {session_id!r}")
        self._changed()

    def set_objective(self, objective: Objective | None, priorities: Priorities | None) -> tuple[Objective, Priorities]:
        if objective is not None:
            self.settings.objective = objective
        if priorities is not None:
            self.settings.priorities = priorities
        self._changed()
        return self.settings.objective, self.settings.priorities

    def fire(self, asset_id: str, trigger: str) -> StateChange:
        machine = self.machines.get(asset_id)
        if machine is None:
            raise NotFound(f"no asset {asset_id!r} with a state machine")
        change = machine.fire(trigger, at=self.clock.now())
        self.bus.publish(
            EventType.STATE_CHANGED,
            StateChanged(asset_id, change.machine, trigger, change.from_state, change.to_state),
            self.clock.now(),
        )
        if change.to_state in ("FAULTED", "UNAVAILABLE") or change.from_state in ("FAULTED", "UNAVAILABLE"):
            self._changed()
        return change

    def send_command(self, asset_id: str, kind: CommandType, value_kw: float, ttl_seconds: int) -> Command:
        if asset_id not in self.ratings:
            raise NotFound(f"no asset {asset_id!r} takes commands")
        if not 0 < ttl_seconds <= MAX_OVERRIDE_SECONDS:
            raise InvalidInput.one("ttl_seconds", f"must be in 1..{MAX_OVERRIDE_SECONDS}, got {ttl_seconds}")
        if not np.isfinite(value_kw) or value_kw < 0:
            raise InvalidInput.one("value_kw", f"must be a finite number >= 0, got {value_kw}")
        now = self.clock.now()
        command = Command.new(
            f"manual-{now.isoformat()}", asset_id, kind, value_kw, now, expires_at=now + timedelta(seconds=ttl_seconds)
        )
        command = clamp(command, self.ratings[asset_id])
        self.engine.submit([command], now)
        return command

    # -- chargers (the OCPP central system calls these) ---------------------------------
    def charger_status(self, charger_id: str, ocpp_status: str) -> None:
        """Walk the charger's machine to the reported status along legal transitions."""
        machine = self.machines.get(charger_id)
        target = OCPP_TO_STATE.get(ocpp_status)
        if machine is None or target is None:
            log.warning("status %r from %s ignored", ocpp_status, charger_id)
            return
        path = path_to(machine.state, target)
        if path is None:
            log.warning("charger %s: no legal way from %s to %s", charger_id, machine.state, target)
            return
        for trigger in path:
            self.fire(charger_id, trigger)

    def charger_transaction(self, charger_id: str, transaction_id: int | str | None, id_tag: str, at: datetime) -> None:
        """A transaction opens a walk-in session unless the fleet announced one on that
        charger; its end closes the walk-in session. Times are the node's: a charger's
        clock (and the central system's wall clock) may disagree with a simulated one."""
        at = self.clock.now()
        walk_in = f"{charger_id}-tx"
        known = [s for s in self.journal.sessions() if s.charger_id == charger_id and s.arrival <= at < s.departure]
        if transaction_id is None:
            self.charger_power(charger_id, 0.0, at)  # unplugged: it draws nothing until told otherwise
            with contextlib.suppress(NotFound):
                self.end_session(walk_in)
            return
        if any(s.session_id != walk_in for s in known):
            return
        assumed = self.config.plan.walk_in
        charger = self.config.site.charger(charger_id)
        self.upsert_session(
            EVSession(
                session_id=walk_in,
                arrival=at,
                departure=at + timedelta(hours=assumed.stay_hours),
                energy_kwh=assumed.energy_kwh,
                max_kw=charger.max_kw if charger else 22.0,
                priority=assumed.priority,
                charger_id=charger_id,
            )
        )

    def charger_power(self, charger_id: str, kw: float, at: datetime) -> None:
        """A charger's measured power; what it drew since its last report counts towards
        the session on it (on the node's clock: chargers stamp with their own)."""
        now = self.clock.now()
        previous = self._charger_sample.get(charger_id)
        if previous is not None and charger_id not in self._register:  # a charger with a register counts energy itself
            hours = (now - previous[0]).total_seconds() / 3600
            session_id = self._session_on(charger_id, now)
            if 0 < hours <= 1:
                self.ev_energy_kwh += previous[1] * hours
                if session_id is not None:
                    self.delivered_kwh[session_id] = self.delivered_kwh.get(session_id, 0.0) + previous[1] * hours
        self._charger_sample[charger_id] = (now, kw)
        self.charger_kw[charger_id] = kw

    def charger_energy(self, charger_id: str, kwh: float, at: datetime) -> None:
        """A charger's energy register: what it drew since its last reading counts towards the
        session on it (exact, where integrating sampled power is only as good as the samples)."""
        last = self._register.get(charger_id)
        self._register[charger_id] = kwh
        if last is None or kwh < last:  # the first reading, or a meter that was reset
            return
        self.ev_energy_kwh += kwh - last
        session_id = self._session_on(charger_id, self.clock.now())
        if session_id is not None:
            self.delivered_kwh[session_id] = self.delivered_kwh.get(session_id, 0.0) + kwh - last

    def _session_on(self, charger_id: str, at: datetime) -> str | None:
        assigned = self.last_plan.charger_assignment if self.last_plan else {}
        for s in self.journal.sessions():
            if s.arrival <= at < s.departure and (s.charger_id or assigned.get(s.session_id)) == charger_id:
                return s.session_id
        return None

    def record_battery(self, soc_kwh: float, at: datetime) -> None:
        """Measured SOC: the next plan starts from it."""
        self.soc_kwh = soc_kwh

    def battery_state(self) -> str:
        machine = self.machines.get(BATTERY_ID)
        return machine.state if machine is not None else ""

    def observe(self, at: datetime, load_kw: float, pv_kw: float) -> None:
        """Telemetry: what the site drew and made, feeding the forecasts (a week is kept)."""
        history = self.settings.history
        history.loc[pd.Timestamp(at).tz_convert("UTC")] = [load_kw, pv_kw]
        if len(history) > 1 and history.index[-1] < history.index[-2]:
            history = history.sort_index()
        self.settings.history = history.loc[history.index >= history.index[-1] - pd.Timedelta(days=7)]

    # -- planning ----------------------------------------------------------------------
    def inputs(self, now: datetime) -> SiteInputs:
        """The horizon from the current step: run config, forecasts, open sessions, SOC."""
        plan_cfg = self.config.plan
        step = timedelta(minutes=plan_cfg.step_minutes)
        start = pd.Timestamp(now).floor(step)
        index = pd.date_range(start, periods=plan_cfg.horizon_steps, freq=step, name="timestamp")
        history = self.settings.history.loc[self.settings.history.index < start]
        forecast = provider_for(plan_cfg.forecast, plan_cfg.step_minutes).forecast(history, index)
        run = RunConfig(
            horizon=Horizon(
                start=start.to_pydatetime(), step_minutes=plan_cfg.step_minutes, steps=plan_cfg.horizon_steps
            ),
            tariff=plan_cfg.tariff,
            objective=self.settings.objective,
            priorities=self.settings.priorities,
            solver=plan_cfg.solver,
        )
        sessions = [
            s.model_copy(update={"energy_kwh": max(0.0, s.energy_kwh - self.delivered_kwh.get(s.session_id, 0.0))})
            for s in self.journal.sessions()
        ]
        return SiteInputs(run, forecast, sessions, self.soc_kwh)

    def local_problem(self, now: datetime) -> SiteProblem:
        """The site's own problem, held within the portfolio's last import limit if it gave one."""
        return local_problem(self.config.site, self.inputs(now), self.import_limit)

    def optimize(self) -> OptimizeOutcome:
        """Plan and put the plan in force, in the caller's thread: it blocks for the whole
        solve, so never call it on the event loop (the loop plans with `plan()`)."""
        now = self.clock.now()
        return self._apply(solve_local(self.config.site, self._gather(now)), now, "direct")

    def _gather(self, now: datetime) -> PlanInputs:
        """What a plan needs, read on the loop (journal, history, limits), for the worker."""
        self.settings.dirty = False
        self._plan_asked_at = now
        self._keep_delivered()
        limit = self.import_limit
        return PlanInputs(self.inputs(now), limit, self.config.plan.deadline_seconds)

    def plan(self, reason: str) -> asyncio.Task[OptimizeOutcome]:
        """Ask for a plan now, made in the worker thread and put in force on the loop; a plan
        under way is superseded. The task raises `Superseded` or `PlanAbandoned` instead of an
        outcome when it loses to a newer request or to its deadline (then nothing changed)."""
        now = self.clock.now()
        gathered = self._gather(now)
        task = asyncio.create_task(self._plan(gathered, now, reason), name=f"plan-{reason}")
        task.add_done_callback(_log_plan_end)
        self._plan_task = task
        return task

    async def plan_now(self) -> OptimizeOutcome:
        """The Optimize RPC: a plan now, waited for; if a newer request supersedes it, the
        newer plan's outcome. Cancelling the caller does not cancel the plan."""
        task = self.plan("operator")
        while True:
            try:
                return await asyncio.shield(task)
            except Superseded:
                newer = self._plan_task
                if newer is None or newer is task:
                    raise
                task = newer

    async def plans_settled(self) -> None:
        """Wait until no plan is under way (tests, shutdown): its outcome is applied or dropped."""
        while self._plan_task is not None and not self._plan_task.done():
            await asyncio.wait({self._plan_task})

    async def _plan(self, gathered: PlanInputs, asked_at: datetime, reason: str) -> OptimizeOutcome:
        try:
            solved = await self.planner.run(functools.partial(solve_local, self.config.site, gathered), reason)
        except PlanAbandoned as exc:
            # tried again after RETRY_AFTER (`_plan_due`), not at once: a plan that cannot be made in
            # time would otherwise be retried every turn, a core busy for nothing
            self.bus.publish(EventType.PLAN_ABANDONED, PlanAbandonedEvent(reason, exc.seconds), self.clock.now())
            raise
        if reason != "operator" and self.following_portfolio(self.clock.now()):
            # the portfolio's schedule came in while this plan ran: it stays in force
            raise Superseded(f"plan ({reason}) superseded by the portfolio's schedule")
        return self._apply(solved, asked_at, reason)

    def _apply(self, solved: SolvedPlan, now: datetime, reason: str) -> OptimizeOutcome:
        """Put a finished plan in force (on the loop): journal, event, commands."""
        plan_cfg, site = self.config.plan, self.config.site
        step = timedelta(minutes=plan_cfg.step_minutes)
        plan, index = solved.plan, solved.problem.index
        self.last_plan, self.last_optimized_at = plan, now
        if reason in ("operator", "direct"):
            # the operator replaced the portfolio's schedule on purpose: no fallback plan follows
            self._was_following = False
        version = f"local-{now.strftime('%Y%m%dT%H%M%S.%f')}"
        created = 0
        if plan.result.status.has_solution:
            self._bridging = False
            self.journal.save_schedule(version, "local", plan.schedule, now)
            self.bus.publish(
                EventType.SCHEDULE_RECEIVED,
                ScheduleReceived(version, "local", index[0].to_pydatetime(), (index[-1] + step).to_pydatetime()),
                self.clock.now(),
            )
            assets = AssetMap(BATTERY_ID if site.battery is not None else None, plan.charger_assignment)
            commands = commands_from_schedule(plan.schedule, version, assets, self.ratings, self._settled_setpoints())
            created = self.engine.submit(commands, self.clock.now(), replace_from=index[0].to_pydatetime())
        log.info(
            "plan (%s) %s in %.2f s: %d commands",
            reason,
            plan.result.status,
            solved.seconds,
            created,
            extra=logfields.fields(site=site.site_id, schedule_version=version),
        )
        self._report_mode(self.clock.now())  # a plan that ends a failsafe or fallback says so at once
        return OptimizeOutcome(version, plan, solved.total_cost, solved.baseline_total_cost, created)

    def _settled_setpoints(self) -> dict[tuple[str, CommandType], float]:
        """What each device holds, for the assets with no command under way: a new plan
        sends only changes against those. An asset with a command still pending or on the
        wire gets the new plan's first setpoint regardless (that command may land after the
        new plan is computed, and the device would keep its value)."""
        busy = {(c.asset_id, c.type) for c in self.engine.open.values()}
        return {k: v for k, v in self.journal.last_setpoints().items() if k not in busy}

    def _report_mode(self, now: datetime) -> None:
        """A change of mode is a STATE_CHANGED event of the node's own machine, "mode"."""
        mode = self.mode(now)
        if mode is self._mode:
            return
        why = "link up" if self.link.connected else ("link down" if self.config.portfolio is not None else "local")
        self.bus.publish(
            EventType.STATE_CHANGED, StateChanged("node", "mode", why, str(self._mode or ""), str(mode)), now
        )
        current = self.schedule()
        log.info(
            "mode %s -> %s (%s)",
            self._mode,
            mode,
            why,
            extra=logfields.fields(
                site=self.config.site.site_id, schedule_version=current.version if current else None
            ),
        )
        self._mode = mode

    def _failsafe(self, now: datetime) -> None:
        """Chargers at the safe rate, the battery idle: once per failsafe spell."""
        if self._failsafe_since is not None:
            return
        self._failsafe_since = now
        source = f"failsafe-{now.isoformat()}"
        commands = [
            Command.new(
                source, c.id, CommandType.SET_CHARGE_RATE, min(c.max_kw, self.config.node.failsafe_charger_kw), now
            )
            for c in self.config.site.chargers
        ]
        if self.config.site.battery is not None:
            commands += [
                Command.new(source, BATTERY_ID, kind, 0.0, now)
                for kind in (CommandType.SET_CHARGE_RATE, CommandType.SET_DISCHARGE_RATE)
            ]
        self.engine.submit(commands, now, replace_from=now)

    def _plan_due(self, now: datetime, following: bool) -> str | None:
        """Why a plan should start now, or None. Changes supersede a plan under way; the
        period and a fallback from the portfolio wait for it."""
        if following:
            return None  # the portfolio plans; changes reach it in the next snapshot
        asked = self._plan_asked_at
        in_flight = self._plan_task is not None and not self._plan_task.done()
        if self._was_following and not in_flight:
            return "fallback"
        if asked is None and not in_flight:
            return "start"
        if self.settings.dirty:
            return "changed"
        if in_flight or asked is None:
            return None
        period = timedelta(minutes=self.config.plan.reoptimize_minutes)
        if self.last_optimized_at is None or self.last_optimized_at < asked:
            period = min(period, RETRY_AFTER)  # the last attempt failed or was abandoned
        return "period" if now - asked >= period else None

    async def step(self) -> None:
        """One turn of the loop: start a plan when due (it runs in the worker and is put in
        force when done), then dispatch. Never waits for a plan."""
        now = self.clock.now()
        self._close_departed(now)
        following = self.following_portfolio(now)
        reason = self._plan_due(now, following)
        if reason is not None:
            if reason == "fallback":
                log.warning(
                    "portfolio schedule no longer followed (expired or link down past grace): optimizing locally"
                )
            # the first plan after the portfolio's schedule stopped being followed (and any newer
            # plan that supersedes it) keeps that schedule in force until it is in
            self._bridging = self._bridging or (self._was_following and not following)
            self.plan(reason)
        if following:
            self._bridging = False
        self._was_following = following
        if self.config.portfolio is not None:
            self.record_telemetry(now)
        self._report_mode(now)
        if self.mode(now) is Mode.FAILSAFE:
            self._failsafe(now)
        else:
            self._failsafe_since = None
        await self.engine.tick(now)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._tick_real_seconds())
        finally:
            self._stop_planning()

    def _close_departed(self, now: datetime) -> None:
        """Sessions whose EV has left are closed with what they needed and got: a shortfall is
        reported (event, journal, log) even when no plan could say it in time (the node was down
        at the departure), and the journal's open sessions do not grow without end. The journal
        is read only once the next departure is due (or the sessions changed), not every turn."""
        if self._next_departure is not None and now < self._next_departure:
            return
        sessions = self.journal.sessions()
        self._next_departure = min((s.departure for s in sessions if s.departure > now), default=NO_DEPARTURE)
        for s in sessions:
            if s.departure > now:
                continue
            delivered = self.delivered_kwh.pop(s.session_id, 0.0)
            measured = self.config.devices.ocpp is not None
            outcome = SessionOutcome(s.session_id, s.departure, s.energy_kwh, delivered, measured)
            if not self.journal.close_session(outcome):
                continue
            short = outcome.shortfall_kwh
            why = f"short by {short:.2f} kWh" if short > SHORTFALL_REPORT_KWH else ""
            self.bus.publish(EventType.SESSION_CLOSED, SessionClosed(s.session_id, s.energy_kwh, delivered, why), now)
            if why:
                log.warning(
                    "session %s left %s (needed %.2f kWh, delivered %.2f)",
                    s.session_id,
                    why,
                    s.energy_kwh,
                    delivered,
                    extra=logfields.fields(site=self.config.site.site_id),
                )
            self._changed()

    def _tick_real_seconds(self) -> float:
        """The tick in real seconds; never below MIN_TICK_REAL_SECONDS, so a fast simulated
        clock with a short tick does not spin the loop (a core busy for nothing)."""
        return max(MIN_TICK_REAL_SECONDS, self.config.node.tick_seconds / getattr(self.clock, "speed", 1.0))

    def _stop_planning(self) -> None:
        """A plan under way is dropped (nothing of it applied) and the worker thread let go."""
        if self._plan_task is not None and not self._plan_task.done():
            self._plan_task.cancel()
        self.planner.close()

    def close(self) -> None:
        self._stop_planning()
        self.journal.close()

    # -- the portfolio link (services.link_client calls these) ---------------------------
    def link_up(self, now: datetime) -> None:
        self.link = LinkState(True, None)

    def link_down(self, now: datetime) -> None:
        if self.link.connected:
            self.link = LinkState(False, now)

    def apply_portfolio_schedule(
        self,
        version: str,
        frame: pd.DataFrame,
        valid_until: datetime,
        assignment: dict[str, str],
        import_limit: ImportLimit | None,
    ) -> None:
        """Check a schedule from the portfolio and put it in force; InvalidInput (nothing
        changed) when it does not fit this site."""
        now = self.clock.now()
        held = self.schedule()
        if held is not None and held.version == version and held.source == "portfolio":
            return  # a resend after reconnect: already in force
        check_portfolio_schedule(
            self.config, frame, valid_until, assignment, {s.session_id for s in self.journal.sessions()}, now
        )
        if import_limit is not None:
            self.journal.put_setting(
                "portfolio_import_limit",
                json.dumps(
                    {
                        "start": import_limit.start.isoformat(),
                        "step_minutes": import_limit.step_minutes,
                        "values_kw": list(import_limit.values_kw),
                    }
                ),
            )
            self.import_limit = import_limit
        frame = frame.loc[frame.index < pd.Timestamp(valid_until)]
        self.journal.save_schedule(version, "portfolio", frame, now)
        step = (
            frame.index[1] - frame.index[0] if len(frame) > 1 else pd.Timedelta(minutes=self.config.plan.step_minutes)
        )
        self.bus.publish(
            EventType.SCHEDULE_RECEIVED,
            ScheduleReceived(
                version, "portfolio", frame.index[0].to_pydatetime(), (frame.index[-1] + step).to_pydatetime()
            ),
            now,
        )
        site = self.config.site
        assets = AssetMap(BATTERY_ID if site.battery is not None else None, assignment)
        commands = commands_from_schedule(frame, version, assets, self.ratings, self._settled_setpoints())
        self.engine.submit(commands, now, replace_from=frame.index[0].to_pydatetime())
        self.settings.dirty = False

    def record_telemetry(self, now: datetime) -> TelemetryPoint | None:
        """One numbered point per telemetry period: the schedule's current step, with what
        devices measured where they report it."""
        period = self.config.portfolio.telemetry_seconds if self.config.portfolio else 60.0
        # samples fall mid-period (periods aligned to the epoch, so to the steps too): never on a
        # step boundary, where setpoints are changing and a reading may still show the last step
        slot = np.floor((now.timestamp() - period / 2) / period)
        if self._last_telemetry_at is not None and slot <= np.floor(
            (self._last_telemetry_at.timestamp() - period / 2) / period
        ):
            return None
        self._last_telemetry_at = now
        point = self.flows(now)
        self.journal.put_setting("ev_energy_kwh", repr(self.ev_energy_kwh))
        self._keep_delivered()
        return self.journal.append_telemetry(point)

    def _keep_delivered(self) -> None:
        active = {s.session_id for s in self.journal.sessions()}
        self.delivered_kwh = {k: v for k, v in self.delivered_kwh.items() if k in active}
        self.journal.put_setting("delivered_kwh", json.dumps(self.delivered_kwh, sort_keys=True))

    def flows(self, now: datetime) -> TelemetryPoint:
        """The site's flows now (unnumbered): the schedule's current step, with what devices
        measured where they report it."""
        current = self.journal.schedule_at(now)
        row: dict[str, float] = {}
        ev_cols: list[str] = []
        flex_cols: list[str] = []
        if current is not None:
            at = current.frame.index.searchsorted(pd.Timestamp(now), side="right") - 1
            if at >= 0:
                row = {str(k): float(v) for k, v in current.frame.iloc[at].items() if np.isfinite(v)}
                ev_cols, flex_cols = ev_columns(current.frame), flex_columns(current.frame)
        planned_ev = sum(row.get(c, 0.0) for c in ev_cols)
        ev = sum(self.charger_kw.values()) if self.charger_kw else planned_ev
        grid_import, grid_export = row.get(GRID_IMPORT, 0.0), row.get(GRID_EXPORT, 0.0)
        if self.charger_kw and row:
            # chargers report what they draw: the grid takes the difference from the plan
            net = grid_import - grid_export + ev - planned_ev
            grid_import, grid_export = max(net, 0.0), max(-net, 0.0)
        return TelemetryPoint(
            at=now,
            grid_import_kw=grid_import,
            grid_export_kw=grid_export,
            load_kw=row.get(LOAD, 0.0),
            pv_kw=row.get(PV, 0.0),
            battery_charge_kw=row.get(CHARGE, 0.0),
            battery_discharge_kw=row.get(DISCHARGE, 0.0),
            soc_kwh=self.soc_kwh if self.config.devices.battery is not None else row.get(SOC, self.soc_kwh),
            ev_kw=float(ev),
            flex_kw=sum(row.get(c, 0.0) for c in flex_cols),
            mode=str(self.mode(now)),
            ev_energy_kwh=self.ev_energy_kwh,
        )


MIN_TICK_REAL_SECONDS = 0.01
NO_DEPARTURE = datetime.max.replace(tzinfo=UTC)  # no open session: nothing to close until one comes
SHORTFALL_REPORT_KWH = 0.01  # a session closed this far below its need reports a shortfall
RETRY_AFTER = timedelta(minutes=1)  # after a plan failed or was abandoned, on the node's clock


@dataclass(frozen=True, eq=False)
class PlanInputs:
    """A plan's inputs as the loop read them: the worker touches nothing else of the node."""

    site: SiteInputs
    import_limit: ImportLimit | None
    deadline_seconds: float


@dataclass(frozen=True, eq=False)
class SolvedPlan:
    problem: SiteProblem
    plan: Plan
    total_cost: float
    baseline_total_cost: float
    seconds: float


def local_problem(site: SiteConfig, got: SiteInputs, import_limit: ImportLimit | None) -> SiteProblem:
    problem = build_problem(
        site, got.run, got.forecast, got.sessions, soc_initial_kwh=got.soc_kwh, reachable_final_soc=True
    )
    if import_limit is not None:
        problem = dataclasses.replace(
            problem, import_limit_kw=np.minimum(problem.import_limit_kw, import_limit.over(problem.index))
        )
    return problem


def solve_local(site: SiteConfig, gathered: PlanInputs) -> SolvedPlan:
    """The worker's part of a plan: pure, no journal, no loop. The MIP's time limit is held
    within the plan's deadline, so a plan given up there does not hold the worker much longer."""
    started = time.monotonic()
    got = gathered.site
    solver = got.run.solver
    if solver.time_limit_seconds > gathered.deadline_seconds:
        solver = solver.model_copy(update={"time_limit_seconds": gathered.deadline_seconds})
        got = dataclasses.replace(got, run=got.run.model_copy(update={"solver": solver}))
    problem = local_problem(site, got, gathered.import_limit)
    plan = optimize_site(problem)
    baseline = compute_metrics(problem, business_as_usual(problem)).total_cost
    total = compute_metrics(problem, plan.schedule).total_cost if plan.result.status.has_solution else float("nan")
    return SolvedPlan(problem, plan, total, baseline, time.monotonic() - started)


def _log_plan_end(task: asyncio.Task[OptimizeOutcome]) -> None:
    """A background plan's end: what went wrong is logged here, since nobody awaits it."""
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, Superseded):
        log.debug("%s", exc)
    elif isinstance(exc, PlanAbandoned):
        log.warning("%s; the schedule in force stays", exc)
    elif exc is not None:
        log.error("plan failed; the schedule in force stays", exc_info=exc)


def check_portfolio_schedule(
    config: NodeConfig,
    frame: pd.DataFrame,
    valid_until: datetime,
    assignment: dict[str, str],
    session_ids: set[str],
    now: datetime,
) -> None:
    """Everything a node checks before it follows a schedule it did not make."""
    site, step = config.site, pd.Timedelta(minutes=config.plan.step_minutes)
    if len(frame) == 0:
        raise InvalidInput.one("schedule.columns", "has no steps")
    if valid_until <= now:
        raise InvalidInput.one(
            "schedule.valid_until", f"already passed ({valid_until.isoformat()} <= {now.isoformat()})"
        )
    if len(frame) > 1 and (np.diff(frame.index.to_numpy()) != step.to_timedelta64()).any():
        raise InvalidInput.one("schedule.step_minutes", f"must be the node's {config.plan.step_minutes} min")
    allowed = set(FIXED) | {flex_column(f.id) for f in site.flexible_loads} | {ev_column(s) for s in session_ids}
    for col in frame.columns:
        if col not in allowed:
            raise InvalidInput.one(f"schedule.columns.{col}", "is not a column of this site (unknown session or asset)")
        values = frame[col].to_numpy(dtype=float)
        if not np.isfinite(values).all() or (values < -1e-6).any():
            raise InvalidInput.one(f"schedule.columns.{col}", "must hold finite values >= 0")
    b = site.battery
    if b is None and any(c in frame.columns and (frame[c] > 1e-6).any() for c in (CHARGE, DISCHARGE)):
        raise InvalidInput.one("schedule.columns.battery_charge_kw", "the site has no battery")
    chargers = {c.id for c in site.chargers}
    for session_id, charger_id in assignment.items():
        if charger_id not in chargers:
            raise InvalidInput.one(
                f"schedule.charger_assignment.{session_id}", f"names no charger of this site: {charger_id!r}"
            )
