import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from services.stubs.gridmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_MODE_UNSPECIFIED: _ClassVar[NodeMode]
    NODE_MODE_LOCAL: _ClassVar[NodeMode]
    NODE_MODE_PORTFOLIO: _ClassVar[NodeMode]
    NODE_MODE_FAILSAFE: _ClassVar[NodeMode]

class CommandType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_TYPE_UNSPECIFIED: _ClassVar[CommandType]
    COMMAND_TYPE_SET_CHARGE_RATE: _ClassVar[CommandType]
    COMMAND_TYPE_SET_DISCHARGE_RATE: _ClassVar[CommandType]
    COMMAND_TYPE_START_CHARGING: _ClassVar[CommandType]
    COMMAND_TYPE_STOP_CHARGING: _ClassVar[CommandType]
    COMMAND_TYPE_CHANGE_AVAILABILITY: _ClassVar[CommandType]
NODE_MODE_UNSPECIFIED: NodeMode
NODE_MODE_LOCAL: NodeMode
NODE_MODE_PORTFOLIO: NodeMode
NODE_MODE_FAILSAFE: NodeMode
COMMAND_TYPE_UNSPECIFIED: CommandType
COMMAND_TYPE_SET_CHARGE_RATE: CommandType
COMMAND_TYPE_SET_DISCHARGE_RATE: CommandType
COMMAND_TYPE_START_CHARGING: CommandType
COMMAND_TYPE_STOP_CHARGING: CommandType
COMMAND_TYPE_CHANGE_AVAILABILITY: CommandType

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("site_id", "mode", "schedule_version", "schedule_source", "now", "last_optimized_at", "open_commands", "active_sessions", "last_solve_status", "relaxed")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    LAST_OPTIMIZED_AT_FIELD_NUMBER: _ClassVar[int]
    OPEN_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_SOLVE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RELAXED_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    mode: NodeMode
    schedule_version: str
    schedule_source: str
    now: _timestamp_pb2.Timestamp
    last_optimized_at: _timestamp_pb2.Timestamp
    open_commands: int
    active_sessions: int
    last_solve_status: str
    relaxed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, site_id: _Optional[str] = ..., mode: _Optional[_Union[NodeMode, str]] = ..., schedule_version: _Optional[str] = ..., schedule_source: _Optional[str] = ..., now: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_optimized_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open_commands: _Optional[int] = ..., active_sessions: _Optional[int] = ..., last_solve_status: _Optional[str] = ..., relaxed: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAssetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAssetsResponse(_message.Message):
    __slots__ = ("assets",)
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    assets: _containers.RepeatedCompositeFieldContainer[_common_pb2.Asset]
    def __init__(self, assets: _Optional[_Iterable[_Union[_common_pb2.Asset, _Mapping]]] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: _common_pb2.Schedule
    def __init__(self, schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ...) -> None: ...

class OptimizeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OptimizeResponse(_message.Message):
    __slots__ = ("schedule", "status", "total_cost", "baseline_total_cost", "ev_shortfall_kwh", "breach_kwh", "relaxed", "solve_seconds", "commands_created")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    EV_SHORTFALL_KWH_FIELD_NUMBER: _ClassVar[int]
    BREACH_KWH_FIELD_NUMBER: _ClassVar[int]
    RELAXED_FIELD_NUMBER: _ClassVar[int]
    SOLVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_CREATED_FIELD_NUMBER: _ClassVar[int]
    schedule: _common_pb2.Schedule
    status: str
    total_cost: float
    baseline_total_cost: float
    ev_shortfall_kwh: float
    breach_kwh: float
    relaxed: _containers.RepeatedScalarFieldContainer[str]
    solve_seconds: float
    commands_created: int
    def __init__(self, schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ..., status: _Optional[str] = ..., total_cost: _Optional[float] = ..., baseline_total_cost: _Optional[float] = ..., ev_shortfall_kwh: _Optional[float] = ..., breach_kwh: _Optional[float] = ..., relaxed: _Optional[_Iterable[str]] = ..., solve_seconds: _Optional[float] = ..., commands_created: _Optional[int] = ...) -> None: ...

class UpsertSessionRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _common_pb2.EVSession
    def __init__(self, session: _Optional[_Union[_common_pb2.EVSession, _Mapping]] = ...) -> None: ...

class UpsertSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _common_pb2.EVSession
    def __init__(self, session: _Optional[_Union[_common_pb2.EVSession, _Mapping]] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Priorities(_message.Message):
    __slots__ = ("fleet", "facility", "battery", "mining", "export")
    FLEET_FIELD_NUMBER: _ClassVar[int]
    FACILITY_FIELD_NUMBER: _ClassVar[int]
    BATTERY_FIELD_NUMBER: _ClassVar[int]
    MINING_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    fleet: int
    facility: int
    battery: int
    mining: int
    export: int
    def __init__(self, fleet: _Optional[int] = ..., facility: _Optional[int] = ..., battery: _Optional[int] = ..., mining: _Optional[int] = ..., export: _Optional[int] = ...) -> None: ...

class ObjectiveWeights(_message.Message):
    __slots__ = ("cost", "carbon", "peak")
    COST_FIELD_NUMBER: _ClassVar[int]
    CARBON_FIELD_NUMBER: _ClassVar[int]
    PEAK_FIELD_NUMBER: _ClassVar[int]
    cost: float
    carbon: float
    peak: float
    def __init__(self, cost: _Optional[float] = ..., carbon: _Optional[float] = ..., peak: _Optional[float] = ...) -> None: ...

class SetObjectiveRequest(_message.Message):
    __slots__ = ("weights", "priorities")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    weights: ObjectiveWeights
    priorities: Priorities
    def __init__(self, weights: _Optional[_Union[ObjectiveWeights, _Mapping]] = ..., priorities: _Optional[_Union[Priorities, _Mapping]] = ...) -> None: ...

class SetObjectiveResponse(_message.Message):
    __slots__ = ("weights", "priorities")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    weights: ObjectiveWeights
    priorities: Priorities
    def __init__(self, weights: _Optional[_Union[ObjectiveWeights, _Mapping]] = ..., priorities: _Optional[_Union[Priorities, _Mapping]] = ...) -> None: ...

class SendCommandRequest(_message.Message):
    __slots__ = ("asset_id", "type", "value_kw", "ttl_seconds")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_KW_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    type: CommandType
    value_kw: float
    ttl_seconds: int
    def __init__(self, asset_id: _Optional[str] = ..., type: _Optional[_Union[CommandType, str]] = ..., value_kw: _Optional[float] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class SendCommandResponse(_message.Message):
    __slots__ = ("command_id", "state", "value_kw")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VALUE_KW_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    state: str
    value_kw: float
    def __init__(self, command_id: _Optional[str] = ..., state: _Optional[str] = ..., value_kw: _Optional[float] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("types",)
    TYPES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, types: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("type", "seq", "at", "asset_id", "command_id", "command_type", "value_kw", "attempts", "reason", "machine", "trigger", "from_state", "to_state", "schedule_version", "schedule_source")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_KW_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    seq: int
    at: _timestamp_pb2.Timestamp
    asset_id: str
    command_id: str
    command_type: str
    value_kw: float
    attempts: int
    reason: str
    machine: str
    trigger: str
    from_state: str
    to_state: str
    schedule_version: str
    schedule_source: str
    def __init__(self, type: _Optional[str] = ..., seq: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., asset_id: _Optional[str] = ..., command_id: _Optional[str] = ..., command_type: _Optional[str] = ..., value_kw: _Optional[float] = ..., attempts: _Optional[int] = ..., reason: _Optional[str] = ..., machine: _Optional[str] = ..., trigger: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., schedule_version: _Optional[str] = ..., schedule_source: _Optional[str] = ...) -> None: ...
