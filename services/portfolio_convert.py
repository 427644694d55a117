"""Proto messages of portfolio.proto <-> the portfolio's domain types (both directions)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import numpy as np
import pandas as pd
import pydantic

from portfolio.model import Feeder, FlexEvent, FlexKind, SiteSettings
from portfolio.outcome import RunningDay
from portfolio.report import SolveReport
from portfolio.snapshot import SiteSnapshot
from services.convert import from_ts, objective_in, session_in, session_out, ts
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, sitenode_pb2
from sitenode.dispatch.commands import Command, CommandState, CommandType
from sitenode.errors import InvalidInput
from sitenode.model.run import RunConfig
from sitenode.model.site import SiteConfig
from sitenode.model.validation import parse
from sitenode.runtime import ImportLimit, SiteInputs
from sitenode.telemetry import TelemetryPoint

_M = TypeVar("_M", bound=pydantic.BaseModel)

LINK_MODE = {
    "PORTFOLIO": portfolio_pb2.NODE_LINK_MODE_PORTFOLIO,
    "LOCAL": portfolio_pb2.NODE_LINK_MODE_LOCAL,
    "FAILSAFE": portfolio_pb2.NODE_LINK_MODE_FAILSAFE,
}
LINK_MODE_NAME = {v: k for k, v in LINK_MODE.items()}
FLEX_KIND = {FlexKind.REDUCE_BY: portfolio_pb2.FLEX_KIND_REDUCE_BY, FlexKind.CAP_AT: portfolio_pb2.FLEX_KIND_CAP_AT}
FLEX_KIND_IN = {v: k for k, v in FLEX_KIND.items()}


def series(start: datetime, step_minutes: int, values: np.ndarray | list[float]) -> common_pb2.TimeSeries:
    return common_pb2.TimeSeries(start=ts(start), step_minutes=step_minutes, values=[float(v) for v in values])


def _frame_of(columns: dict[str, common_pb2.TimeSeries], field: str) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    for name, s in columns.items():
        if s.step_minutes <= 0:
            raise InvalidInput.one(f"{field}.{name}.step_minutes", f"must be > 0, got {s.step_minutes}")
        index = pd.date_range(from_ts(s.start), periods=len(s.values), freq=f"{s.step_minutes}min", name="timestamp")
        out[name] = pd.Series(list(s.values), index=index, dtype=float)
    return pd.DataFrame(out)


# ---- snapshots ------------------------------------------------------------------------
def snapshot_out(site: SiteConfig, inputs: SiteInputs, taken_at: datetime) -> common_pb2.SiteSnapshot:
    h = inputs.run.horizon
    frame = inputs.forecast
    extra = {
        c: series(h.start, h.step_minutes, frame[c].to_numpy()) for c in frame.columns if c not in ("load_kw", "pv_kw")
    }
    msg = common_pb2.SiteSnapshot(
        site_id=site.site_id,
        taken_at=ts(taken_at),
        sessions=[session_out(s) for s in inputs.sessions],
        soc_kwh=inputs.soc_kwh,
        site_config_json=site.model_dump_json(exclude_none=True),
        run_config_json=inputs.run.model_dump_json(exclude_none=True),
        series=extra,
    )
    if "load_kw" in frame:
        msg.load_forecast_kw.CopyFrom(series(h.start, h.step_minutes, frame["load_kw"].to_numpy()))
    if "pv_kw" in frame:
        msg.pv_forecast_kw.CopyFrom(series(h.start, h.step_minutes, frame["pv_kw"].to_numpy()))
    return msg


def _json(model: type[_M], text: str, field: str) -> _M:
    try:
        data = pydantic.TypeAdapter(dict).validate_json(text)
    except pydantic.ValidationError:
        raise InvalidInput.one(field, "is not a JSON object") from None
    return parse(model, data, field)


def snapshot_in(msg: common_pb2.SiteSnapshot) -> SiteSnapshot:
    """Validated: field paths under `snapshot.`; nothing is kept when anything is wrong."""
    site = _json(SiteConfig, msg.site_config_json, "snapshot.site_config_json")
    run = _json(RunConfig, msg.run_config_json, "snapshot.run_config_json")
    columns = dict(msg.series)
    if msg.HasField("load_forecast_kw"):
        columns["load_kw"] = msg.load_forecast_kw
    if msg.HasField("pv_forecast_kw"):
        columns["pv_kw"] = msg.pv_forecast_kw
    frame = _frame_of(columns, "snapshot.series")
    sessions = tuple(session_in(s) for s in msg.sessions)
    if not math.isfinite(msg.soc_kwh) or msg.soc_kwh < 0:
        raise InvalidInput.one("snapshot.soc_kwh", f"must be a finite number >= 0, got {msg.soc_kwh}")
    taken = from_ts(msg.taken_at) if msg.HasField("taken_at") else run.horizon.start
    return SiteSnapshot(msg.site_id or site.site_id, taken, site, run, frame, sessions, msg.soc_kwh)


# ---- telemetry ------------------------------------------------------------------------
def telemetry_out(p: TelemetryPoint) -> portfolio_pb2.TelemetryPoint:
    return portfolio_pb2.TelemetryPoint(
        seq=p.seq,
        at=ts(p.at),
        grid_import_kw=p.grid_import_kw,
        grid_export_kw=p.grid_export_kw,
        load_kw=p.load_kw,
        pv_kw=p.pv_kw,
        battery_charge_kw=p.battery_charge_kw,
        battery_discharge_kw=p.battery_discharge_kw,
        soc_kwh=p.soc_kwh,
        ev_kw=p.ev_kw,
        flex_kw=p.flex_kw,
        mode=LINK_MODE.get(p.mode, portfolio_pb2.NODE_LINK_MODE_UNSPECIFIED),
        ev_energy_kwh=p.ev_energy_kwh,
    )


def telemetry_in(p: portfolio_pb2.TelemetryPoint) -> TelemetryPoint:
    """A stored point back as the node recorded it (what portfolio.outcome reads)."""
    return TelemetryPoint(
        from_ts(p.at),
        p.grid_import_kw,
        p.grid_export_kw,
        p.load_kw,
        p.pv_kw,
        p.battery_charge_kw,
        p.battery_discharge_kw,
        p.soc_kwh,
        p.ev_kw,
        p.flex_kw,
        LINK_MODE_NAME.get(p.mode, ""),
        p.seq,
        p.ev_energy_kwh,
    )


def check_telemetry(p: portfolio_pb2.TelemetryPoint, index: int) -> None:
    field = f"telemetry.points[{index}]"
    if p.seq <= 0:
        raise InvalidInput.one(f"{field}.seq", f"must be > 0, got {p.seq}")
    from_ts(p.at, f"{field}.at")  # stored later, off the stream: a bad one would fail every write after it
    for name in (
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
    ):
        value = getattr(p, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidInput.one(f"{field}.{name}", f"must be a finite number >= 0, got {value}")


# ---- dispatch commands, as a node reports them ------------------------------------------
MAX_COMMANDS = 50  # per site: what a node sends and what the portfolio keeps
_COMMAND_TYPES = frozenset(str(k) for k in CommandType)
_COMMAND_STATES = frozenset(str(s) for s in CommandState)
_MAX_TEXT = {"command_id": 128, "asset_id": 128, "source": 256}
_MAX_ERROR = 1000  # a longer last_error is cut, not refused


def command_out(c: Command) -> portfolio_pb2.CommandStatus:
    value = c.value_kw if c.value_kw is not None and math.isfinite(c.value_kw) else 0.0
    return portfolio_pb2.CommandStatus(
        command_id=c.id,
        asset_id=c.asset_id,
        type=str(c.type),
        value_kw=value,
        due_at=ts(c.due_at),
        state=str(c.state),
        attempts=c.attempts,
        last_error=c.last_error[:_MAX_ERROR],
        source=c.source,
    )


def commands_in(report: portfolio_pb2.CommandReport) -> list[portfolio_pb2.CommandStatus]:
    """A node's report checked (InvalidInput names the field; nothing is kept then): the
    `MAX_COMMANDS` due last, newest first, each last_error cut to a bounded length."""
    out = []
    for i, c in enumerate(report.commands):
        field = f"commands.commands[{i}]"
        for name, limit in _MAX_TEXT.items():
            value = getattr(c, name)
            if not value and name != "source":
                raise InvalidInput.one(f"{field}.{name}", "is required")
            if len(value) > limit:
                raise InvalidInput.one(f"{field}.{name}", f"must be at most {limit} characters, got {len(value)}")
        if c.type not in _COMMAND_TYPES:
            raise InvalidInput.one(
                f"{field}.type", f"must be one of {', '.join(sorted(_COMMAND_TYPES))}, got {c.type[:40]!r}"
            )
        if c.state not in _COMMAND_STATES:
            raise InvalidInput.one(
                f"{field}.state", f"must be one of {', '.join(sorted(_COMMAND_STATES))}, got {c.state[:40]!r}"
            )
        if not math.isfinite(c.value_kw):
            raise InvalidInput.one(f"{field}.value_kw", f"must be a finite number, got {c.value_kw}")
        if not c.HasField("due_at"):
            raise InvalidInput.one(f"{field}.due_at", "is required")
        if c.attempts < 0:
            raise InvalidInput.one(f"{field}.attempts", f"must be >= 0, got {c.attempts}")
        kept = portfolio_pb2.CommandStatus()
        kept.CopyFrom(c)
        kept.last_error = c.last_error[:_MAX_ERROR]
        out.append(kept)
    out.sort(key=lambda c: (c.due_at.seconds, c.due_at.nanos, c.command_id), reverse=True)
    return out[:MAX_COMMANDS]


# ---- schedules ------------------------------------------------------------------------
def setpoint_schedule(
    version: str,
    frame: pd.DataFrame,
    step_minutes: int,
    valid_until: datetime,
    assignment: dict[str, str],
    limit: np.ndarray,
) -> portfolio_pb2.SetpointSchedule:
    encoder = SetpointEncoder(version, frame.index[0].to_pydatetime(), step_minutes, valid_until)
    return encoder.message([str(c) for c in frame.columns], frame.to_numpy(dtype=float), assignment, limit).schedule


def schedule_body(columns: Sequence[str], values: np.ndarray, assignment: Mapping[str, str]) -> bytes:
    """A site's schedule columns (`values`: steps x columns) and charger assignment as the bytes
    of a SetpointSchedule holding only those; `SetpointEncoder.from_body` adds what every site of
    a solve shares. The decomposition's workers call it where each site's plan is made, so the
    portfolio's event loop only joins bytes (a tenth of the cost of building the message there)."""
    return portfolio_pb2.SetpointSchedule(
        schedule=common_pb2.Schedule(
            columns=[
                common_pb2.ScheduleColumn(name=name, values=column)
                for name, column in zip(columns, np.asarray(values, dtype=float).T.tolist(), strict=True)
            ],
            charger_assignment=dict(assignment),
        )
    ).SerializeToString()


class SetpointEncoder:
    """The SetpointSchedules of one solve, as PortfolioMessages: every site's shares the version,
    start, step and validity, so those are serialized once and each site adds only its columns,
    charger assignment and import limit (a thousand sites at a time: no pandas, no per-site
    timestamps). The parts are joined as bytes: a message field given twice is merged when
    parsed, so template + site body + limit parse as the one SetpointSchedule."""

    def __init__(self, version: str, start: datetime, step_minutes: int, valid_until: datetime) -> None:
        begins = ts(start)
        self._template = portfolio_pb2.SetpointSchedule(
            schedule=common_pb2.Schedule(
                version=version,
                source="portfolio",
                start=begins,
                step_minutes=step_minutes,
                valid_from=begins,
                valid_until=ts(valid_until),
            ),
            import_limit_kw=common_pb2.TimeSeries(start=begins, step_minutes=step_minutes),
        ).SerializeToString()

    def message(
        self, columns: list[str], values: np.ndarray, assignment: dict[str, str], limit: np.ndarray
    ) -> portfolio_pb2.PortfolioMessage:
        """`values`: steps x columns, floats."""
        return self.from_body(schedule_body(columns, values, assignment), limit)[0]

    def from_body(self, body: bytes, limit: np.ndarray) -> tuple[portfolio_pb2.PortfolioMessage, bytes]:
        """A site's message from its `schedule_body` and import limit, and the SetpointSchedule's
        bytes (for the store)."""
        # inf (no limit) travels as a large number: protobuf doubles carry inf, but JSON views of it do not
        limit = np.asarray(limit, dtype=float)
        payload = (
            self._template
            + body
            + portfolio_pb2.SetpointSchedule(
                import_limit_kw=common_pb2.TimeSeries(values=np.where(np.isfinite(limit), limit, 1e9).tolist())
            ).SerializeToString()
        )
        out = portfolio_pb2.PortfolioMessage()
        out.schedule.MergeFromString(payload)
        return out, payload


def import_limit_in(msg: portfolio_pb2.SetpointSchedule) -> ImportLimit | None:
    s = msg.import_limit_kw
    if not s.values:
        return None
    values = np.asarray(s.values, dtype=float)
    if not np.isfinite(values).all() or (values < 0).any():
        raise InvalidInput.one("import_limit_kw.values", "must hold finite values >= 0")
    if s.step_minutes <= 0:
        raise InvalidInput.one("import_limit_kw.step_minutes", f"must be > 0, got {s.step_minutes}")
    return ImportLimit(from_ts(s.start), s.step_minutes, tuple(np.where(values >= 1e9, np.inf, values).tolist()))


# ---- operator objects -----------------------------------------------------------------
def feeder_in(msg: portfolio_pb2.Feeder) -> Feeder:
    data: dict = {"feeder_id": msg.feeder_id, "site_ids": list(msg.site_ids), "description": msg.description}
    if msg.HasField("cap_kw"):
        data["cap_kw"] = msg.cap_kw
    if msg.caps_kw:
        data["caps_kw"] = list(msg.caps_kw)
    return parse(Feeder, data, "feeder")


def feeder_out(f: Feeder) -> portfolio_pb2.Feeder:
    out = portfolio_pb2.Feeder(
        feeder_id=f.feeder_id, site_ids=f.site_ids, caps_kw=f.caps_kw or [], description=f.description
    )
    if f.cap_kw is not None:
        out.cap_kw = f.cap_kw
    return out


def event_in(msg: portfolio_pb2.FlexEvent) -> FlexEvent:
    data: dict = {"event_id": msg.event_id, "kw": msg.kw, "site_ids": list(msg.site_ids)}
    if msg.kind not in FLEX_KIND_IN:
        raise InvalidInput.one("event.kind", "must be FLEX_KIND_REDUCE_BY or FLEX_KIND_CAP_AT")
    data["kind"] = FLEX_KIND_IN[msg.kind]
    for name in ("start", "end"):
        if not msg.HasField(name):
            raise InvalidInput.one(f"event.{name}", "is required")
        data[name] = from_ts(getattr(msg, name))
    return parse(FlexEvent, data, "event")


def event_out(e: FlexEvent) -> portfolio_pb2.FlexEvent:
    return portfolio_pb2.FlexEvent(
        event_id=e.event_id,
        kind=FLEX_KIND[e.kind],
        kw=e.kw,
        start=ts(e.start),
        end=ts(e.end),
        site_ids=e.site_ids,
        state=str(e.state),
    )


def report_out(r: SolveReport) -> portfolio_pb2.SolveReport:
    return portfolio_pb2.SolveReport(
        solve_id=r.solve_id,
        at=ts(r.at),
        trigger=r.trigger,
        status=r.status,
        method=r.method,
        objective=r.objective,
        alone_objective=r.alone_objective,
        coupling_cost=r.coupling_cost,
        bound=r.bound,
        gap=r.gap,
        iterations=r.iterations,
        seconds=r.seconds,
        relaxed=list(r.relaxed),
        all_hold=r.all_hold,
        horizon_start=ts(r.horizon_start),
        step_minutes=r.step_minutes,
        steps=r.steps,
        peak_kw=r.peak_kw,
        peak_charge=r.peak_charge,
        solved_at=ts(r.solved_at),
        sites=[
            portfolio_pb2.SiteCost(site_id=s.site_id, alone_cost=s.alone_cost, coupled_cost=s.coupled_cost)
            for s in r.sites
        ],
        feeders=[
            portfolio_pb2.FeederCheck(
                feeder_id=f.feeder_id,
                holds=f.holds,
                max_excess_kw=f.max_excess_kw,
                binding_steps=f.binding_steps,
                reserved_kw=f.reserved_kw,
            )
            for f in r.feeders
        ],
        events=[
            portfolio_pb2.EventCheck(event_id=e.event_id, holds=e.holds, worst_shortfall_kw=e.worst_shortfall_kw)
            for e in r.events
        ],
    )


# ---- today's account of a site -----------------------------------------------------------
def site_day_out(day: RunningDay, currency: str) -> portfolio_pb2.SiteDay:
    out = portfolio_pb2.SiteDay(since=ts(day.since), currency=currency, steps=day.steps)
    if day.realized is not None:
        o = day.realized.outcome
        out.currency, out.cost, out.bau_cost, out.ev_delivered_kwh = o.currency, o.cost, o.bau_cost, o.ev_delivered_kwh
        out.peak_import_kw, out.bau_peak_import_kw = o.peak_import_kw, o.bau_peak_import_kw
    return out


# ---- site settings ----------------------------------------------------------------------
def settings_in(msg: portfolio_pb2.SetSiteSettingsRequest | portfolio_pb2.SiteSettings) -> SiteSettings:
    """Validated (fields under `weights.` and `priorities.`); unset parts stay unset."""
    weights, priorities = objective_in(msg)
    return SiteSettings(weights=weights, priorities=priorities)


def settings_out(s: SiteSettings) -> portfolio_pb2.SiteSettings:
    out = portfolio_pb2.SiteSettings()
    if s.weights is not None:
        out.weights.CopyFrom(
            sitenode_pb2.ObjectiveWeights(cost=s.weights.cost, carbon=s.weights.carbon, peak=s.weights.peak)
        )
    if s.priorities is not None:
        out.priorities.CopyFrom(sitenode_pb2.Priorities(**s.priorities.model_dump()))
    if s.updated_at is not None:
        out.updated_at.CopyFrom(ts(s.updated_at))
    return out
