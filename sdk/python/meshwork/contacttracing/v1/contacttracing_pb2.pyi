import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEST_TYPE_UNSPECIFIED: _ClassVar[TestType]
    TEST_TYPE_CONFIRMED: _ClassVar[TestType]
    TEST_TYPE_LIKELY: _ClassVar[TestType]
    TEST_TYPE_NEGATIVE: _ClassVar[TestType]
TEST_TYPE_UNSPECIFIED: TestType
TEST_TYPE_CONFIRMED: TestType
TEST_TYPE_LIKELY: TestType
TEST_TYPE_NEGATIVE: TestType

class IssueCodeRequest(_message.Message):
    __slots__ = ("request_id", "test_type", "symptom_onset_time", "geohash")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMPTOM_ONSET_TIME_FIELD_NUMBER: _ClassVar[int]
    GEOHASH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    test_type: TestType
    symptom_onset_time: _timestamp_pb2.Timestamp
    geohash: str
    def __init__(self, request_id: _Optional[str] = ..., test_type: _Optional[_Union[TestType, str]] = ..., symptom_onset_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., geohash: _Optional[str] = ...) -> None: ...

class IssueCodeResponse(_message.Message):
    __slots__ = ("code", "expire_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    code: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerifyCodeRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class VerifyCodeResponse(_message.Message):
    __slots__ = ("token", "test_type", "symptom_onset_time", "expire_time")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMPTOM_ONSET_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    token: str
    test_type: TestType
    symptom_onset_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., test_type: _Optional[_Union[TestType, str]] = ..., symptom_onset_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCertificateRequest(_message.Message):
    __slots__ = ("token", "ekey_hmac")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EKEY_HMAC_FIELD_NUMBER: _ClassVar[int]
    token: str
    ekey_hmac: str
    def __init__(self, token: _Optional[str] = ..., ekey_hmac: _Optional[str] = ...) -> None: ...

class GetCertificateResponse(_message.Message):
    __slots__ = ("certificate", "expire_time")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    certificate: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, certificate: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExposureKey(_message.Message):
    __slots__ = ("key_data", "rolling_start_interval_number", "rolling_period", "transmission_risk")
    KEY_DATA_FIELD_NUMBER: _ClassVar[int]
    ROLLING_START_INTERVAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ROLLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    TRANSMISSION_RISK_FIELD_NUMBER: _ClassVar[int]
    key_data: bytes
    rolling_start_interval_number: int
    rolling_period: int
    transmission_risk: int
    def __init__(self, key_data: _Optional[bytes] = ..., rolling_start_interval_number: _Optional[int] = ..., rolling_period: _Optional[int] = ..., transmission_risk: _Optional[int] = ...) -> None: ...

class PublishKeysRequest(_message.Message):
    __slots__ = ("keys", "certificate", "hmac_key", "symptom_onset_interval", "revision_token", "device_id")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    HMAC_KEY_FIELD_NUMBER: _ClassVar[int]
    SYMPTOM_ONSET_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    REVISION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ExposureKey]
    certificate: str
    hmac_key: bytes
    symptom_onset_interval: int
    revision_token: str
    device_id: str
    def __init__(self, keys: _Optional[_Iterable[_Union[ExposureKey, _Mapping]]] = ..., certificate: _Optional[str] = ..., hmac_key: _Optional[bytes] = ..., symptom_onset_interval: _Optional[int] = ..., revision_token: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class PublishKeysResponse(_message.Message):
    __slots__ = ("inserted_exposures", "revision_token")
    INSERTED_EXPOSURES_FIELD_NUMBER: _ClassVar[int]
    REVISION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    inserted_exposures: int
    revision_token: str
    def __init__(self, inserted_exposures: _Optional[int] = ..., revision_token: _Optional[str] = ...) -> None: ...

class ListExportsRequest(_message.Message):
    __slots__ = ("since", "page_size")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    page_size: int
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ...) -> None: ...

class ExportInfo(_message.Message):
    __slots__ = ("export_id", "start_time", "end_time")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, export_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListExportsResponse(_message.Message):
    __slots__ = ("exports",)
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    exports: _containers.RepeatedCompositeFieldContainer[ExportInfo]
    def __init__(self, exports: _Optional[_Iterable[_Union[ExportInfo, _Mapping]]] = ...) -> None: ...

class GetExportRequest(_message.Message):
    __slots__ = ("export_id",)
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    def __init__(self, export_id: _Optional[str] = ...) -> None: ...

class GetExportResponse(_message.Message):
    __slots__ = ("export", "archive", "key_count")
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    export: ExportInfo
    archive: bytes
    key_count: int
    def __init__(self, export: _Optional[_Union[ExportInfo, _Mapping]] = ..., archive: _Optional[bytes] = ..., key_count: _Optional[int] = ...) -> None: ...

class GetSigningKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSigningKeyResponse(_message.Message):
    __slots__ = ("export_public_key_pem", "verification_key_id", "verification_key_version", "signature_algorithm", "certificate_public_key_pem")
    EXPORT_PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    export_public_key_pem: str
    verification_key_id: str
    verification_key_version: str
    signature_algorithm: str
    certificate_public_key_pem: str
    def __init__(self, export_public_key_pem: _Optional[str] = ..., verification_key_id: _Optional[str] = ..., verification_key_version: _Optional[str] = ..., signature_algorithm: _Optional[str] = ..., certificate_public_key_pem: _Optional[str] = ...) -> None: ...

class AreaCountsRequest(_message.Message):
    __slots__ = ("geohash_prefix",)
    GEOHASH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    geohash_prefix: str
    def __init__(self, geohash_prefix: _Optional[str] = ...) -> None: ...

class AreaCount(_message.Message):
    __slots__ = ("geohash", "reports")
    GEOHASH_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    geohash: str
    reports: int
    def __init__(self, geohash: _Optional[str] = ..., reports: _Optional[int] = ...) -> None: ...

class AreaCountsResponse(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[AreaCount]
    def __init__(self, cells: _Optional[_Iterable[_Union[AreaCount, _Mapping]]] = ...) -> None: ...
