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

class SpotType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPOT_TYPE_UNSPECIFIED: _ClassVar[SpotType]
    SPOT_TYPE_COMPACT: _ClassVar[SpotType]
    SPOT_TYPE_REGULAR: _ClassVar[SpotType]
    SPOT_TYPE_LARGE: _ClassVar[SpotType]
    SPOT_TYPE_EV: _ClassVar[SpotType]
    SPOT_TYPE_ACCESSIBLE: _ClassVar[SpotType]

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    RESERVATION_STATE_HELD: _ClassVar[ReservationState]
    RESERVATION_STATE_CONFIRMED: _ClassVar[ReservationState]
    RESERVATION_STATE_CHECKED_IN: _ClassVar[ReservationState]
    RESERVATION_STATE_CHECKED_OUT: _ClassVar[ReservationState]
    RESERVATION_STATE_CANCELLED: _ClassVar[ReservationState]
    RESERVATION_STATE_EXPIRED: _ClassVar[ReservationState]
    RESERVATION_STATE_NO_SHOW: _ClassVar[ReservationState]
SPOT_TYPE_UNSPECIFIED: SpotType
SPOT_TYPE_COMPACT: SpotType
SPOT_TYPE_REGULAR: SpotType
SPOT_TYPE_LARGE: SpotType
SPOT_TYPE_EV: SpotType
SPOT_TYPE_ACCESSIBLE: SpotType
RESERVATION_STATE_UNSPECIFIED: ReservationState
RESERVATION_STATE_HELD: ReservationState
RESERVATION_STATE_CONFIRMED: ReservationState
RESERVATION_STATE_CHECKED_IN: ReservationState
RESERVATION_STATE_CHECKED_OUT: ReservationState
RESERVATION_STATE_CANCELLED: ReservationState
RESERVATION_STATE_EXPIRED: ReservationState
RESERVATION_STATE_NO_SHOW: ReservationState

class Price(_message.Message):
    __slots__ = ("type", "hourly_minor")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HOURLY_MINOR_FIELD_NUMBER: _ClassVar[int]
    type: SpotType
    hourly_minor: int
    def __init__(self, type: _Optional[_Union[SpotType, str]] = ..., hourly_minor: _Optional[int] = ...) -> None: ...

class Spot(_message.Message):
    __slots__ = ("spot_id", "type", "level_id")
    SPOT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_ID_FIELD_NUMBER: _ClassVar[int]
    spot_id: str
    type: SpotType
    level_id: str
    def __init__(self, spot_id: _Optional[str] = ..., type: _Optional[_Union[SpotType, str]] = ..., level_id: _Optional[str] = ...) -> None: ...

class SpotBlock(_message.Message):
    __slots__ = ("type", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: SpotType
    count: int
    def __init__(self, type: _Optional[_Union[SpotType, str]] = ..., count: _Optional[int] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("level_id", "name", "spots", "blocks")
    LEVEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPOTS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    level_id: str
    name: str
    spots: _containers.RepeatedCompositeFieldContainer[Spot]
    blocks: _containers.RepeatedCompositeFieldContainer[SpotBlock]
    def __init__(self, level_id: _Optional[str] = ..., name: _Optional[str] = ..., spots: _Optional[_Iterable[_Union[Spot, _Mapping]]] = ..., blocks: _Optional[_Iterable[_Union[SpotBlock, _Mapping]]] = ...) -> None: ...

class Lot(_message.Message):
    __slots__ = ("lot_id", "name", "currency", "prices", "levels", "spot_count", "create_time")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    SPOT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    name: str
    currency: str
    prices: _containers.RepeatedCompositeFieldContainer[Price]
    levels: _containers.RepeatedCompositeFieldContainer[Level]
    spot_count: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, lot_id: _Optional[str] = ..., name: _Optional[str] = ..., currency: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[Price, _Mapping]]] = ..., levels: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., spot_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateLotRequest(_message.Message):
    __slots__ = ("request_id", "lot")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lot: Lot
    def __init__(self, request_id: _Optional[str] = ..., lot: _Optional[_Union[Lot, _Mapping]] = ...) -> None: ...

class CreateLotResponse(_message.Message):
    __slots__ = ("lot",)
    LOT_FIELD_NUMBER: _ClassVar[int]
    lot: Lot
    def __init__(self, lot: _Optional[_Union[Lot, _Mapping]] = ...) -> None: ...

class GetLotRequest(_message.Message):
    __slots__ = ("lot_id",)
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    def __init__(self, lot_id: _Optional[str] = ...) -> None: ...

class GetLotResponse(_message.Message):
    __slots__ = ("lot",)
    LOT_FIELD_NUMBER: _ClassVar[int]
    lot: Lot
    def __init__(self, lot: _Optional[_Union[Lot, _Mapping]] = ...) -> None: ...

class SearchAvailabilityRequest(_message.Message):
    __slots__ = ("lot_id", "type", "start_time", "start_in", "end_time", "duration", "limit")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    START_IN_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    type: SpotType
    start_time: _timestamp_pb2.Timestamp
    start_in: _duration_pb2.Duration
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    limit: int
    def __init__(self, lot_id: _Optional[str] = ..., type: _Optional[_Union[SpotType, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_in: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class SearchAvailabilityResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "free_count", "total_count", "spots", "price_minor", "currency")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FREE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPOTS_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    free_count: int
    total_count: int
    spots: _containers.RepeatedCompositeFieldContainer[Spot]
    price_minor: int
    currency: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., free_count: _Optional[int] = ..., total_count: _Optional[int] = ..., spots: _Optional[_Iterable[_Union[Spot, _Mapping]]] = ..., price_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("request_id", "lot_id", "type", "spot_id", "start_time", "start_in", "duration", "end_time", "plate", "user_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SPOT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    START_IN_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lot_id: str
    type: SpotType
    spot_id: str
    start_time: _timestamp_pb2.Timestamp
    start_in: _duration_pb2.Duration
    duration: _duration_pb2.Duration
    end_time: _timestamp_pb2.Timestamp
    plate: str
    user_id: str
    def __init__(self, request_id: _Optional[str] = ..., lot_id: _Optional[str] = ..., type: _Optional[_Union[SpotType, str]] = ..., spot_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_in: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plate: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("reservation_id", "lot_id", "spot_id", "level_id", "type", "plate", "user_id", "state", "start_time", "end_time", "hold_expire_time", "hourly_minor", "price_minor", "currency", "refund_minor", "overstay_minor", "total_minor", "check_in_time", "check_out_time", "create_time", "update_time")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    SPOT_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    HOLD_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    HOURLY_MINOR_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REFUND_MINOR_FIELD_NUMBER: _ClassVar[int]
    OVERSTAY_MINOR_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MINOR_FIELD_NUMBER: _ClassVar[int]
    CHECK_IN_TIME_FIELD_NUMBER: _ClassVar[int]
    CHECK_OUT_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    lot_id: str
    spot_id: str
    level_id: str
    type: SpotType
    plate: str
    user_id: str
    state: ReservationState
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    hold_expire_time: _timestamp_pb2.Timestamp
    hourly_minor: int
    price_minor: int
    currency: str
    refund_minor: int
    overstay_minor: int
    total_minor: int
    check_in_time: _timestamp_pb2.Timestamp
    check_out_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., lot_id: _Optional[str] = ..., spot_id: _Optional[str] = ..., level_id: _Optional[str] = ..., type: _Optional[_Union[SpotType, str]] = ..., plate: _Optional[str] = ..., user_id: _Optional[str] = ..., state: _Optional[_Union[ReservationState, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hold_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hourly_minor: _Optional[int] = ..., price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., refund_minor: _Optional[int] = ..., overstay_minor: _Optional[int] = ..., total_minor: _Optional[int] = ..., check_in_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., check_out_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConfirmReservationRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class ConfirmReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class CancelReservationRequest(_message.Message):
    __slots__ = ("reservation_id", "reason")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    reason: str
    def __init__(self, reservation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class CheckInRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class CheckInResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class CheckOutRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class CheckOutResponse(_message.Message):
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

class ListReservationsRequest(_message.Message):
    __slots__ = ("plate", "lot_id", "start_time", "end_time", "page_size", "page_token")
    PLATE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plate: str
    lot_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, plate: _Optional[str] = ..., lot_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReservationsResponse(_message.Message):
    __slots__ = ("reservations", "next_page_token")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    next_page_token: str
    def __init__(self, reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
