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

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_BACKWARD: _ClassVar[Direction]
    DIRECTION_FORWARD: _ClassVar[Direction]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_BACKWARD: Direction
DIRECTION_FORWARD: Direction

class Label(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("timestamp", "line", "structured_metadata")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_METADATA_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    line: str
    structured_metadata: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., line: _Optional[str] = ..., structured_metadata: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class Stream(_message.Message):
    __slots__ = ("labels", "entries")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    labels: str
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, labels: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("tenant", "streams")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    streams: _containers.RepeatedCompositeFieldContainer[Stream]
    def __init__(self, tenant: _Optional[str] = ..., streams: _Optional[_Iterable[_Union[Stream, _Mapping]]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("accepted", "rejected", "rejected_by_reason", "errors")
    class RejectedByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    rejected_by_reason: _containers.ScalarMap[str, int]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rejected_by_reason: _Optional[_Mapping[str, int]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("tenant", "logql", "start", "end", "limit", "direction")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LOGQL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    logql: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    limit: int
    direction: Direction
    def __init__(self, tenant: _Optional[str] = ..., logql: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ...) -> None: ...

class QueryRangeRequest(_message.Message):
    __slots__ = ("tenant", "logql", "start", "end", "step", "limit", "direction")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LOGQL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    logql: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    step: _duration_pb2.Duration
    limit: int
    direction: Direction
    def __init__(self, tenant: _Optional[str] = ..., logql: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("timestamp", "value")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class MetricSeries(_message.Message):
    __slots__ = ("metric", "points")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    metric: _containers.RepeatedCompositeFieldContainer[Label]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, metric: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class QueryStats(_message.Message):
    __slots__ = ("chunks_total", "chunks_skipped_by_bloom", "lines_scanned", "bytes_scanned", "exec_time_ns")
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_SKIPPED_BY_BLOOM_FIELD_NUMBER: _ClassVar[int]
    LINES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    BYTES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    EXEC_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    chunks_total: int
    chunks_skipped_by_bloom: int
    lines_scanned: int
    bytes_scanned: int
    exec_time_ns: int
    def __init__(self, chunks_total: _Optional[int] = ..., chunks_skipped_by_bloom: _Optional[int] = ..., lines_scanned: _Optional[int] = ..., bytes_scanned: _Optional[int] = ..., exec_time_ns: _Optional[int] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("result_type", "streams", "series", "stats")
    RESULT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    result_type: str
    streams: _containers.RepeatedCompositeFieldContainer[Stream]
    series: _containers.RepeatedCompositeFieldContainer[MetricSeries]
    stats: QueryStats
    def __init__(self, result_type: _Optional[str] = ..., streams: _Optional[_Iterable[_Union[Stream, _Mapping]]] = ..., series: _Optional[_Iterable[_Union[MetricSeries, _Mapping]]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class LabelsRequest(_message.Message):
    __slots__ = ("tenant", "start", "end")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LabelValuesRequest(_message.Message):
    __slots__ = ("tenant", "name", "start", "end")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LabelsResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class SeriesRequest(_message.Message):
    __slots__ = ("tenant", "match", "start", "end")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    match: _containers.RepeatedScalarFieldContainer[str]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., match: _Optional[_Iterable[str]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LabelSet(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class SeriesResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[LabelSet]
    def __init__(self, series: _Optional[_Iterable[_Union[LabelSet, _Mapping]]] = ...) -> None: ...

class TailRequest(_message.Message):
    __slots__ = ("tenant", "logql", "start", "limit", "from_sequence")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LOGQL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    logql: str
    start: _timestamp_pb2.Timestamp
    limit: int
    from_sequence: int
    def __init__(self, tenant: _Optional[str] = ..., logql: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class TailResponse(_message.Message):
    __slots__ = ("sequence", "stream", "dropped_entries")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DROPPED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    stream: Stream
    dropped_entries: int
    def __init__(self, sequence: _Optional[int] = ..., stream: _Optional[_Union[Stream, _Mapping]] = ..., dropped_entries: _Optional[int] = ...) -> None: ...
