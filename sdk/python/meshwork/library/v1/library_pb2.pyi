import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_TYPE_UNSPECIFIED: _ClassVar[MemberType]
    MEMBER_TYPE_STUDENT: _ClassVar[MemberType]
    MEMBER_TYPE_ADULT: _ClassVar[MemberType]
    MEMBER_TYPE_STAFF: _ClassVar[MemberType]

class CopyStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COPY_STATUS_UNSPECIFIED: _ClassVar[CopyStatus]
    COPY_STATUS_AVAILABLE: _ClassVar[CopyStatus]
    COPY_STATUS_ON_LOAN: _ClassVar[CopyStatus]
    COPY_STATUS_ON_HOLD_SHELF: _ClassVar[CopyStatus]
    COPY_STATUS_LOST: _ClassVar[CopyStatus]
    COPY_STATUS_WITHDRAWN: _ClassVar[CopyStatus]

class HoldState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOLD_STATE_UNSPECIFIED: _ClassVar[HoldState]
    HOLD_STATE_WAITING: _ClassVar[HoldState]
    HOLD_STATE_READY_FOR_PICKUP: _ClassVar[HoldState]
MEMBER_TYPE_UNSPECIFIED: MemberType
MEMBER_TYPE_STUDENT: MemberType
MEMBER_TYPE_ADULT: MemberType
MEMBER_TYPE_STAFF: MemberType
COPY_STATUS_UNSPECIFIED: CopyStatus
COPY_STATUS_AVAILABLE: CopyStatus
COPY_STATUS_ON_LOAN: CopyStatus
COPY_STATUS_ON_HOLD_SHELF: CopyStatus
COPY_STATUS_LOST: CopyStatus
COPY_STATUS_WITHDRAWN: CopyStatus
HOLD_STATE_UNSPECIFIED: HoldState
HOLD_STATE_WAITING: HoldState
HOLD_STATE_READY_FOR_PICKUP: HoldState

class Title(_message.Message):
    __slots__ = ("isbn", "title", "authors", "subjects", "total_copies", "available_copies", "holds_waiting", "create_time")
    ISBN_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    AUTHORS_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COPIES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_COPIES_FIELD_NUMBER: _ClassVar[int]
    HOLDS_WAITING_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    isbn: str
    title: str
    authors: _containers.RepeatedScalarFieldContainer[str]
    subjects: _containers.RepeatedScalarFieldContainer[str]
    total_copies: int
    available_copies: int
    holds_waiting: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, isbn: _Optional[str] = ..., title: _Optional[str] = ..., authors: _Optional[_Iterable[str]] = ..., subjects: _Optional[_Iterable[str]] = ..., total_copies: _Optional[int] = ..., available_copies: _Optional[int] = ..., holds_waiting: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Copy(_message.Message):
    __slots__ = ("barcode", "isbn", "branch", "status", "replacement_cost_minor", "currency", "borrower", "due_time", "hold_for", "pickup_deadline", "renewals")
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    ISBN_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_COST_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BORROWER_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    HOLD_FOR_FIELD_NUMBER: _ClassVar[int]
    PICKUP_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    RENEWALS_FIELD_NUMBER: _ClassVar[int]
    barcode: str
    isbn: str
    branch: str
    status: CopyStatus
    replacement_cost_minor: int
    currency: str
    borrower: str
    due_time: _timestamp_pb2.Timestamp
    hold_for: str
    pickup_deadline: _timestamp_pb2.Timestamp
    renewals: int
    def __init__(self, barcode: _Optional[str] = ..., isbn: _Optional[str] = ..., branch: _Optional[str] = ..., status: _Optional[_Union[CopyStatus, str]] = ..., replacement_cost_minor: _Optional[int] = ..., currency: _Optional[str] = ..., borrower: _Optional[str] = ..., due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hold_for: _Optional[str] = ..., pickup_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., renewals: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("member_id", "name", "type", "create_time")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    name: str
    type: MemberType
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, member_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[MemberType, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Loan(_message.Message):
    __slots__ = ("barcode", "isbn", "title", "checkout_time", "due_time", "renewals", "overdue_days", "fine_accrued_minor")
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    ISBN_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CHECKOUT_TIME_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    RENEWALS_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_DAYS_FIELD_NUMBER: _ClassVar[int]
    FINE_ACCRUED_MINOR_FIELD_NUMBER: _ClassVar[int]
    barcode: str
    isbn: str
    title: str
    checkout_time: _timestamp_pb2.Timestamp
    due_time: _timestamp_pb2.Timestamp
    renewals: int
    overdue_days: int
    fine_accrued_minor: int
    def __init__(self, barcode: _Optional[str] = ..., isbn: _Optional[str] = ..., title: _Optional[str] = ..., checkout_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., renewals: _Optional[int] = ..., overdue_days: _Optional[int] = ..., fine_accrued_minor: _Optional[int] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("member_id", "isbn", "title", "state", "queue_position", "placed_time", "barcode", "pickup_deadline")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ISBN_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    PLACED_TIME_FIELD_NUMBER: _ClassVar[int]
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    PICKUP_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    isbn: str
    title: str
    state: HoldState
    queue_position: int
    placed_time: _timestamp_pb2.Timestamp
    barcode: str
    pickup_deadline: _timestamp_pb2.Timestamp
    def __init__(self, member_id: _Optional[str] = ..., isbn: _Optional[str] = ..., title: _Optional[str] = ..., state: _Optional[_Union[HoldState, str]] = ..., queue_position: _Optional[int] = ..., placed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., barcode: _Optional[str] = ..., pickup_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddTitleRequest(_message.Message):
    __slots__ = ("request_id", "title")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    title: Title
    def __init__(self, request_id: _Optional[str] = ..., title: _Optional[_Union[Title, _Mapping]] = ...) -> None: ...

class AddTitleResponse(_message.Message):
    __slots__ = ("title",)
    TITLE_FIELD_NUMBER: _ClassVar[int]
    title: Title
    def __init__(self, title: _Optional[_Union[Title, _Mapping]] = ...) -> None: ...

class GetTitleRequest(_message.Message):
    __slots__ = ("isbn",)
    ISBN_FIELD_NUMBER: _ClassVar[int]
    isbn: str
    def __init__(self, isbn: _Optional[str] = ...) -> None: ...

class GetTitleResponse(_message.Message):
    __slots__ = ("title", "copies", "holds")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    title: Title
    copies: _containers.RepeatedCompositeFieldContainer[Copy]
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    def __init__(self, title: _Optional[_Union[Title, _Mapping]] = ..., copies: _Optional[_Iterable[_Union[Copy, _Mapping]]] = ..., holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ...) -> None: ...

class AddCopyRequest(_message.Message):
    __slots__ = ("request_id", "copy")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    copy: Copy
    def __init__(self, request_id: _Optional[str] = ..., copy: _Optional[_Union[Copy, _Mapping]] = ...) -> None: ...

class AddCopyResponse(_message.Message):
    __slots__ = ("copy",)
    COPY_FIELD_NUMBER: _ClassVar[int]
    copy: Copy
    def __init__(self, copy: _Optional[_Union[Copy, _Mapping]] = ...) -> None: ...

class GetCopyRequest(_message.Message):
    __slots__ = ("barcode",)
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    barcode: str
    def __init__(self, barcode: _Optional[str] = ...) -> None: ...

class GetCopyResponse(_message.Message):
    __slots__ = ("copy",)
    COPY_FIELD_NUMBER: _ClassVar[int]
    copy: Copy
    def __init__(self, copy: _Optional[_Union[Copy, _Mapping]] = ...) -> None: ...

class RegisterMemberRequest(_message.Message):
    __slots__ = ("request_id", "member")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    member: Member
    def __init__(self, request_id: _Optional[str] = ..., member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class RegisterMemberResponse(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: Member
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class SearchCatalogRequest(_message.Message):
    __slots__ = ("query", "page_size", "page_token")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    query: str
    page_size: int
    page_token: str
    def __init__(self, query: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("title", "score")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    title: Title
    score: float
    def __init__(self, title: _Optional[_Union[Title, _Mapping]] = ..., score: _Optional[float] = ...) -> None: ...

class SearchCatalogResponse(_message.Message):
    __slots__ = ("hits", "total_size", "next_page_token")
    HITS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    total_size: int
    next_page_token: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., total_size: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CheckoutRequest(_message.Message):
    __slots__ = ("request_id", "member_id", "barcode")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    member_id: str
    barcode: str
    def __init__(self, request_id: _Optional[str] = ..., member_id: _Optional[str] = ..., barcode: _Optional[str] = ...) -> None: ...

class CheckoutResponse(_message.Message):
    __slots__ = ("loan", "copy")
    LOAN_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    loan: Loan
    copy: Copy
    def __init__(self, loan: _Optional[_Union[Loan, _Mapping]] = ..., copy: _Optional[_Union[Copy, _Mapping]] = ...) -> None: ...

class ReturnRequest(_message.Message):
    __slots__ = ("request_id", "barcode")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    barcode: str
    def __init__(self, request_id: _Optional[str] = ..., barcode: _Optional[str] = ...) -> None: ...

class ReturnResponse(_message.Message):
    __slots__ = ("copy", "borrower", "fine_charged_minor")
    COPY_FIELD_NUMBER: _ClassVar[int]
    BORROWER_FIELD_NUMBER: _ClassVar[int]
    FINE_CHARGED_MINOR_FIELD_NUMBER: _ClassVar[int]
    copy: Copy
    borrower: str
    fine_charged_minor: int
    def __init__(self, copy: _Optional[_Union[Copy, _Mapping]] = ..., borrower: _Optional[str] = ..., fine_charged_minor: _Optional[int] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("request_id", "member_id", "barcode")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    member_id: str
    barcode: str
    def __init__(self, request_id: _Optional[str] = ..., member_id: _Optional[str] = ..., barcode: _Optional[str] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("loan",)
    LOAN_FIELD_NUMBER: _ClassVar[int]
    loan: Loan
    def __init__(self, loan: _Optional[_Union[Loan, _Mapping]] = ...) -> None: ...

class PlaceHoldRequest(_message.Message):
    __slots__ = ("request_id", "member_id", "isbn")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ISBN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    member_id: str
    isbn: str
    def __init__(self, request_id: _Optional[str] = ..., member_id: _Optional[str] = ..., isbn: _Optional[str] = ...) -> None: ...

class PlaceHoldResponse(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ...) -> None: ...

class CancelHoldRequest(_message.Message):
    __slots__ = ("member_id", "isbn")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ISBN_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    isbn: str
    def __init__(self, member_id: _Optional[str] = ..., isbn: _Optional[str] = ...) -> None: ...

class CancelHoldResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PayFineRequest(_message.Message):
    __slots__ = ("request_id", "member_id", "amount_minor", "currency")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    member_id: str
    amount_minor: int
    currency: str
    def __init__(self, request_id: _Optional[str] = ..., member_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class PayFineResponse(_message.Message):
    __slots__ = ("fines_owed_minor",)
    FINES_OWED_MINOR_FIELD_NUMBER: _ClassVar[int]
    fines_owed_minor: int
    def __init__(self, fines_owed_minor: _Optional[int] = ...) -> None: ...

class MemberAccountRequest(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class MemberAccountResponse(_message.Message):
    __slots__ = ("member", "loans", "holds", "fines_charged_minor", "fines_accruing_minor", "fines_owed_minor", "currency", "loan_limit", "max_owed_minor", "borrowing_blocked")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    LOANS_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    FINES_CHARGED_MINOR_FIELD_NUMBER: _ClassVar[int]
    FINES_ACCRUING_MINOR_FIELD_NUMBER: _ClassVar[int]
    FINES_OWED_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LOAN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_OWED_MINOR_FIELD_NUMBER: _ClassVar[int]
    BORROWING_BLOCKED_FIELD_NUMBER: _ClassVar[int]
    member: Member
    loans: _containers.RepeatedCompositeFieldContainer[Loan]
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    fines_charged_minor: int
    fines_accruing_minor: int
    fines_owed_minor: int
    currency: str
    loan_limit: int
    max_owed_minor: int
    borrowing_blocked: str
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., loans: _Optional[_Iterable[_Union[Loan, _Mapping]]] = ..., holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ..., fines_charged_minor: _Optional[int] = ..., fines_accruing_minor: _Optional[int] = ..., fines_owed_minor: _Optional[int] = ..., currency: _Optional[str] = ..., loan_limit: _Optional[int] = ..., max_owed_minor: _Optional[int] = ..., borrowing_blocked: _Optional[str] = ...) -> None: ...
