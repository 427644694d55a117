import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from services.stubs.gridmesh.v1 import common_pb2 as _common_pb2
from services.stubs.gridmesh.v1 import sitenode_pb2 as _sitenode_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeLinkMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_LINK_MODE_UNSPECIFIED: _ClassVar[NodeLinkMode]
    NODE_LINK_MODE_PORTFOLIO: _ClassVar[NodeLinkMode]
    NODE_LINK_MODE_LOCAL: _ClassVar[NodeLinkMode]
    NODE_LINK_MODE_FAILSAFE: _ClassVar[NodeLinkMode]

class FlexKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLEX_KIND_UNSPECIFIED: _ClassVar[FlexKind]
    FLEX_KIND_REDUCE_BY: _ClassVar[FlexKind]
    FLEX_KIND_CAP_AT: _ClassVar[FlexKind]
NODE_LINK_MODE_UNSPECIFIED: NodeLinkMode
NODE_LINK_MODE_PORTFOLIO: NodeLinkMode
NODE_LINK_MODE_LOCAL: NodeLinkMode
NODE_LINK_MODE_FAILSAFE: NodeLinkMode
FLEX_KIND_UNSPECIFIED: FlexKind
FLEX_KIND_REDUCE_BY: FlexKind
FLEX_KIND_CAP_AT: FlexKind

class NodeMessage(_message.Message):
    __slots__ = ("hello", "snapshot", "telemetry", "ack", "ping", "pong", "commands")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    snapshot: _common_pb2.SiteSnapshot
    telemetry: TelemetryBatch
    ack: ScheduleAck
    ping: Ping
    pong: Pong
    commands: CommandReport
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., snapshot: _Optional[_Union[_common_pb2.SiteSnapshot, _Mapping]] = ..., telemetry: _Optional[_Union[TelemetryBatch, _Mapping]] = ..., ack: _Optional[_Union[ScheduleAck, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., commands: _Optional[_Union[CommandReport, _Mapping]] = ...) -> None: ...

class PortfolioMessage(_message.Message):
    __slots__ = ("welcome", "schedule", "telemetry_ack", "ping", "pong", "settings")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_ACK_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    schedule: SetpointSchedule
    telemetry_ack: TelemetryAck
    ping: Ping
    pong: Pong
    settings: SiteSettings
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., schedule: _Optional[_Union[SetpointSchedule, _Mapping]] = ..., telemetry_ack: _Optional[_Union[TelemetryAck, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., settings: _Optional[_Union[SiteSettings, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("site_id", "software_version", "schedule_version")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    software_version: str
    schedule_version: str
    def __init__(self, site_id: _Optional[str] = ..., software_version: _Optional[str] = ..., schedule_version: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("site_id", "last_telemetry_seq", "ping_interval_ms", "ping_timeout_ms", "snapshot_period_seconds")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_TELEMETRY_SEQ_FIELD_NUMBER: _ClassVar[int]
    PING_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    PING_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    last_telemetry_seq: int
    ping_interval_ms: int
    ping_timeout_ms: int
    snapshot_period_seconds: int
    def __init__(self, site_id: _Optional[str] = ..., last_telemetry_seq: _Optional[int] = ..., ping_interval_ms: _Optional[int] = ..., ping_timeout_ms: _Optional[int] = ..., snapshot_period_seconds: _Optional[int] = ...) -> None: ...

class TelemetryPoint(_message.Message):
    __slots__ = ("seq", "at", "grid_import_kw", "grid_export_kw", "load_kw", "pv_kw", "battery_charge_kw", "battery_discharge_kw", "soc_kwh", "ev_kw", "flex_kw", "mode", "ev_energy_kwh")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    GRID_IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    GRID_EXPORT_KW_FIELD_NUMBER: _ClassVar[int]
    LOAD_KW_FIELD_NUMBER: _ClassVar[int]
    PV_KW_FIELD_NUMBER: _ClassVar[int]
    BATTERY_CHARGE_KW_FIELD_NUMBER: _ClassVar[int]
    BATTERY_DISCHARGE_KW_FIELD_NUMBER: _ClassVar[int]
    SOC_KWH_FIELD_NUMBER: _ClassVar[int]
    EV_KW_FIELD_NUMBER: _ClassVar[int]
    FLEX_KW_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EV_ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: _timestamp_pb2.Timestamp
    grid_import_kw: float
    grid_export_kw: float
    load_kw: float
    pv_kw: float
    battery_charge_kw: float
    battery_discharge_kw: float
    soc_kwh: float
    ev_kw: float
    flex_kw: float
    mode: NodeLinkMode
    ev_energy_kwh: float
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grid_import_kw: _Optional[float] = ..., grid_export_kw: _Optional[float] = ..., load_kw: _Optional[float] = ..., pv_kw: _Optional[float] = ..., battery_charge_kw: _Optional[float] = ..., battery_discharge_kw: _Optional[float] = ..., soc_kwh: _Optional[float] = ..., ev_kw: _Optional[float] = ..., flex_kw: _Optional[float] = ..., mode: _Optional[_Union[NodeLinkMode, str]] = ..., ev_energy_kwh: _Optional[float] = ...) -> None: ...

class TelemetryBatch(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[TelemetryPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[TelemetryPoint, _Mapping]]] = ...) -> None: ...

class TelemetryAck(_message.Message):
    __slots__ = ("up_to_seq",)
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    up_to_seq: int
    def __init__(self, up_to_seq: _Optional[int] = ...) -> None: ...

class SetpointSchedule(_message.Message):
    __slots__ = ("schedule", "import_limit_kw")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    IMPORT_LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    schedule: _common_pb2.Schedule
    import_limit_kw: _common_pb2.TimeSeries
    def __init__(self, schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ..., import_limit_kw: _Optional[_Union[_common_pb2.TimeSeries, _Mapping]] = ...) -> None: ...

class ScheduleAck(_message.Message):
    __slots__ = ("version", "accepted", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: str
    accepted: bool
    reason: str
    def __init__(self, version: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("nonce", "sent_at")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, nonce: _Optional[int] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    def __init__(self, nonce: _Optional[int] = ...) -> None: ...

class SiteInfo(_message.Message):
    __slots__ = ("site_id", "connected", "mode", "first_seen", "last_seen", "software_version", "schedule_version_held", "schedule_version_issued", "schedule_state", "schedule_reason", "latest", "feeder_ids", "settings", "today")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_VERSION_HELD_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_VERSION_ISSUED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_STATE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_REASON_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    FEEDER_IDS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    TODAY_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    connected: bool
    mode: NodeLinkMode
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    software_version: str
    schedule_version_held: str
    schedule_version_issued: str
    schedule_state: str
    schedule_reason: str
    latest: TelemetryPoint
    feeder_ids: _containers.RepeatedScalarFieldContainer[str]
    settings: SiteSettings
    today: SiteDay
    def __init__(self, site_id: _Optional[str] = ..., connected: _Optional[bool] = ..., mode: _Optional[_Union[NodeLinkMode, str]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., software_version: _Optional[str] = ..., schedule_version_held: _Optional[str] = ..., schedule_version_issued: _Optional[str] = ..., schedule_state: _Optional[str] = ..., schedule_reason: _Optional[str] = ..., latest: _Optional[_Union[TelemetryPoint, _Mapping]] = ..., feeder_ids: _Optional[_Iterable[str]] = ..., settings: _Optional[_Union[SiteSettings, _Mapping]] = ..., today: _Optional[_Union[SiteDay, _Mapping]] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[SiteInfo]
    def __init__(self, sites: _Optional[_Iterable[_Union[SiteInfo, _Mapping]]] = ...) -> None: ...

class GetSiteRequest(_message.Message):
    __slots__ = ("site_id",)
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    def __init__(self, site_id: _Optional[str] = ...) -> None: ...

class GetSiteResponse(_message.Message):
    __slots__ = ("site", "schedule", "snapshot", "commands")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    site: SiteInfo
    schedule: _common_pb2.Schedule
    snapshot: _common_pb2.SiteSnapshot
    commands: _containers.RepeatedCompositeFieldContainer[CommandStatus]
    def __init__(self, site: _Optional[_Union[SiteInfo, _Mapping]] = ..., schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ..., snapshot: _Optional[_Union[_common_pb2.SiteSnapshot, _Mapping]] = ..., commands: _Optional[_Iterable[_Union[CommandStatus, _Mapping]]] = ...) -> None: ...

class GetPortfolioStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FeederState(_message.Message):
    __slots__ = ("feeder", "import_kw", "cap_kw", "planned_import_kw")
    FEEDER_FIELD_NUMBER: _ClassVar[int]
    IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    CAP_KW_FIELD_NUMBER: _ClassVar[int]
    PLANNED_IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    feeder: Feeder
    import_kw: float
    cap_kw: float
    planned_import_kw: _common_pb2.TimeSeries
    def __init__(self, feeder: _Optional[_Union[Feeder, _Mapping]] = ..., import_kw: _Optional[float] = ..., cap_kw: _Optional[float] = ..., planned_import_kw: _Optional[_Union[_common_pb2.TimeSeries, _Mapping]] = ...) -> None: ...

class GetPortfolioStateResponse(_message.Message):
    __slots__ = ("now", "sites", "connected", "import_kw", "export_kw", "pv_kw", "ev_kw", "feeders", "active_events", "latest_solve")
    NOW_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    EXPORT_KW_FIELD_NUMBER: _ClassVar[int]
    PV_KW_FIELD_NUMBER: _ClassVar[int]
    EV_KW_FIELD_NUMBER: _ClassVar[int]
    FEEDERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LATEST_SOLVE_FIELD_NUMBER: _ClassVar[int]
    now: _timestamp_pb2.Timestamp
    sites: int
    connected: int
    import_kw: float
    export_kw: float
    pv_kw: float
    ev_kw: float
    feeders: _containers.RepeatedCompositeFieldContainer[FeederState]
    active_events: _containers.RepeatedCompositeFieldContainer[FlexEvent]
    latest_solve: SolveReport
    def __init__(self, now: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sites: _Optional[int] = ..., connected: _Optional[int] = ..., import_kw: _Optional[float] = ..., export_kw: _Optional[float] = ..., pv_kw: _Optional[float] = ..., ev_kw: _Optional[float] = ..., feeders: _Optional[_Iterable[_Union[FeederState, _Mapping]]] = ..., active_events: _Optional[_Iterable[_Union[FlexEvent, _Mapping]]] = ..., latest_solve: _Optional[_Union[SolveReport, _Mapping]] = ...) -> None: ...

class WatchPortfolioRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SiteFlow(_message.Message):
    __slots__ = ("site_id", "connected", "latest")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    connected: bool
    latest: TelemetryPoint
    def __init__(self, site_id: _Optional[str] = ..., connected: _Optional[bool] = ..., latest: _Optional[_Union[TelemetryPoint, _Mapping]] = ...) -> None: ...

class WatchPortfolioResponse(_message.Message):
    __slots__ = ("at", "import_kw", "export_kw", "pv_kw", "ev_kw", "sites", "latest_solve_id")
    AT_FIELD_NUMBER: _ClassVar[int]
    IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    EXPORT_KW_FIELD_NUMBER: _ClassVar[int]
    PV_KW_FIELD_NUMBER: _ClassVar[int]
    EV_KW_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    LATEST_SOLVE_ID_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    import_kw: float
    export_kw: float
    pv_kw: float
    ev_kw: float
    sites: _containers.RepeatedCompositeFieldContainer[SiteFlow]
    latest_solve_id: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., import_kw: _Optional[float] = ..., export_kw: _Optional[float] = ..., pv_kw: _Optional[float] = ..., ev_kw: _Optional[float] = ..., sites: _Optional[_Iterable[_Union[SiteFlow, _Mapping]]] = ..., latest_solve_id: _Optional[str] = ...) -> None: ...

class Feeder(_message.Message):
    __slots__ = ("feeder_id", "site_ids", "cap_kw", "caps_kw", "description")
    FEEDER_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_IDS_FIELD_NUMBER: _ClassVar[int]
    CAP_KW_FIELD_NUMBER: _ClassVar[int]
    CAPS_KW_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    feeder_id: str
    site_ids: _containers.RepeatedScalarFieldContainer[str]
    cap_kw: float
    caps_kw: _containers.RepeatedScalarFieldContainer[float]
    description: str
    def __init__(self, feeder_id: _Optional[str] = ..., site_ids: _Optional[_Iterable[str]] = ..., cap_kw: _Optional[float] = ..., caps_kw: _Optional[_Iterable[float]] = ..., description: _Optional[str] = ...) -> None: ...

class SetFeederRequest(_message.Message):
    __slots__ = ("feeder",)
    FEEDER_FIELD_NUMBER: _ClassVar[int]
    feeder: Feeder
    def __init__(self, feeder: _Optional[_Union[Feeder, _Mapping]] = ...) -> None: ...

class SetFeederResponse(_message.Message):
    __slots__ = ("feeder",)
    FEEDER_FIELD_NUMBER: _ClassVar[int]
    feeder: Feeder
    def __init__(self, feeder: _Optional[_Union[Feeder, _Mapping]] = ...) -> None: ...

class ListFeedersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFeedersResponse(_message.Message):
    __slots__ = ("feeders",)
    FEEDERS_FIELD_NUMBER: _ClassVar[int]
    feeders: _containers.RepeatedCompositeFieldContainer[Feeder]
    def __init__(self, feeders: _Optional[_Iterable[_Union[Feeder, _Mapping]]] = ...) -> None: ...

class DeleteFeederRequest(_message.Message):
    __slots__ = ("feeder_id",)
    FEEDER_ID_FIELD_NUMBER: _ClassVar[int]
    feeder_id: str
    def __init__(self, feeder_id: _Optional[str] = ...) -> None: ...

class DeleteFeederResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FlexEvent(_message.Message):
    __slots__ = ("event_id", "kind", "kw", "start", "end", "site_ids", "state")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KW_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SITE_IDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: FlexKind
    kw: float
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    site_ids: _containers.RepeatedScalarFieldContainer[str]
    state: str
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[FlexKind, str]] = ..., kw: _Optional[float] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., site_ids: _Optional[_Iterable[str]] = ..., state: _Optional[str] = ...) -> None: ...

class CreateFlexEventRequest(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: FlexEvent
    def __init__(self, event: _Optional[_Union[FlexEvent, _Mapping]] = ...) -> None: ...

class CreateFlexEventResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: FlexEvent
    def __init__(self, event: _Optional[_Union[FlexEvent, _Mapping]] = ...) -> None: ...

class ListFlexEventsRequest(_message.Message):
    __slots__ = ("include_cancelled",)
    INCLUDE_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    include_cancelled: bool
    def __init__(self, include_cancelled: _Optional[bool] = ...) -> None: ...

class ListFlexEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FlexEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FlexEvent, _Mapping]]] = ...) -> None: ...

class CancelFlexEventRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class CancelFlexEventResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: FlexEvent
    def __init__(self, event: _Optional[_Union[FlexEvent, _Mapping]] = ...) -> None: ...

class SiteCost(_message.Message):
    __slots__ = ("site_id", "alone_cost", "coupled_cost")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    ALONE_COST_FIELD_NUMBER: _ClassVar[int]
    COUPLED_COST_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    alone_cost: float
    coupled_cost: float
    def __init__(self, site_id: _Optional[str] = ..., alone_cost: _Optional[float] = ..., coupled_cost: _Optional[float] = ...) -> None: ...

class FeederCheck(_message.Message):
    __slots__ = ("feeder_id", "holds", "max_excess_kw", "binding_steps", "reserved_kw")
    FEEDER_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXCESS_KW_FIELD_NUMBER: _ClassVar[int]
    BINDING_STEPS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_KW_FIELD_NUMBER: _ClassVar[int]
    feeder_id: str
    holds: bool
    max_excess_kw: float
    binding_steps: int
    reserved_kw: float
    def __init__(self, feeder_id: _Optional[str] = ..., holds: _Optional[bool] = ..., max_excess_kw: _Optional[float] = ..., binding_steps: _Optional[int] = ..., reserved_kw: _Optional[float] = ...) -> None: ...

class EventCheck(_message.Message):
    __slots__ = ("event_id", "holds", "worst_shortfall_kw")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    WORST_SHORTFALL_KW_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    holds: bool
    worst_shortfall_kw: float
    def __init__(self, event_id: _Optional[str] = ..., holds: _Optional[bool] = ..., worst_shortfall_kw: _Optional[float] = ...) -> None: ...

class SolveReport(_message.Message):
    __slots__ = ("solve_id", "at", "trigger", "status", "method", "objective", "alone_objective", "coupling_cost", "bound", "gap", "iterations", "seconds", "sites", "feeders", "events", "relaxed", "all_hold", "horizon_start", "step_minutes", "steps", "peak_kw", "peak_charge", "solved_at")
    SOLVE_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    ALONE_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    COUPLING_COST_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    FEEDERS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    RELAXED_FIELD_NUMBER: _ClassVar[int]
    ALL_HOLD_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    STEP_MINUTES_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PEAK_KW_FIELD_NUMBER: _ClassVar[int]
    PEAK_CHARGE_FIELD_NUMBER: _ClassVar[int]
    SOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    solve_id: str
    at: _timestamp_pb2.Timestamp
    trigger: str
    status: str
    method: str
    objective: float
    alone_objective: float
    coupling_cost: float
    bound: float
    gap: float
    iterations: int
    seconds: float
    sites: _containers.RepeatedCompositeFieldContainer[SiteCost]
    feeders: _containers.RepeatedCompositeFieldContainer[FeederCheck]
    events: _containers.RepeatedCompositeFieldContainer[EventCheck]
    relaxed: _containers.RepeatedScalarFieldContainer[str]
    all_hold: bool
    horizon_start: _timestamp_pb2.Timestamp
    step_minutes: int
    steps: int
    peak_kw: float
    peak_charge: float
    solved_at: _timestamp_pb2.Timestamp
    def __init__(self, solve_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger: _Optional[str] = ..., status: _Optional[str] = ..., method: _Optional[str] = ..., objective: _Optional[float] = ..., alone_objective: _Optional[float] = ..., coupling_cost: _Optional[float] = ..., bound: _Optional[float] = ..., gap: _Optional[float] = ..., iterations: _Optional[int] = ..., seconds: _Optional[float] = ..., sites: _Optional[_Iterable[_Union[SiteCost, _Mapping]]] = ..., feeders: _Optional[_Iterable[_Union[FeederCheck, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[EventCheck, _Mapping]]] = ..., relaxed: _Optional[_Iterable[str]] = ..., all_hold: _Optional[bool] = ..., horizon_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step_minutes: _Optional[int] = ..., steps: _Optional[int] = ..., peak_kw: _Optional[float] = ..., peak_charge: _Optional[float] = ..., solved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SolveRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SolveResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: SolveReport
    def __init__(self, report: _Optional[_Union[SolveReport, _Mapping]] = ...) -> None: ...

class SiteSettings(_message.Message):
    __slots__ = ("weights", "priorities", "updated_at")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    weights: _sitenode_pb2.ObjectiveWeights
    priorities: _sitenode_pb2.Priorities
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, weights: _Optional[_Union[_sitenode_pb2.ObjectiveWeights, _Mapping]] = ..., priorities: _Optional[_Union[_sitenode_pb2.Priorities, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetSiteSettingsRequest(_message.Message):
    __slots__ = ("site_id", "weights", "priorities")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    weights: _sitenode_pb2.ObjectiveWeights
    priorities: _sitenode_pb2.Priorities
    def __init__(self, site_id: _Optional[str] = ..., weights: _Optional[_Union[_sitenode_pb2.ObjectiveWeights, _Mapping]] = ..., priorities: _Optional[_Union[_sitenode_pb2.Priorities, _Mapping]] = ...) -> None: ...

class SetSiteSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: SiteSettings
    def __init__(self, settings: _Optional[_Union[SiteSettings, _Mapping]] = ...) -> None: ...

class GetSolveReportRequest(_message.Message):
    __slots__ = ("solve_id",)
    SOLVE_ID_FIELD_NUMBER: _ClassVar[int]
    solve_id: str
    def __init__(self, solve_id: _Optional[str] = ...) -> None: ...

class GetSolveReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: SolveReport
    def __init__(self, report: _Optional[_Union[SolveReport, _Mapping]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: str
    def __init__(self, role: _Optional[str] = ...) -> None: ...

class CommandStatus(_message.Message):
    __slots__ = ("command_id", "asset_id", "type", "value_kw", "due_at", "state", "attempts", "last_error", "source")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_KW_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    asset_id: str
    type: str
    value_kw: float
    due_at: _timestamp_pb2.Timestamp
    state: str
    attempts: int
    last_error: str
    source: str
    def __init__(self, command_id: _Optional[str] = ..., asset_id: _Optional[str] = ..., type: _Optional[str] = ..., value_kw: _Optional[float] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class CommandReport(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[CommandStatus]
    def __init__(self, commands: _Optional[_Iterable[_Union[CommandStatus, _Mapping]]] = ...) -> None: ...

class SiteDay(_message.Message):
    __slots__ = ("since", "currency", "cost", "bau_cost", "ev_delivered_kwh", "peak_import_kw", "bau_peak_import_kw", "steps")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    BAU_COST_FIELD_NUMBER: _ClassVar[int]
    EV_DELIVERED_KWH_FIELD_NUMBER: _ClassVar[int]
    PEAK_IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    BAU_PEAK_IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    currency: str
    cost: float
    bau_cost: float
    ev_delivered_kwh: float
    peak_import_kw: float
    bau_peak_import_kw: float
    steps: int
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., currency: _Optional[str] = ..., cost: _Optional[float] = ..., bau_cost: _Optional[float] = ..., ev_delivered_kwh: _Optional[float] = ..., peak_import_kw: _Optional[float] = ..., bau_peak_import_kw: _Optional[float] = ..., steps: _Optional[int] = ...) -> None: ...
