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

class AdjustReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADJUST_REASON_UNSPECIFIED: _ClassVar[AdjustReason]
    ADJUST_REASON_RECEIVE: _ClassVar[AdjustReason]
    ADJUST_REASON_SHRINK: _ClassVar[AdjustReason]
    ADJUST_REASON_CORRECTION: _ClassVar[AdjustReason]
    ADJUST_REASON_RESTOCK: _ClassVar[AdjustReason]

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    RESERVATION_STATE_HELD: _ClassVar[ReservationState]
    RESERVATION_STATE_COMMITTED: _ClassVar[ReservationState]
    RESERVATION_STATE_RELEASED: _ClassVar[ReservationState]
    RESERVATION_STATE_EXPIRED: _ClassVar[ReservationState]

class StockEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOCK_EVENT_KIND_UNSPECIFIED: _ClassVar[StockEventKind]
    STOCK_EVENT_KIND_ADJUSTED: _ClassVar[StockEventKind]
    STOCK_EVENT_KIND_RESERVED: _ClassVar[StockEventKind]
    STOCK_EVENT_KIND_COMMITTED: _ClassVar[StockEventKind]
    STOCK_EVENT_KIND_RELEASED: _ClassVar[StockEventKind]
    STOCK_EVENT_KIND_EXPIRED: _ClassVar[StockEventKind]
    STOCK_EVENT_KIND_LOW_STOCK: _ClassVar[StockEventKind]
ADJUST_REASON_UNSPECIFIED: AdjustReason
ADJUST_REASON_RECEIVE: AdjustReason
ADJUST_REASON_SHRINK: AdjustReason
ADJUST_REASON_CORRECTION: AdjustReason
ADJUST_REASON_RESTOCK: AdjustReason
RESERVATION_STATE_UNSPECIFIED: ReservationState
RESERVATION_STATE_HELD: ReservationState
RESERVATION_STATE_COMMITTED: ReservationState
RESERVATION_STATE_RELEASED: ReservationState
RESERVATION_STATE_EXPIRED: ReservationState
STOCK_EVENT_KIND_UNSPECIFIED: StockEventKind
STOCK_EVENT_KIND_ADJUSTED: StockEventKind
STOCK_EVENT_KIND_RESERVED: StockEventKind
STOCK_EVENT_KIND_COMMITTED: StockEventKind
STOCK_EVENT_KIND_RELEASED: StockEventKind
STOCK_EVENT_KIND_EXPIRED: StockEventKind
STOCK_EVENT_KIND_LOW_STOCK: StockEventKind

class StockLevel(_message.Message):
    __slots__ = ("sku", "location", "on_hand", "reserved", "available", "version", "update_time")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, sku: _Optional[str] = ..., location: _Optional[str] = ..., on_hand: _Optional[int] = ..., reserved: _Optional[int] = ..., available: _Optional[int] = ..., version: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AdjustStockRequest(_message.Message):
    __slots__ = ("request_id", "sku", "location", "delta", "reason", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    location: str
    delta: int
    reason: AdjustReason
    note: str
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., location: _Optional[str] = ..., delta: _Optional[int] = ..., reason: _Optional[_Union[AdjustReason, str]] = ..., note: _Optional[str] = ...) -> None: ...

class AdjustStockResponse(_message.Message):
    __slots__ = ("level",)
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    level: StockLevel
    def __init__(self, level: _Optional[_Union[StockLevel, _Mapping]] = ...) -> None: ...

class AdjustLine(_message.Message):
    __slots__ = ("sku", "location", "delta", "reason", "note")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    location: str
    delta: int
    reason: AdjustReason
    note: str
    def __init__(self, sku: _Optional[str] = ..., location: _Optional[str] = ..., delta: _Optional[int] = ..., reason: _Optional[_Union[AdjustReason, str]] = ..., note: _Optional[str] = ...) -> None: ...

class BatchAdjustRequest(_message.Message):
    __slots__ = ("request_id", "lines")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lines: _containers.RepeatedCompositeFieldContainer[AdjustLine]
    def __init__(self, request_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[AdjustLine, _Mapping]]] = ...) -> None: ...

class AdjustResult(_message.Message):
    __slots__ = ("index", "level", "code", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    level: StockLevel
    code: int
    message: str
    def __init__(self, index: _Optional[int] = ..., level: _Optional[_Union[StockLevel, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class BatchAdjustResponse(_message.Message):
    __slots__ = ("results", "applied")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AdjustResult]
    applied: int
    def __init__(self, results: _Optional[_Iterable[_Union[AdjustResult, _Mapping]]] = ..., applied: _Optional[int] = ...) -> None: ...

class GetStockRequest(_message.Message):
    __slots__ = ("sku",)
    SKU_FIELD_NUMBER: _ClassVar[int]
    sku: str
    def __init__(self, sku: _Optional[str] = ...) -> None: ...

class GetStockResponse(_message.Message):
    __slots__ = ("sku", "locations", "on_hand", "reserved", "available", "low_stock_threshold")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LOW_STOCK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    sku: str
    locations: _containers.RepeatedCompositeFieldContainer[StockLevel]
    on_hand: int
    reserved: int
    available: int
    low_stock_threshold: int
    def __init__(self, sku: _Optional[str] = ..., locations: _Optional[_Iterable[_Union[StockLevel, _Mapping]]] = ..., on_hand: _Optional[int] = ..., reserved: _Optional[int] = ..., available: _Optional[int] = ..., low_stock_threshold: _Optional[int] = ...) -> None: ...

class SetLowStockThresholdRequest(_message.Message):
    __slots__ = ("sku", "threshold")
    SKU_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    sku: str
    threshold: int
    def __init__(self, sku: _Optional[str] = ..., threshold: _Optional[int] = ...) -> None: ...

class SetLowStockThresholdResponse(_message.Message):
    __slots__ = ("sku", "threshold")
    SKU_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    sku: str
    threshold: int
    def __init__(self, sku: _Optional[str] = ..., threshold: _Optional[int] = ...) -> None: ...

class ReserveLine(_message.Message):
    __slots__ = ("sku", "quantity", "location")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    location: str
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., location: _Optional[str] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("sku", "location", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    location: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., location: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("reservation_id", "lines", "allocations", "state", "reference", "create_time", "expire_time", "update_time")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReserveLine]
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    state: ReservationState
    reference: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReserveLine, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ..., state: _Optional[_Union[ReservationState, str]] = ..., reference: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("request_id", "lines", "ttl", "reference")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReserveLine]
    ttl: _duration_pb2.Duration
    reference: str
    def __init__(self, request_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReserveLine, _Mapping]]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reference: _Optional[str] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class CommitReservationRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class CommitReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class ReleaseReservationRequest(_message.Message):
    __slots__ = ("reservation_id", "reason")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    reason: str
    def __init__(self, reservation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class GetReservationRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class GetReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class StockEvent(_message.Message):
    __slots__ = ("sequence", "kind", "sku", "location", "delta", "level", "reservation_id", "time", "total_available", "threshold")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    kind: StockEventKind
    sku: str
    location: str
    delta: int
    level: StockLevel
    reservation_id: str
    time: _timestamp_pb2.Timestamp
    total_available: int
    threshold: int
    def __init__(self, sequence: _Optional[int] = ..., kind: _Optional[_Union[StockEventKind, str]] = ..., sku: _Optional[str] = ..., location: _Optional[str] = ..., delta: _Optional[int] = ..., level: _Optional[_Union[StockLevel, _Mapping]] = ..., reservation_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_available: _Optional[int] = ..., threshold: _Optional[int] = ...) -> None: ...

class WatchStockRequest(_message.Message):
    __slots__ = ("sku_prefix", "from_sequence")
    SKU_PREFIX_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sku_prefix: str
    from_sequence: int
    def __init__(self, sku_prefix: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...
