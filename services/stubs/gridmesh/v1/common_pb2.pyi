import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSET_KIND_UNSPECIFIED: _ClassVar[AssetKind]
    ASSET_KIND_GRID: _ClassVar[AssetKind]
    ASSET_KIND_BATTERY: _ClassVar[AssetKind]
    ASSET_KIND_PV: _ClassVar[AssetKind]
    ASSET_KIND_CHARGER: _ClassVar[AssetKind]
    ASSET_KIND_FLEXIBLE_LOAD: _ClassVar[AssetKind]
ASSET_KIND_UNSPECIFIED: AssetKind
ASSET_KIND_GRID: AssetKind
ASSET_KIND_BATTERY: AssetKind
ASSET_KIND_PV: AssetKind
ASSET_KIND_CHARGER: AssetKind
ASSET_KIND_FLEXIBLE_LOAD: AssetKind

class TimeSeries(_message.Message):
    __slots__ = ("start", "step_minutes", "values")
    START_FIELD_NUMBER: _ClassVar[int]
    STEP_MINUTES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    step_minutes: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step_minutes: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class ScheduleColumn(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("version", "source", "start", "step_minutes", "columns", "valid_from", "valid_until", "charger_assignment")
    class ChargerAssignmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STEP_MINUTES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    version: str
    source: str
    start: _timestamp_pb2.Timestamp
    step_minutes: int
    columns: _containers.RepeatedCompositeFieldContainer[ScheduleColumn]
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    charger_assignment: _containers.ScalarMap[str, str]
    def __init__(self, version: _Optional[str] = ..., source: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step_minutes: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ScheduleColumn, _Mapping]]] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., charger_assignment: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Asset(_message.Message):
    __slots__ = ("asset_id", "kind", "state", "max_charge_kw", "max_discharge_kw", "setpoint_kw", "soc_kwh", "site_config_json", "run_config_json", "series")
    class SeriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TimeSeries
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TimeSeries, _Mapping]] = ...) -> None: ...
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARGE_KW_FIELD_NUMBER: _ClassVar[int]
    MAX_DISCHARGE_KW_FIELD_NUMBER: _ClassVar[int]
    SETPOINT_KW_FIELD_NUMBER: _ClassVar[int]
    SOC_KWH_FIELD_NUMBER: _ClassVar[int]
    SITE_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    kind: AssetKind
    state: str
    max_charge_kw: float
    max_discharge_kw: float
    setpoint_kw: float
    soc_kwh: float
    site_config_json: str
    run_config_json: str
    series: _containers.MessageMap[str, TimeSeries]
    def __init__(self, asset_id: _Optional[str] = ..., kind: _Optional[_Union[AssetKind, str]] = ..., state: _Optional[str] = ..., max_charge_kw: _Optional[float] = ..., max_discharge_kw: _Optional[float] = ..., setpoint_kw: _Optional[float] = ..., soc_kwh: _Optional[float] = ..., site_config_json: _Optional[str] = ..., run_config_json: _Optional[str] = ..., series: _Optional[_Mapping[str, TimeSeries]] = ...) -> None: ...

class EVSession(_message.Message):
    __slots__ = ("session_id", "arrival", "departure", "energy_kwh", "max_kw", "priority", "charger_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_FIELD_NUMBER: _ClassVar[int]
    DEPARTURE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    MAX_KW_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    arrival: _timestamp_pb2.Timestamp
    departure: _timestamp_pb2.Timestamp
    energy_kwh: float
    max_kw: float
    priority: int
    charger_id: str
    def __init__(self, session_id: _Optional[str] = ..., arrival: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., departure: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., energy_kwh: _Optional[float] = ..., max_kw: _Optional[float] = ..., priority: _Optional[int] = ..., charger_id: _Optional[str] = ...) -> None: ...

class SiteSnapshot(_message.Message):
    __slots__ = ("site_id", "taken_at", "assets", "sessions", "load_forecast_kw", "pv_forecast_kw", "soc_kwh", "site_config_json", "run_config_json", "series")
    class SeriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TimeSeries
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TimeSeries, _Mapping]] = ...) -> None: ...
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    TAKEN_AT_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FORECAST_KW_FIELD_NUMBER: _ClassVar[int]
    PV_FORECAST_KW_FIELD_NUMBER: _ClassVar[int]
    SOC_KWH_FIELD_NUMBER: _ClassVar[int]
    SITE_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    taken_at: _timestamp_pb2.Timestamp
    assets: _containers.RepeatedCompositeFieldContainer[Asset]
    sessions: _containers.RepeatedCompositeFieldContainer[EVSession]
    load_forecast_kw: TimeSeries
    pv_forecast_kw: TimeSeries
    soc_kwh: float
    site_config_json: str
    run_config_json: str
    series: _containers.MessageMap[str, TimeSeries]
    def __init__(self, site_id: _Optional[str] = ..., taken_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., assets: _Optional[_Iterable[_Union[Asset, _Mapping]]] = ..., sessions: _Optional[_Iterable[_Union[EVSession, _Mapping]]] = ..., load_forecast_kw: _Optional[_Union[TimeSeries, _Mapping]] = ..., pv_forecast_kw: _Optional[_Union[TimeSeries, _Mapping]] = ..., soc_kwh: _Optional[float] = ..., site_config_json: _Optional[str] = ..., run_config_json: _Optional[str] = ..., series: _Optional[_Mapping[str, TimeSeries]] = ...) -> None: ...
