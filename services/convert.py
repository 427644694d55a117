"""Proto messages <-> gridmesh's domain types. Servicers translate here and nowhere else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, overload

import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp

from services.stubs.gridmesh.v1 import common_pb2, sitenode_pb2
from sitenode.dispatch import CommandType
from sitenode.errors import InvalidInput
from sitenode.events import CommandEvent, Event, ScheduleReceived
from sitenode.journal import StoredSchedule
from sitenode.model.run import Objective, Priorities
from sitenode.model.sessions import EVSession
from sitenode.model.validation import parse
from sitenode.runtime import AssetView, Mode, NodeStatus

KIND = {
    "grid": common_pb2.ASSET_KIND_GRID,
    "battery": common_pb2.ASSET_KIND_BATTERY,
    "pv": common_pb2.ASSET_KIND_PV,
    "charger": common_pb2.ASSET_KIND_CHARGER,
    "flexible_load": common_pb2.ASSET_KIND_FLEXIBLE_LOAD,
}
MODE = {
    Mode.LOCAL: sitenode_pb2.NODE_MODE_LOCAL,
    Mode.PORTFOLIO: sitenode_pb2.NODE_MODE_PORTFOLIO,
    Mode.FAILSAFE: sitenode_pb2.NODE_MODE_FAILSAFE,
}
COMMAND = {
    sitenode_pb2.COMMAND_TYPE_SET_CHARGE_RATE: CommandType.SET_CHARGE_RATE,
    sitenode_pb2.COMMAND_TYPE_SET_DISCHARGE_RATE: CommandType.SET_DISCHARGE_RATE,
    sitenode_pb2.COMMAND_TYPE_START_CHARGING: CommandType.START_CHARGING,
    sitenode_pb2.COMMAND_TYPE_STOP_CHARGING: CommandType.STOP_CHARGING,
    sitenode_pb2.COMMAND_TYPE_CHANGE_AVAILABILITY: CommandType.CHANGE_AVAILABILITY,
}


@overload
def ts(value: datetime) -> Timestamp: ...
@overload
def ts(value: None) -> None: ...
def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


def from_ts(value: Timestamp, field: str = "timestamp") -> datetime:
    """InvalidInput naming `field` for a timestamp no datetime can hold (seconds past year 9999, bad nanos)."""
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput.one(field, f"must be a valid timestamp: {exc}") from None


def schedule(stored: StoredSchedule, assignment: dict[str, str] | None = None) -> common_pb2.Schedule:
    frame = stored.frame
    step = int((frame.index[1] - frame.index[0]).total_seconds() // 60) if len(frame) > 1 else 0
    return common_pb2.Schedule(
        version=stored.version,
        source=stored.source,
        start=ts(frame.index[0].to_pydatetime()),
        step_minutes=step,
        columns=[common_pb2.ScheduleColumn(name=c, values=frame[c].tolist()) for c in frame.columns],
        valid_from=ts(stored.valid_from),
        valid_until=ts(stored.valid_until),
        charger_assignment=assignment or {},
    )


def schedule_frame(message: common_pb2.Schedule) -> pd.DataFrame:
    index = pd.date_range(
        from_ts(message.start),
        periods=len(message.columns[0].values) if message.columns else 0,
        freq=f"{message.step_minutes}min",
        name="timestamp",
    )
    return pd.DataFrame({c.name: list(c.values) for c in message.columns}, index=index)


def status(s: NodeStatus) -> sitenode_pb2.GetStatusResponse:
    return sitenode_pb2.GetStatusResponse(
        site_id=s.site_id,
        mode=MODE[s.mode],
        schedule_version=s.schedule_version,
        schedule_source=s.schedule_source,
        now=ts(s.now),
        last_optimized_at=ts(s.last_optimized_at),
        open_commands=s.open_commands,
        active_sessions=s.active_sessions,
        last_solve_status=s.last_solve_status,
        relaxed=list(s.relaxed),
    )


def asset(a: AssetView) -> common_pb2.Asset:
    return common_pb2.Asset(
        asset_id=a.asset_id,
        kind=KIND[a.kind],
        state=str(a.state),
        max_charge_kw=a.max_charge_kw,
        max_discharge_kw=a.max_discharge_kw,
        setpoint_kw=a.setpoint_kw,
        soc_kwh=a.soc_kwh,
    )


def session_in(message: common_pb2.EVSession) -> EVSession:
    """Validated with paths under `session.` (INVALID_ARGUMENT names the field)."""
    data = {
        "session_id": message.session_id,
        "arrival": from_ts(message.arrival, "session.arrival") if message.HasField("arrival") else None,
        "departure": from_ts(message.departure, "session.departure") if message.HasField("departure") else None,
        "energy_kwh": message.energy_kwh,
        "max_kw": message.max_kw,
        "priority": message.priority or 1,
    }
    if message.charger_id:
        data["charger_id"] = message.charger_id
    return parse(EVSession, {k: v for k, v in data.items() if v is not None}, "session")


def session_out(s: EVSession) -> common_pb2.EVSession:
    return common_pb2.EVSession(
        session_id=s.session_id,
        arrival=ts(s.arrival),
        departure=ts(s.departure),
        energy_kwh=s.energy_kwh,
        max_kw=s.max_kw,
        priority=s.priority,
        charger_id=s.charger_id or "",
    )


class ObjectiveFields(Protocol):
    """A message with optional `weights` and `priorities`: SetObjectiveRequest, and the
    portfolio's SetSiteSettingsRequest and SiteSettings."""

    @property
    def weights(self) -> sitenode_pb2.ObjectiveWeights: ...
    @property
    def priorities(self) -> sitenode_pb2.Priorities: ...
    def HasField(self, field_name: str) -> bool: ...


def objective_in(request: ObjectiveFields) -> tuple[Objective | None, Priorities | None]:
    weights = (
        parse(
            Objective,
            {"cost": request.weights.cost, "carbon": request.weights.carbon, "peak": request.weights.peak},
            "weights",
        )
        if request.HasField("weights")
        else None
    )
    p = request.priorities
    priorities = (
        parse(
            Priorities,
            {"fleet": p.fleet, "facility": p.facility, "battery": p.battery, "mining": p.mining, "export": p.export},
            "priorities",
        )
        if request.HasField("priorities")
        else None
    )
    return weights, priorities


def objective_out(weights: Objective, priorities: Priorities) -> sitenode_pb2.SetObjectiveResponse:
    return sitenode_pb2.SetObjectiveResponse(
        weights=sitenode_pb2.ObjectiveWeights(cost=weights.cost, carbon=weights.carbon, peak=weights.peak),
        priorities=sitenode_pb2.Priorities(**priorities.model_dump()),
    )


def event(e: Event) -> sitenode_pb2.WatchEventsResponse:
    out = sitenode_pb2.WatchEventsResponse(type=str(e.type), seq=e.seq, at=ts(e.at))
    p = e.payload
    for name, field_name in (
        ("asset_id", "asset_id"),
        ("command_id", "command_id"),
        ("command_type", "command_type"),
        ("attempts", "attempts"),
        ("reason", "reason"),
        ("machine", "machine"),
        ("trigger", "trigger"),
        ("from_state", "from_state"),
        ("to_state", "to_state"),
    ):
        if hasattr(p, name):
            setattr(out, field_name, getattr(p, name))
    if isinstance(p, CommandEvent) and p.value_kw is not None:
        out.value_kw = p.value_kw
    if isinstance(p, ScheduleReceived):
        out.schedule_version, out.schedule_source = p.version, p.source
    return out
