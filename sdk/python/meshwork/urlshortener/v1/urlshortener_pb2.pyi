from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShortenRequest(_message.Message):
    __slots__ = ("long_url", "custom_alias", "ttl_seconds", "request_id")
    LONG_URL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_ALIAS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    long_url: str
    custom_alias: str
    ttl_seconds: int
    request_id: str
    def __init__(self, long_url: _Optional[str] = ..., custom_alias: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("code", "long_url", "short_url", "created_at_ms", "expires_at_ms", "custom_alias", "owner")
    CODE_FIELD_NUMBER: _ClassVar[int]
    LONG_URL_FIELD_NUMBER: _ClassVar[int]
    SHORT_URL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_ALIAS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    code: str
    long_url: str
    short_url: str
    created_at_ms: int
    expires_at_ms: int
    custom_alias: bool
    owner: str
    def __init__(self, code: _Optional[str] = ..., long_url: _Optional[str] = ..., short_url: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., custom_alias: _Optional[bool] = ..., owner: _Optional[str] = ...) -> None: ...

class ShortenResponse(_message.Message):
    __slots__ = ("code", "short_url", "link")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SHORT_URL_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    code: str
    short_url: str
    link: Link
    def __init__(self, code: _Optional[str] = ..., short_url: _Optional[str] = ..., link: _Optional[_Union[Link, _Mapping]] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("code", "referrer", "skip_click")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REFERRER_FIELD_NUMBER: _ClassVar[int]
    SKIP_CLICK_FIELD_NUMBER: _ClassVar[int]
    code: str
    referrer: str
    skip_click: bool
    def __init__(self, code: _Optional[str] = ..., referrer: _Optional[str] = ..., skip_click: _Optional[bool] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("long_url", "link")
    LONG_URL_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    long_url: str
    link: Link
    def __init__(self, long_url: _Optional[str] = ..., link: _Optional[_Union[Link, _Mapping]] = ...) -> None: ...

class GetLinkRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class GetLinkResponse(_message.Message):
    __slots__ = ("link",)
    LINK_FIELD_NUMBER: _ClassVar[int]
    link: Link
    def __init__(self, link: _Optional[_Union[Link, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("code", "days", "top_referrers")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    TOP_REFERRERS_FIELD_NUMBER: _ClassVar[int]
    code: str
    days: int
    top_referrers: int
    def __init__(self, code: _Optional[str] = ..., days: _Optional[int] = ..., top_referrers: _Optional[int] = ...) -> None: ...

class DailyClicks(_message.Message):
    __slots__ = ("date", "clicks")
    DATE_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    date: str
    clicks: int
    def __init__(self, date: _Optional[str] = ..., clicks: _Optional[int] = ...) -> None: ...

class ReferrerClicks(_message.Message):
    __slots__ = ("referrer", "clicks")
    REFERRER_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    referrer: str
    clicks: int
    def __init__(self, referrer: _Optional[str] = ..., clicks: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("code", "total_clicks", "daily", "top_referrers")
    CODE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CLICKS_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    TOP_REFERRERS_FIELD_NUMBER: _ClassVar[int]
    code: str
    total_clicks: int
    daily: _containers.RepeatedCompositeFieldContainer[DailyClicks]
    top_referrers: _containers.RepeatedCompositeFieldContainer[ReferrerClicks]
    def __init__(self, code: _Optional[str] = ..., total_clicks: _Optional[int] = ..., daily: _Optional[_Iterable[_Union[DailyClicks, _Mapping]]] = ..., top_referrers: _Optional[_Iterable[_Union[ReferrerClicks, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
