import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReleaseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_STATUS_UNSPECIFIED: _ClassVar[ReleaseStatus]
    RELEASE_STATUS_IN_PROGRESS: _ClassVar[ReleaseStatus]
    RELEASE_STATUS_HALTED: _ClassVar[ReleaseStatus]
    RELEASE_STATUS_COMPLETED: _ClassVar[ReleaseStatus]

class Chart(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHART_UNSPECIFIED: _ClassVar[Chart]
    CHART_TOP_FREE: _ClassVar[Chart]
    CHART_TOP_PAID: _ClassVar[Chart]
    CHART_TRENDING: _ClassVar[Chart]
RELEASE_STATUS_UNSPECIFIED: ReleaseStatus
RELEASE_STATUS_IN_PROGRESS: ReleaseStatus
RELEASE_STATUS_HALTED: ReleaseStatus
RELEASE_STATUS_COMPLETED: ReleaseStatus
CHART_UNSPECIFIED: Chart
CHART_TOP_FREE: Chart
CHART_TOP_PAID: Chart
CHART_TRENDING: Chart

class Developer(_message.Message):
    __slots__ = ("developer_id", "name", "owner_user_id", "create_time")
    DEVELOPER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    developer_id: str
    name: str
    owner_user_id: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, developer_id: _Optional[str] = ..., name: _Optional[str] = ..., owner_user_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("package_name", "developer_id", "developer_name", "title", "category", "description", "icon_url", "price_minor", "currency", "create_time")
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    DEVELOPER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVELOPER_NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ICON_URL_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    package_name: str
    developer_id: str
    developer_name: str
    title: str
    category: str
    description: str
    icon_url: str
    price_minor: int
    currency: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, package_name: _Optional[str] = ..., developer_id: _Optional[str] = ..., developer_name: _Optional[str] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., description: _Optional[str] = ..., icon_url: _Optional[str] = ..., price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("package_name", "version_code", "version_name", "min_sdk", "artifact_sha256", "size_bytes", "notes", "upload_time")
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_CODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_SDK_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    package_name: str
    version_code: int
    version_name: str
    min_sdk: int
    artifact_sha256: str
    size_bytes: int
    notes: str
    upload_time: _timestamp_pb2.Timestamp
    def __init__(self, package_name: _Optional[str] = ..., version_code: _Optional[int] = ..., version_name: _Optional[str] = ..., min_sdk: _Optional[int] = ..., artifact_sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., notes: _Optional[str] = ..., upload_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrackRelease(_message.Message):
    __slots__ = ("version_code", "version_name", "min_sdk", "status", "user_fraction")
    VERSION_CODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_SDK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    version_code: int
    version_name: str
    min_sdk: int
    status: ReleaseStatus
    user_fraction: float
    def __init__(self, version_code: _Optional[int] = ..., version_name: _Optional[str] = ..., min_sdk: _Optional[int] = ..., status: _Optional[_Union[ReleaseStatus, str]] = ..., user_fraction: _Optional[float] = ...) -> None: ...

class Track(_message.Message):
    __slots__ = ("track", "releases")
    TRACK_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    track: str
    releases: _containers.RepeatedCompositeFieldContainer[TrackRelease]
    def __init__(self, track: _Optional[str] = ..., releases: _Optional[_Iterable[_Union[TrackRelease, _Mapping]]] = ...) -> None: ...

class RatingSummary(_message.Message):
    __slots__ = ("average", "count")
    AVERAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    average: float
    count: int
    def __init__(self, average: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class CreateDeveloperRequest(_message.Message):
    __slots__ = ("request_id", "developer_id", "name", "owner_user_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEVELOPER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    developer_id: str
    name: str
    owner_user_id: str
    def __init__(self, request_id: _Optional[str] = ..., developer_id: _Optional[str] = ..., name: _Optional[str] = ..., owner_user_id: _Optional[str] = ...) -> None: ...

class CreateDeveloperResponse(_message.Message):
    __slots__ = ("developer",)
    DEVELOPER_FIELD_NUMBER: _ClassVar[int]
    developer: Developer
    def __init__(self, developer: _Optional[_Union[Developer, _Mapping]] = ...) -> None: ...

class CreateAppRequest(_message.Message):
    __slots__ = ("request_id", "app")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    app: App
    def __init__(self, request_id: _Optional[str] = ..., app: _Optional[_Union[App, _Mapping]] = ...) -> None: ...

class CreateAppResponse(_message.Message):
    __slots__ = ("app",)
    APP_FIELD_NUMBER: _ClassVar[int]
    app: App
    def __init__(self, app: _Optional[_Union[App, _Mapping]] = ...) -> None: ...

class UploadReleaseRequest(_message.Message):
    __slots__ = ("request_id", "package_name", "version_code", "version_name", "min_sdk", "artifact_sha256", "size_bytes", "notes")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_CODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_SDK_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    package_name: str
    version_code: int
    version_name: str
    min_sdk: int
    artifact_sha256: str
    size_bytes: int
    notes: str
    def __init__(self, request_id: _Optional[str] = ..., package_name: _Optional[str] = ..., version_code: _Optional[int] = ..., version_name: _Optional[str] = ..., min_sdk: _Optional[int] = ..., artifact_sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., notes: _Optional[str] = ...) -> None: ...

class UploadReleaseResponse(_message.Message):
    __slots__ = ("release",)
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    release: Release
    def __init__(self, release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class SetTrackReleaseRequest(_message.Message):
    __slots__ = ("request_id", "package_name", "track", "version_code", "user_fraction")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    VERSION_CODE_FIELD_NUMBER: _ClassVar[int]
    USER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    package_name: str
    track: str
    version_code: int
    user_fraction: float
    def __init__(self, request_id: _Optional[str] = ..., package_name: _Optional[str] = ..., track: _Optional[str] = ..., version_code: _Optional[int] = ..., user_fraction: _Optional[float] = ...) -> None: ...

class SetTrackReleaseResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class UpdateRolloutRequest(_message.Message):
    __slots__ = ("request_id", "package_name", "track", "user_fraction")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    USER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    package_name: str
    track: str
    user_fraction: float
    def __init__(self, request_id: _Optional[str] = ..., package_name: _Optional[str] = ..., track: _Optional[str] = ..., user_fraction: _Optional[float] = ...) -> None: ...

class UpdateRolloutResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class HaltRolloutRequest(_message.Message):
    __slots__ = ("request_id", "package_name", "track")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    package_name: str
    track: str
    def __init__(self, request_id: _Optional[str] = ..., package_name: _Optional[str] = ..., track: _Optional[str] = ...) -> None: ...

class HaltRolloutResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class ResumeRolloutRequest(_message.Message):
    __slots__ = ("request_id", "package_name", "track")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    package_name: str
    track: str
    def __init__(self, request_id: _Optional[str] = ..., package_name: _Optional[str] = ..., track: _Optional[str] = ...) -> None: ...

class ResumeRolloutResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class CompleteRolloutRequest(_message.Message):
    __slots__ = ("request_id", "package_name", "track")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    package_name: str
    track: str
    def __init__(self, request_id: _Optional[str] = ..., package_name: _Optional[str] = ..., track: _Optional[str] = ...) -> None: ...

class CompleteRolloutResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class PromoteReleaseRequest(_message.Message):
    __slots__ = ("request_id", "package_name", "from_track", "to_track", "user_fraction")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_TRACK_FIELD_NUMBER: _ClassVar[int]
    TO_TRACK_FIELD_NUMBER: _ClassVar[int]
    USER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    package_name: str
    from_track: str
    to_track: str
    user_fraction: float
    def __init__(self, request_id: _Optional[str] = ..., package_name: _Optional[str] = ..., from_track: _Optional[str] = ..., to_track: _Optional[str] = ..., user_fraction: _Optional[float] = ...) -> None: ...

class PromoteReleaseResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class CheckUpdateRequest(_message.Message):
    __slots__ = ("package_name", "installed_version_code", "device_id", "sdk_level", "track")
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_VERSION_CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SDK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    package_name: str
    installed_version_code: int
    device_id: str
    sdk_level: int
    track: str
    def __init__(self, package_name: _Optional[str] = ..., installed_version_code: _Optional[int] = ..., device_id: _Optional[str] = ..., sdk_level: _Optional[int] = ..., track: _Optional[str] = ...) -> None: ...

class CheckUpdateResponse(_message.Message):
    __slots__ = ("update_available", "release", "track")
    UPDATE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    update_available: bool
    release: TrackRelease
    track: str
    def __init__(self, update_available: _Optional[bool] = ..., release: _Optional[_Union[TrackRelease, _Mapping]] = ..., track: _Optional[str] = ...) -> None: ...

class RecordInstallRequest(_message.Message):
    __slots__ = ("package_name", "device_id", "version_code")
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_CODE_FIELD_NUMBER: _ClassVar[int]
    package_name: str
    device_id: str
    version_code: int
    def __init__(self, package_name: _Optional[str] = ..., device_id: _Optional[str] = ..., version_code: _Optional[int] = ...) -> None: ...

class RecordInstallResponse(_message.Message):
    __slots__ = ("counted",)
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    counted: bool
    def __init__(self, counted: _Optional[bool] = ...) -> None: ...

class RecordUninstallRequest(_message.Message):
    __slots__ = ("package_name", "device_id")
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    package_name: str
    device_id: str
    def __init__(self, package_name: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class RecordUninstallResponse(_message.Message):
    __slots__ = ("counted",)
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    counted: bool
    def __init__(self, counted: _Optional[bool] = ...) -> None: ...

class GetAppDetailsRequest(_message.Message):
    __slots__ = ("package_name",)
    PACKAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    package_name: str
    def __init__(self, package_name: _Optional[str] = ...) -> None: ...

class GetAppDetailsResponse(_message.Message):
    __slots__ = ("app", "latest_production_release", "total_installs", "active_installs", "rating", "tracks")
    APP_FIELD_NUMBER: _ClassVar[int]
    LATEST_PRODUCTION_RELEASE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INSTALLS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INSTALLS_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    app: App
    latest_production_release: TrackRelease
    total_installs: int
    active_installs: int
    rating: RatingSummary
    tracks: _containers.RepeatedCompositeFieldContainer[Track]
    def __init__(self, app: _Optional[_Union[App, _Mapping]] = ..., latest_production_release: _Optional[_Union[TrackRelease, _Mapping]] = ..., total_installs: _Optional[int] = ..., active_installs: _Optional[int] = ..., rating: _Optional[_Union[RatingSummary, _Mapping]] = ..., tracks: _Optional[_Iterable[_Union[Track, _Mapping]]] = ...) -> None: ...

class SearchAppsRequest(_message.Message):
    __slots__ = ("query", "category", "page_size", "page_token")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    query: str
    category: str
    page_size: int
    page_token: str
    def __init__(self, query: _Optional[str] = ..., category: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("app", "score")
    APP_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    app: App
    score: float
    def __init__(self, app: _Optional[_Union[App, _Mapping]] = ..., score: _Optional[float] = ...) -> None: ...

class SearchAppsResponse(_message.Message):
    __slots__ = ("hits", "total", "next_page_token")
    HITS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    total: int
    next_page_token: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., total: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TopChartsRequest(_message.Message):
    __slots__ = ("category", "chart", "page_size", "page_token")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CHART_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    category: str
    chart: Chart
    page_size: int
    page_token: str
    def __init__(self, category: _Optional[str] = ..., chart: _Optional[_Union[Chart, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ChartEntry(_message.Message):
    __slots__ = ("rank", "app", "total_installs", "installs_last_7_days", "installs_prior_7_days", "trending_score")
    RANK_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INSTALLS_FIELD_NUMBER: _ClassVar[int]
    INSTALLS_LAST_7_DAYS_FIELD_NUMBER: _ClassVar[int]
    INSTALLS_PRIOR_7_DAYS_FIELD_NUMBER: _ClassVar[int]
    TRENDING_SCORE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    app: App
    total_installs: int
    installs_last_7_days: int
    installs_prior_7_days: int
    trending_score: float
    def __init__(self, rank: _Optional[int] = ..., app: _Optional[_Union[App, _Mapping]] = ..., total_installs: _Optional[int] = ..., installs_last_7_days: _Optional[int] = ..., installs_prior_7_days: _Optional[int] = ..., trending_score: _Optional[float] = ...) -> None: ...

class TopChartsResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ChartEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[ChartEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
