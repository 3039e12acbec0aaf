import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SiteKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SITE_KIND_UNSPECIFIED: _ClassVar[SiteKind]
    SITE_KIND_DEPOT: _ClassVar[SiteKind]
    SITE_KIND_LANDFILL: _ClassVar[SiteKind]

class WasteType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WASTE_TYPE_UNSPECIFIED: _ClassVar[WasteType]
    WASTE_TYPE_GENERAL: _ClassVar[WasteType]
    WASTE_TYPE_RECYCLING: _ClassVar[WasteType]
    WASTE_TYPE_ORGANIC: _ClassVar[WasteType]

class StopStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_STATUS_UNSPECIFIED: _ClassVar[StopStatus]
    STOP_STATUS_PENDING: _ClassVar[StopStatus]
    STOP_STATUS_COLLECTED: _ClassVar[StopStatus]
    STOP_STATUS_SKIPPED: _ClassVar[StopStatus]

class RouteState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_STATE_UNSPECIFIED: _ClassVar[RouteState]
    ROUTE_STATE_PLANNED: _ClassVar[RouteState]
    ROUTE_STATE_IN_PROGRESS: _ClassVar[RouteState]
    ROUTE_STATE_COMPLETED: _ClassVar[RouteState]

class RouteEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_EVENT_TYPE_UNSPECIFIED: _ClassVar[RouteEventType]
    ROUTE_EVENT_TYPE_STARTED: _ClassVar[RouteEventType]
    ROUTE_EVENT_TYPE_COLLECTED: _ClassVar[RouteEventType]
    ROUTE_EVENT_TYPE_SKIPPED: _ClassVar[RouteEventType]
    ROUTE_EVENT_TYPE_POSITION: _ClassVar[RouteEventType]
    ROUTE_EVENT_TYPE_COMPLETED: _ClassVar[RouteEventType]
SITE_KIND_UNSPECIFIED: SiteKind
SITE_KIND_DEPOT: SiteKind
SITE_KIND_LANDFILL: SiteKind
WASTE_TYPE_UNSPECIFIED: WasteType
WASTE_TYPE_GENERAL: WasteType
WASTE_TYPE_RECYCLING: WasteType
WASTE_TYPE_ORGANIC: WasteType
STOP_STATUS_UNSPECIFIED: StopStatus
STOP_STATUS_PENDING: StopStatus
STOP_STATUS_COLLECTED: StopStatus
STOP_STATUS_SKIPPED: StopStatus
ROUTE_STATE_UNSPECIFIED: RouteState
ROUTE_STATE_PLANNED: RouteState
ROUTE_STATE_IN_PROGRESS: RouteState
ROUTE_STATE_COMPLETED: RouteState
ROUTE_EVENT_TYPE_UNSPECIFIED: RouteEventType
ROUTE_EVENT_TYPE_STARTED: RouteEventType
ROUTE_EVENT_TYPE_COLLECTED: RouteEventType
ROUTE_EVENT_TYPE_SKIPPED: RouteEventType
ROUTE_EVENT_TYPE_POSITION: RouteEventType
ROUTE_EVENT_TYPE_COMPLETED: RouteEventType

class LatLon(_message.Message):
    __slots__ = ("lat", "lon")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lon: float
    def __init__(self, lat: _Optional[float] = ..., lon: _Optional[float] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("site_id", "kind", "name", "location")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    kind: SiteKind
    name: str
    location: LatLon
    def __init__(self, site_id: _Optional[str] = ..., kind: _Optional[_Union[SiteKind, str]] = ..., name: _Optional[str] = ..., location: _Optional[_Union[LatLon, _Mapping]] = ...) -> None: ...

class CreateSiteRequest(_message.Message):
    __slots__ = ("site",)
    SITE_FIELD_NUMBER: _ClassVar[int]
    site: Site
    def __init__(self, site: _Optional[_Union[Site, _Mapping]] = ...) -> None: ...

class Truck(_message.Message):
    __slots__ = ("truck_id", "depot_id", "capacity_litres", "shift_start_minute", "shift_end_minute")
    TRUCK_ID_FIELD_NUMBER: _ClassVar[int]
    DEPOT_ID_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_LITRES_FIELD_NUMBER: _ClassVar[int]
    SHIFT_START_MINUTE_FIELD_NUMBER: _ClassVar[int]
    SHIFT_END_MINUTE_FIELD_NUMBER: _ClassVar[int]
    truck_id: str
    depot_id: str
    capacity_litres: int
    shift_start_minute: int
    shift_end_minute: int
    def __init__(self, truck_id: _Optional[str] = ..., depot_id: _Optional[str] = ..., capacity_litres: _Optional[int] = ..., shift_start_minute: _Optional[int] = ..., shift_end_minute: _Optional[int] = ...) -> None: ...

class CreateTruckRequest(_message.Message):
    __slots__ = ("truck",)
    TRUCK_FIELD_NUMBER: _ClassVar[int]
    truck: Truck
    def __init__(self, truck: _Optional[_Union[Truck, _Mapping]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("rate_percent_per_hour", "day_of_week_model", "full_time", "predicted_fill_percent")
    RATE_PERCENT_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    DAY_OF_WEEK_MODEL_FIELD_NUMBER: _ClassVar[int]
    FULL_TIME_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FILL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    rate_percent_per_hour: float
    day_of_week_model: bool
    full_time: _timestamp_pb2.Timestamp
    predicted_fill_percent: float
    def __init__(self, rate_percent_per_hour: _Optional[float] = ..., day_of_week_model: _Optional[bool] = ..., full_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., predicted_fill_percent: _Optional[float] = ...) -> None: ...

class Bin(_message.Message):
    __slots__ = ("bin_id", "location", "capacity_litres", "waste_type", "fill_percent", "fill_time", "emptied_time", "carried_over", "prediction")
    BIN_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_LITRES_FIELD_NUMBER: _ClassVar[int]
    WASTE_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    FILL_TIME_FIELD_NUMBER: _ClassVar[int]
    EMPTIED_TIME_FIELD_NUMBER: _ClassVar[int]
    CARRIED_OVER_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    bin_id: str
    location: LatLon
    capacity_litres: int
    waste_type: WasteType
    fill_percent: float
    fill_time: _timestamp_pb2.Timestamp
    emptied_time: _timestamp_pb2.Timestamp
    carried_over: bool
    prediction: Prediction
    def __init__(self, bin_id: _Optional[str] = ..., location: _Optional[_Union[LatLon, _Mapping]] = ..., capacity_litres: _Optional[int] = ..., waste_type: _Optional[_Union[WasteType, str]] = ..., fill_percent: _Optional[float] = ..., fill_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., emptied_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., carried_over: _Optional[bool] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class CreateBinRequest(_message.Message):
    __slots__ = ("bin",)
    BIN_FIELD_NUMBER: _ClassVar[int]
    bin: Bin
    def __init__(self, bin: _Optional[_Union[Bin, _Mapping]] = ...) -> None: ...

class GetBinRequest(_message.Message):
    __slots__ = ("bin_id", "history_limit")
    BIN_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    bin_id: str
    history_limit: int
    def __init__(self, bin_id: _Optional[str] = ..., history_limit: _Optional[int] = ...) -> None: ...

class FillReading(_message.Message):
    __slots__ = ("fill_percent", "time")
    FILL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    fill_percent: float
    time: _timestamp_pb2.Timestamp
    def __init__(self, fill_percent: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetBinResponse(_message.Message):
    __slots__ = ("bin", "history")
    BIN_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    bin: Bin
    history: _containers.RepeatedCompositeFieldContainer[FillReading]
    def __init__(self, bin: _Optional[_Union[Bin, _Mapping]] = ..., history: _Optional[_Iterable[_Union[FillReading, _Mapping]]] = ...) -> None: ...

class Area(_message.Message):
    __slots__ = ("south_west", "north_east")
    SOUTH_WEST_FIELD_NUMBER: _ClassVar[int]
    NORTH_EAST_FIELD_NUMBER: _ClassVar[int]
    south_west: LatLon
    north_east: LatLon
    def __init__(self, south_west: _Optional[_Union[LatLon, _Mapping]] = ..., north_east: _Optional[_Union[LatLon, _Mapping]] = ...) -> None: ...

class ListBinsRequest(_message.Message):
    __slots__ = ("min_predicted_fill", "area", "at", "page_size", "page_token")
    MIN_PREDICTED_FILL_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    min_predicted_fill: float
    area: Area
    at: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, min_predicted_fill: _Optional[float] = ..., area: _Optional[_Union[Area, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBinsResponse(_message.Message):
    __slots__ = ("bins", "next_page_token")
    BINS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bins: _containers.RepeatedCompositeFieldContainer[Bin]
    next_page_token: str
    def __init__(self, bins: _Optional[_Iterable[_Union[Bin, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReportFillRequest(_message.Message):
    __slots__ = ("bin_id", "fill_percent", "time")
    BIN_ID_FIELD_NUMBER: _ClassVar[int]
    FILL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    bin_id: str
    fill_percent: float
    time: _timestamp_pb2.Timestamp
    def __init__(self, bin_id: _Optional[str] = ..., fill_percent: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportFillResponse(_message.Message):
    __slots__ = ("bin",)
    BIN_FIELD_NUMBER: _ClassVar[int]
    bin: Bin
    def __init__(self, bin: _Optional[_Union[Bin, _Mapping]] = ...) -> None: ...

class ReportFillStreamResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class PlanRoutesRequest(_message.Message):
    __slots__ = ("request_id", "date", "depot_id", "truck_ids", "threshold", "time_limit", "landfill_id", "waste_type", "seed")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    DEPOT_ID_FIELD_NUMBER: _ClassVar[int]
    TRUCK_IDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    LANDFILL_ID_FIELD_NUMBER: _ClassVar[int]
    WASTE_TYPE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    date: _timestamp_pb2.Timestamp
    depot_id: str
    truck_ids: _containers.RepeatedScalarFieldContainer[str]
    threshold: float
    time_limit: _duration_pb2.Duration
    landfill_id: str
    waste_type: WasteType
    seed: int
    def __init__(self, request_id: _Optional[str] = ..., date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., depot_id: _Optional[str] = ..., truck_ids: _Optional[_Iterable[str]] = ..., threshold: _Optional[float] = ..., time_limit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., landfill_id: _Optional[str] = ..., waste_type: _Optional[_Union[WasteType, str]] = ..., seed: _Optional[int] = ...) -> None: ...

class Stop(_message.Message):
    __slots__ = ("bin_id", "trip", "expected_litres", "status", "weight_kg", "skip_reason", "done_time", "location")
    BIN_ID_FIELD_NUMBER: _ClassVar[int]
    TRIP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LITRES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_KG_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    DONE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    bin_id: str
    trip: int
    expected_litres: int
    status: StopStatus
    weight_kg: float
    skip_reason: str
    done_time: _timestamp_pb2.Timestamp
    location: LatLon
    def __init__(self, bin_id: _Optional[str] = ..., trip: _Optional[int] = ..., expected_litres: _Optional[int] = ..., status: _Optional[_Union[StopStatus, str]] = ..., weight_kg: _Optional[float] = ..., skip_reason: _Optional[str] = ..., done_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., location: _Optional[_Union[LatLon, _Mapping]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("route_id", "plan_id", "truck_id", "state", "stops", "distance_m", "trips", "estimated_duration", "over_shift", "position")
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TRUCK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STOPS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    TRIPS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_DURATION_FIELD_NUMBER: _ClassVar[int]
    OVER_SHIFT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    route_id: str
    plan_id: str
    truck_id: str
    state: RouteState
    stops: _containers.RepeatedCompositeFieldContainer[Stop]
    distance_m: int
    trips: int
    estimated_duration: _duration_pb2.Duration
    over_shift: bool
    position: LatLon
    def __init__(self, route_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., truck_id: _Optional[str] = ..., state: _Optional[_Union[RouteState, str]] = ..., stops: _Optional[_Iterable[_Union[Stop, _Mapping]]] = ..., distance_m: _Optional[int] = ..., trips: _Optional[int] = ..., estimated_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., over_shift: _Optional[bool] = ..., position: _Optional[_Union[LatLon, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("plan_id", "date", "depot_id", "landfill_id", "threshold", "routes", "distance_m", "bins", "create_time")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    DEPOT_ID_FIELD_NUMBER: _ClassVar[int]
    LANDFILL_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    date: _timestamp_pb2.Timestamp
    depot_id: str
    landfill_id: str
    threshold: float
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    distance_m: int
    bins: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, plan_id: _Optional[str] = ..., date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., depot_id: _Optional[str] = ..., landfill_id: _Optional[str] = ..., threshold: _Optional[float] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., distance_m: _Optional[int] = ..., bins: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class StartRouteRequest(_message.Message):
    __slots__ = ("route_id",)
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    route_id: str
    def __init__(self, route_id: _Optional[str] = ...) -> None: ...

class RecordPickupRequest(_message.Message):
    __slots__ = ("request_id", "route_id", "bin_id", "weight_kg")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_KG_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    route_id: str
    bin_id: str
    weight_kg: float
    def __init__(self, request_id: _Optional[str] = ..., route_id: _Optional[str] = ..., bin_id: _Optional[str] = ..., weight_kg: _Optional[float] = ...) -> None: ...

class SkipStopRequest(_message.Message):
    __slots__ = ("route_id", "bin_id", "reason")
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    route_id: str
    bin_id: str
    reason: str
    def __init__(self, route_id: _Optional[str] = ..., bin_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TruckPing(_message.Message):
    __slots__ = ("truck_id", "route_id", "position", "time")
    TRUCK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    truck_id: str
    route_id: str
    position: LatLon
    time: _timestamp_pb2.Timestamp
    def __init__(self, truck_id: _Optional[str] = ..., route_id: _Optional[str] = ..., position: _Optional[_Union[LatLon, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrackTruckResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class WatchRouteRequest(_message.Message):
    __slots__ = ("route_id", "from_sequence")
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    route_id: str
    from_sequence: int
    def __init__(self, route_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class RouteEvent(_message.Message):
    __slots__ = ("sequence", "type", "route_id", "bin_id", "weight_kg", "reason", "position", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_KG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: RouteEventType
    route_id: str
    bin_id: str
    weight_kg: float
    reason: str
    position: LatLon
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[RouteEventType, str]] = ..., route_id: _Optional[str] = ..., bin_id: _Optional[str] = ..., weight_kg: _Optional[float] = ..., reason: _Optional[str] = ..., position: _Optional[_Union[LatLon, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
