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

class FanoutMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FANOUT_MODE_UNSPECIFIED: _ClassVar[FanoutMode]
    FANOUT_MODE_PUSH: _ClassVar[FanoutMode]
    FANOUT_MODE_PULL: _ClassVar[FanoutMode]
FANOUT_MODE_UNSPECIFIED: FanoutMode
FANOUT_MODE_PUSH: FanoutMode
FANOUT_MODE_PULL: FanoutMode

class User(_message.Message):
    __slots__ = ("handle", "display_name", "create_time", "follower_count", "following_count", "post_count")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FOLLOWER_COUNT_FIELD_NUMBER: _ClassVar[int]
    FOLLOWING_COUNT_FIELD_NUMBER: _ClassVar[int]
    POST_COUNT_FIELD_NUMBER: _ClassVar[int]
    handle: str
    display_name: str
    create_time: _timestamp_pb2.Timestamp
    follower_count: int
    following_count: int
    post_count: int
    def __init__(self, handle: _Optional[str] = ..., display_name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., follower_count: _Optional[int] = ..., following_count: _Optional[int] = ..., post_count: _Optional[int] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("handle", "display_name")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    handle: str
    display_name: str
    def __init__(self, handle: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("user", "target")
    USER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    user: str
    target: str
    def __init__(self, user: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class FollowResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    def __init__(self, changed: _Optional[bool] = ...) -> None: ...

class UnfollowRequest(_message.Message):
    __slots__ = ("user", "target")
    USER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    user: str
    target: str
    def __init__(self, user: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class UnfollowResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    def __init__(self, changed: _Optional[bool] = ...) -> None: ...

class ListFollowersRequest(_message.Message):
    __slots__ = ("user", "page_size", "page_token")
    USER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: str
    page_size: int
    page_token: str
    def __init__(self, user: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFollowersResponse(_message.Message):
    __slots__ = ("handles", "next_page_token")
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, handles: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFollowingRequest(_message.Message):
    __slots__ = ("user", "page_size", "page_token")
    USER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: str
    page_size: int
    page_token: str
    def __init__(self, user: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFollowingResponse(_message.Message):
    __slots__ = ("handles", "next_page_token")
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, handles: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Post(_message.Message):
    __slots__ = ("post_id", "author", "text", "reply_to", "repost_of", "create_time", "like_count", "repost_count")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    REPOST_OF_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LIKE_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPOST_COUNT_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    author: str
    text: str
    reply_to: str
    repost_of: str
    create_time: _timestamp_pb2.Timestamp
    like_count: int
    repost_count: int
    def __init__(self, post_id: _Optional[str] = ..., author: _Optional[str] = ..., text: _Optional[str] = ..., reply_to: _Optional[str] = ..., repost_of: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., like_count: _Optional[int] = ..., repost_count: _Optional[int] = ...) -> None: ...

class CreatePostRequest(_message.Message):
    __slots__ = ("request_id", "author", "text", "reply_to")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    author: str
    text: str
    reply_to: str
    def __init__(self, request_id: _Optional[str] = ..., author: _Optional[str] = ..., text: _Optional[str] = ..., reply_to: _Optional[str] = ...) -> None: ...

class CreatePostResponse(_message.Message):
    __slots__ = ("post",)
    POST_FIELD_NUMBER: _ClassVar[int]
    post: Post
    def __init__(self, post: _Optional[_Union[Post, _Mapping]] = ...) -> None: ...

class GetPostRequest(_message.Message):
    __slots__ = ("post_id",)
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    def __init__(self, post_id: _Optional[str] = ...) -> None: ...

class GetPostResponse(_message.Message):
    __slots__ = ("post",)
    POST_FIELD_NUMBER: _ClassVar[int]
    post: Post
    def __init__(self, post: _Optional[_Union[Post, _Mapping]] = ...) -> None: ...

class DeletePostRequest(_message.Message):
    __slots__ = ("post_id",)
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    def __init__(self, post_id: _Optional[str] = ...) -> None: ...

class DeletePostResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LikeRequest(_message.Message):
    __slots__ = ("post_id", "user")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    user: str
    def __init__(self, post_id: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class LikeResponse(_message.Message):
    __slots__ = ("like_count", "changed")
    LIKE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    like_count: int
    changed: bool
    def __init__(self, like_count: _Optional[int] = ..., changed: _Optional[bool] = ...) -> None: ...

class UnlikeRequest(_message.Message):
    __slots__ = ("post_id", "user")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    user: str
    def __init__(self, post_id: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class UnlikeResponse(_message.Message):
    __slots__ = ("like_count", "changed")
    LIKE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    like_count: int
    changed: bool
    def __init__(self, like_count: _Optional[int] = ..., changed: _Optional[bool] = ...) -> None: ...

class RepostRequest(_message.Message):
    __slots__ = ("post_id", "user")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    user: str
    def __init__(self, post_id: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class RepostResponse(_message.Message):
    __slots__ = ("repost", "repost_count", "changed")
    REPOST_FIELD_NUMBER: _ClassVar[int]
    REPOST_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    repost: Post
    repost_count: int
    changed: bool
    def __init__(self, repost: _Optional[_Union[Post, _Mapping]] = ..., repost_count: _Optional[int] = ..., changed: _Optional[bool] = ...) -> None: ...

class GetUserTimelineRequest(_message.Message):
    __slots__ = ("user", "page_size", "page_token")
    USER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: str
    page_size: int
    page_token: str
    def __init__(self, user: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetUserTimelineResponse(_message.Message):
    __slots__ = ("posts", "next_page_token")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[Post]
    next_page_token: str
    def __init__(self, posts: _Optional[_Iterable[_Union[Post, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetHomeTimelineRequest(_message.Message):
    __slots__ = ("user", "page_size", "page_token")
    USER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: str
    page_size: int
    page_token: str
    def __init__(self, user: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetHomeTimelineResponse(_message.Message):
    __slots__ = ("posts", "next_page_token")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[Post]
    next_page_token: str
    def __init__(self, posts: _Optional[_Iterable[_Union[Post, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamHomeTimelineRequest(_message.Message):
    __slots__ = ("user", "from_sequence")
    USER_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    user: str
    from_sequence: int
    def __init__(self, user: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class HomeTimelineEvent(_message.Message):
    __slots__ = ("sequence", "post")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POST_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    post: Post
    def __init__(self, sequence: _Optional[int] = ..., post: _Optional[_Union[Post, _Mapping]] = ...) -> None: ...

class GetFanoutStatusRequest(_message.Message):
    __slots__ = ("post_id",)
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    def __init__(self, post_id: _Optional[str] = ...) -> None: ...

class GetFanoutStatusResponse(_message.Message):
    __slots__ = ("post_id", "mode", "planned", "followers_total", "inboxes_written", "inboxes_pending", "chunks_total", "chunks_done", "complete", "fanout_lag")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    FOLLOWERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    INBOXES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    INBOXES_PENDING_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    FANOUT_LAG_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    mode: FanoutMode
    planned: bool
    followers_total: int
    inboxes_written: int
    inboxes_pending: int
    chunks_total: int
    chunks_done: int
    complete: bool
    fanout_lag: _duration_pb2.Duration
    def __init__(self, post_id: _Optional[str] = ..., mode: _Optional[_Union[FanoutMode, str]] = ..., planned: _Optional[bool] = ..., followers_total: _Optional[int] = ..., inboxes_written: _Optional[int] = ..., inboxes_pending: _Optional[int] = ..., chunks_total: _Optional[int] = ..., chunks_done: _Optional[int] = ..., complete: _Optional[bool] = ..., fanout_lag: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
