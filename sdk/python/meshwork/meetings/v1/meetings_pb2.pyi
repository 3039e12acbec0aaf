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

class ParticipantStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARTICIPANT_STATUS_UNSPECIFIED: _ClassVar[ParticipantStatus]
    PARTICIPANT_STATUS_WAITING: _ClassVar[ParticipantStatus]
    PARTICIPANT_STATUS_IN_MEETING: _ClassVar[ParticipantStatus]
    PARTICIPANT_STATUS_LEFT: _ClassVar[ParticipantStatus]
    PARTICIPANT_STATUS_DENIED: _ClassVar[ParticipantStatus]
    PARTICIPANT_STATUS_REMOVED: _ClassVar[ParticipantStatus]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_HOST: _ClassVar[Role]
    ROLE_CO_HOST: _ClassVar[Role]
    ROLE_ATTENDEE: _ClassVar[Role]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_CREATED: _ClassVar[EventType]
    EVENT_TYPE_JOINED: _ClassVar[EventType]
    EVENT_TYPE_LEFT: _ClassVar[EventType]
    EVENT_TYPE_WAITING: _ClassVar[EventType]
    EVENT_TYPE_ADMITTED: _ClassVar[EventType]
    EVENT_TYPE_DENIED: _ClassVar[EventType]
    EVENT_TYPE_REMOVED: _ClassVar[EventType]
    EVENT_TYPE_MUTED: _ClassVar[EventType]
    EVENT_TYPE_UNMUTED: _ClassVar[EventType]
    EVENT_TYPE_HAND_RAISED: _ClassVar[EventType]
    EVENT_TYPE_HAND_LOWERED: _ClassVar[EventType]
    EVENT_TYPE_SHARE_STARTED: _ClassVar[EventType]
    EVENT_TYPE_SHARE_STOPPED: _ClassVar[EventType]
    EVENT_TYPE_CHAT: _ClassVar[EventType]
    EVENT_TYPE_CO_HOST_GRANTED: _ClassVar[EventType]
    EVENT_TYPE_CO_HOST_REVOKED: _ClassVar[EventType]
    EVENT_TYPE_LOCKED: _ClassVar[EventType]
    EVENT_TYPE_UNLOCKED: _ClassVar[EventType]
    EVENT_TYPE_MUTED_ALL: _ClassVar[EventType]
    EVENT_TYPE_UNMUTE_ALLOWED: _ClassVar[EventType]
    EVENT_TYPE_UNMUTE_DISALLOWED: _ClassVar[EventType]
    EVENT_TYPE_ENDED: _ClassVar[EventType]

class ActionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_TYPE_UNSPECIFIED: _ClassVar[ActionType]
    ACTION_TYPE_MUTE: _ClassVar[ActionType]
    ACTION_TYPE_UNMUTE: _ClassVar[ActionType]
    ACTION_TYPE_RAISE_HAND: _ClassVar[ActionType]
    ACTION_TYPE_LOWER_HAND: _ClassVar[ActionType]
    ACTION_TYPE_START_SCREEN_SHARE: _ClassVar[ActionType]
    ACTION_TYPE_STOP_SCREEN_SHARE: _ClassVar[ActionType]
    ACTION_TYPE_LEAVE: _ClassVar[ActionType]
PARTICIPANT_STATUS_UNSPECIFIED: ParticipantStatus
PARTICIPANT_STATUS_WAITING: ParticipantStatus
PARTICIPANT_STATUS_IN_MEETING: ParticipantStatus
PARTICIPANT_STATUS_LEFT: ParticipantStatus
PARTICIPANT_STATUS_DENIED: ParticipantStatus
PARTICIPANT_STATUS_REMOVED: ParticipantStatus
ROLE_UNSPECIFIED: Role
ROLE_HOST: Role
ROLE_CO_HOST: Role
ROLE_ATTENDEE: Role
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_CREATED: EventType
EVENT_TYPE_JOINED: EventType
EVENT_TYPE_LEFT: EventType
EVENT_TYPE_WAITING: EventType
EVENT_TYPE_ADMITTED: EventType
EVENT_TYPE_DENIED: EventType
EVENT_TYPE_REMOVED: EventType
EVENT_TYPE_MUTED: EventType
EVENT_TYPE_UNMUTED: EventType
EVENT_TYPE_HAND_RAISED: EventType
EVENT_TYPE_HAND_LOWERED: EventType
EVENT_TYPE_SHARE_STARTED: EventType
EVENT_TYPE_SHARE_STOPPED: EventType
EVENT_TYPE_CHAT: EventType
EVENT_TYPE_CO_HOST_GRANTED: EventType
EVENT_TYPE_CO_HOST_REVOKED: EventType
EVENT_TYPE_LOCKED: EventType
EVENT_TYPE_UNLOCKED: EventType
EVENT_TYPE_MUTED_ALL: EventType
EVENT_TYPE_UNMUTE_ALLOWED: EventType
EVENT_TYPE_UNMUTE_DISALLOWED: EventType
EVENT_TYPE_ENDED: EventType
ACTION_TYPE_UNSPECIFIED: ActionType
ACTION_TYPE_MUTE: ActionType
ACTION_TYPE_UNMUTE: ActionType
ACTION_TYPE_RAISE_HAND: ActionType
ACTION_TYPE_LOWER_HAND: ActionType
ACTION_TYPE_START_SCREEN_SHARE: ActionType
ACTION_TYPE_STOP_SCREEN_SHARE: ActionType
ACTION_TYPE_LEAVE: ActionType

class MeetingSettings(_message.Message):
    __slots__ = ("mute_on_entry", "disable_chat", "max_participants")
    MUTE_ON_ENTRY_FIELD_NUMBER: _ClassVar[int]
    DISABLE_CHAT_FIELD_NUMBER: _ClassVar[int]
    MAX_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    mute_on_entry: bool
    disable_chat: bool
    max_participants: int
    def __init__(self, mute_on_entry: _Optional[bool] = ..., disable_chat: _Optional[bool] = ..., max_participants: _Optional[int] = ...) -> None: ...

class Meeting(_message.Message):
    __slots__ = ("meeting_id", "host", "topic", "start", "duration", "has_passcode", "waiting_room", "settings", "locked", "allow_unmute", "sharer", "participant_count", "ended_time", "create_time", "last_sequence")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    HAS_PASSCODE_FIELD_NUMBER: _ClassVar[int]
    WAITING_ROOM_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNMUTE_FIELD_NUMBER: _ClassVar[int]
    SHARER_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENDED_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    host: str
    topic: str
    start: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    has_passcode: bool
    waiting_room: bool
    settings: MeetingSettings
    locked: bool
    allow_unmute: bool
    sharer: str
    participant_count: int
    ended_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    last_sequence: int
    def __init__(self, meeting_id: _Optional[str] = ..., host: _Optional[str] = ..., topic: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., has_passcode: _Optional[bool] = ..., waiting_room: _Optional[bool] = ..., settings: _Optional[_Union[MeetingSettings, _Mapping]] = ..., locked: _Optional[bool] = ..., allow_unmute: _Optional[bool] = ..., sharer: _Optional[str] = ..., participant_count: _Optional[int] = ..., ended_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class Participant(_message.Message):
    __slots__ = ("user_id", "status", "role", "muted", "hand_raised", "sharing", "join_time", "leave_time", "connected")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    HAND_RAISED_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    JOIN_TIME_FIELD_NUMBER: _ClassVar[int]
    LEAVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    status: ParticipantStatus
    role: Role
    muted: bool
    hand_raised: bool
    sharing: bool
    join_time: _timestamp_pb2.Timestamp
    leave_time: _timestamp_pb2.Timestamp
    connected: bool
    def __init__(self, user_id: _Optional[str] = ..., status: _Optional[_Union[ParticipantStatus, str]] = ..., role: _Optional[_Union[Role, str]] = ..., muted: _Optional[bool] = ..., hand_raised: _Optional[bool] = ..., sharing: _Optional[bool] = ..., join_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., leave_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., connected: _Optional[bool] = ...) -> None: ...

class CreateMeetingRequest(_message.Message):
    __slots__ = ("request_id", "host", "topic", "start", "duration", "passcode", "waiting_room", "settings")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    PASSCODE_FIELD_NUMBER: _ClassVar[int]
    WAITING_ROOM_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    host: str
    topic: str
    start: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    passcode: str
    waiting_room: bool
    settings: MeetingSettings
    def __init__(self, request_id: _Optional[str] = ..., host: _Optional[str] = ..., topic: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., passcode: _Optional[str] = ..., waiting_room: _Optional[bool] = ..., settings: _Optional[_Union[MeetingSettings, _Mapping]] = ...) -> None: ...

class CreateMeetingResponse(_message.Message):
    __slots__ = ("meeting",)
    MEETING_FIELD_NUMBER: _ClassVar[int]
    meeting: Meeting
    def __init__(self, meeting: _Optional[_Union[Meeting, _Mapping]] = ...) -> None: ...

class GetMeetingRequest(_message.Message):
    __slots__ = ("meeting_id",)
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    def __init__(self, meeting_id: _Optional[str] = ...) -> None: ...

class GetMeetingResponse(_message.Message):
    __slots__ = ("meeting",)
    MEETING_FIELD_NUMBER: _ClassVar[int]
    meeting: Meeting
    def __init__(self, meeting: _Optional[_Union[Meeting, _Mapping]] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("meeting_id", "user_id", "passcode")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PASSCODE_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    user_id: str
    passcode: str
    def __init__(self, meeting_id: _Optional[str] = ..., user_id: _Optional[str] = ..., passcode: _Optional[str] = ...) -> None: ...

class ParticipantActionRequest(_message.Message):
    __slots__ = ("meeting_id", "user_id", "acting_user_id")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTING_USER_ID_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    user_id: str
    acting_user_id: str
    def __init__(self, meeting_id: _Optional[str] = ..., user_id: _Optional[str] = ..., acting_user_id: _Optional[str] = ...) -> None: ...

class HostActionRequest(_message.Message):
    __slots__ = ("meeting_id", "acting_user_id", "user_id")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    ACTING_USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    acting_user_id: str
    user_id: str
    def __init__(self, meeting_id: _Optional[str] = ..., acting_user_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class MeetingControlRequest(_message.Message):
    __slots__ = ("meeting_id", "acting_user_id")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    ACTING_USER_ID_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    acting_user_id: str
    def __init__(self, meeting_id: _Optional[str] = ..., acting_user_id: _Optional[str] = ...) -> None: ...

class AllowUnmuteRequest(_message.Message):
    __slots__ = ("meeting_id", "acting_user_id", "allowed")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    ACTING_USER_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    acting_user_id: str
    allowed: bool
    def __init__(self, meeting_id: _Optional[str] = ..., acting_user_id: _Optional[str] = ..., allowed: _Optional[bool] = ...) -> None: ...

class LockMeetingRequest(_message.Message):
    __slots__ = ("meeting_id", "acting_user_id", "locked")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    ACTING_USER_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    acting_user_id: str
    locked: bool
    def __init__(self, meeting_id: _Optional[str] = ..., acting_user_id: _Optional[str] = ..., locked: _Optional[bool] = ...) -> None: ...

class MakeCoHostRequest(_message.Message):
    __slots__ = ("meeting_id", "acting_user_id", "user_id", "revoke")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    ACTING_USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    acting_user_id: str
    user_id: str
    revoke: bool
    def __init__(self, meeting_id: _Optional[str] = ..., acting_user_id: _Optional[str] = ..., user_id: _Optional[str] = ..., revoke: _Optional[bool] = ...) -> None: ...

class ParticipantResponse(_message.Message):
    __slots__ = ("participant", "sequence")
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    participant: Participant
    sequence: int
    def __init__(self, participant: _Optional[_Union[Participant, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class MeetingResponse(_message.Message):
    __slots__ = ("meeting", "sequence")
    MEETING_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    meeting: Meeting
    sequence: int
    def __init__(self, meeting: _Optional[_Union[Meeting, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class SendChatRequest(_message.Message):
    __slots__ = ("meeting_id", "user_id", "text")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    user_id: str
    text: str
    def __init__(self, meeting_id: _Optional[str] = ..., user_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class SendChatResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class MeetingEvent(_message.Message):
    __slots__ = ("sequence", "type", "time", "user_id", "actor_id", "text")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: EventType
    time: _timestamp_pb2.Timestamp
    user_id: str
    actor_id: str
    text: str
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., actor_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("meeting_id", "user_id", "from_sequence")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    user_id: str
    from_sequence: int
    def __init__(self, meeting_id: _Optional[str] = ..., user_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class ClientAction(_message.Message):
    __slots__ = ("type", "target_user_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_USER_ID_FIELD_NUMBER: _ClassVar[int]
    type: ActionType
    target_user_id: str
    def __init__(self, type: _Optional[_Union[ActionType, str]] = ..., target_user_id: _Optional[str] = ...) -> None: ...

class StreamMeetingRequest(_message.Message):
    __slots__ = ("ref", "hello", "action", "chat")
    REF_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    ref: str
    hello: Hello
    action: ClientAction
    chat: str
    def __init__(self, ref: _Optional[str] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., action: _Optional[_Union[ClientAction, _Mapping]] = ..., chat: _Optional[str] = ...) -> None: ...

class ActionResult(_message.Message):
    __slots__ = ("ref", "code", "message", "sequence")
    REF_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    code: int
    message: str
    sequence: int
    def __init__(self, ref: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class StreamMeetingResponse(_message.Message):
    __slots__ = ("event", "result")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    event: MeetingEvent
    result: ActionResult
    def __init__(self, event: _Optional[_Union[MeetingEvent, _Mapping]] = ..., result: _Optional[_Union[ActionResult, _Mapping]] = ...) -> None: ...

class ListParticipantsRequest(_message.Message):
    __slots__ = ("meeting_id", "status", "page_size", "page_token")
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    status: ParticipantStatus
    page_size: int
    page_token: str
    def __init__(self, meeting_id: _Optional[str] = ..., status: _Optional[_Union[ParticipantStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListParticipantsResponse(_message.Message):
    __slots__ = ("participants", "next_page_token")
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    participants: _containers.RepeatedCompositeFieldContainer[Participant]
    next_page_token: str
    def __init__(self, participants: _Optional[_Iterable[_Union[Participant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetMeetingReportRequest(_message.Message):
    __slots__ = ("meeting_id",)
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    meeting_id: str
    def __init__(self, meeting_id: _Optional[str] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("join_time", "leave_time")
    JOIN_TIME_FIELD_NUMBER: _ClassVar[int]
    LEAVE_TIME_FIELD_NUMBER: _ClassVar[int]
    join_time: _timestamp_pb2.Timestamp
    leave_time: _timestamp_pb2.Timestamp
    def __init__(self, join_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., leave_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Attendance(_message.Message):
    __slots__ = ("user_id", "sessions", "total", "status")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    total: _duration_pb2.Duration
    status: ParticipantStatus
    def __init__(self, user_id: _Optional[str] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., total: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., status: _Optional[_Union[ParticipantStatus, str]] = ...) -> None: ...

class GetMeetingReportResponse(_message.Message):
    __slots__ = ("meeting", "attendance", "peak_participants")
    MEETING_FIELD_NUMBER: _ClassVar[int]
    ATTENDANCE_FIELD_NUMBER: _ClassVar[int]
    PEAK_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    meeting: Meeting
    attendance: _containers.RepeatedCompositeFieldContainer[Attendance]
    peak_participants: int
    def __init__(self, meeting: _Optional[_Union[Meeting, _Mapping]] = ..., attendance: _Optional[_Iterable[_Union[Attendance, _Mapping]]] = ..., peak_participants: _Optional[int] = ...) -> None: ...
