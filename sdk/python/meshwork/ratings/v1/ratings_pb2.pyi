import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_STATUS_UNSPECIFIED: _ClassVar[ReviewStatus]
    REVIEW_STATUS_PUBLISHED: _ClassVar[ReviewStatus]
    REVIEW_STATUS_PENDING: _ClassVar[ReviewStatus]
    REVIEW_STATUS_REJECTED: _ClassVar[ReviewStatus]

class ReviewSort(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_SORT_UNSPECIFIED: _ClassVar[ReviewSort]
    REVIEW_SORT_HELPFUL: _ClassVar[ReviewSort]
    REVIEW_SORT_NEWEST: _ClassVar[ReviewSort]
    REVIEW_SORT_RATING_HIGH: _ClassVar[ReviewSort]
    REVIEW_SORT_RATING_LOW: _ClassVar[ReviewSort]

class ModerationDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODERATION_DECISION_UNSPECIFIED: _ClassVar[ModerationDecision]
    MODERATION_DECISION_PUBLISH: _ClassVar[ModerationDecision]
    MODERATION_DECISION_REJECT: _ClassVar[ModerationDecision]
REVIEW_STATUS_UNSPECIFIED: ReviewStatus
REVIEW_STATUS_PUBLISHED: ReviewStatus
REVIEW_STATUS_PENDING: ReviewStatus
REVIEW_STATUS_REJECTED: ReviewStatus
REVIEW_SORT_UNSPECIFIED: ReviewSort
REVIEW_SORT_HELPFUL: ReviewSort
REVIEW_SORT_NEWEST: ReviewSort
REVIEW_SORT_RATING_HIGH: ReviewSort
REVIEW_SORT_RATING_LOW: ReviewSort
MODERATION_DECISION_UNSPECIFIED: ModerationDecision
MODERATION_DECISION_PUBLISH: ModerationDecision
MODERATION_DECISION_REJECT: ModerationDecision

class ReviewEvent(_message.Message):
    __slots__ = ("review_id", "sku", "user_id", "rating", "status", "previous_status", "previous_rating", "verified_purchase", "time")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RATING_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_PURCHASE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    sku: str
    user_id: str
    rating: int
    status: ReviewStatus
    previous_status: ReviewStatus
    previous_rating: int
    verified_purchase: bool
    time: _timestamp_pb2.Timestamp
    def __init__(self, review_id: _Optional[str] = ..., sku: _Optional[str] = ..., user_id: _Optional[str] = ..., rating: _Optional[int] = ..., status: _Optional[_Union[ReviewStatus, str]] = ..., previous_status: _Optional[_Union[ReviewStatus, str]] = ..., previous_rating: _Optional[int] = ..., verified_purchase: _Optional[bool] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SellerReply(_message.Message):
    __slots__ = ("seller_id", "body", "create_time")
    SELLER_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    seller_id: str
    body: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, seller_id: _Optional[str] = ..., body: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SpamReason(_message.Message):
    __slots__ = ("code", "detail", "points")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    code: str
    detail: str
    points: int
    def __init__(self, code: _Optional[str] = ..., detail: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("review_id", "sku", "user_id", "rating", "title", "body", "media_urls", "status", "verified_purchase", "helpful_votes", "unhelpful_votes", "report_count", "spam_score", "spam_reasons", "moderation_reason", "seller_reply", "revision", "create_time", "update_time")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    MEDIA_URLS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_PURCHASE_FIELD_NUMBER: _ClassVar[int]
    HELPFUL_VOTES_FIELD_NUMBER: _ClassVar[int]
    UNHELPFUL_VOTES_FIELD_NUMBER: _ClassVar[int]
    REPORT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPAM_SCORE_FIELD_NUMBER: _ClassVar[int]
    SPAM_REASONS_FIELD_NUMBER: _ClassVar[int]
    MODERATION_REASON_FIELD_NUMBER: _ClassVar[int]
    SELLER_REPLY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    sku: str
    user_id: str
    rating: int
    title: str
    body: str
    media_urls: _containers.RepeatedScalarFieldContainer[str]
    status: ReviewStatus
    verified_purchase: bool
    helpful_votes: int
    unhelpful_votes: int
    report_count: int
    spam_score: int
    spam_reasons: _containers.RepeatedCompositeFieldContainer[SpamReason]
    moderation_reason: str
    seller_reply: SellerReply
    revision: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, review_id: _Optional[str] = ..., sku: _Optional[str] = ..., user_id: _Optional[str] = ..., rating: _Optional[int] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., media_urls: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[ReviewStatus, str]] = ..., verified_purchase: _Optional[bool] = ..., helpful_votes: _Optional[int] = ..., unhelpful_votes: _Optional[int] = ..., report_count: _Optional[int] = ..., spam_score: _Optional[int] = ..., spam_reasons: _Optional[_Iterable[_Union[SpamReason, _Mapping]]] = ..., moderation_reason: _Optional[str] = ..., seller_reply: _Optional[_Union[SellerReply, _Mapping]] = ..., revision: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReviewRevision(_message.Message):
    __slots__ = ("revision", "rating", "title", "body", "media_urls", "status", "time")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    MEDIA_URLS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    revision: int
    rating: int
    title: str
    body: str
    media_urls: _containers.RepeatedScalarFieldContainer[str]
    status: ReviewStatus
    time: _timestamp_pb2.Timestamp
    def __init__(self, revision: _Optional[int] = ..., rating: _Optional[int] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., media_urls: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[ReviewStatus, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitReviewRequest(_message.Message):
    __slots__ = ("request_id", "sku", "user_id", "rating", "title", "body", "media_urls")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    MEDIA_URLS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    user_id: str
    rating: int
    title: str
    body: str
    media_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., user_id: _Optional[str] = ..., rating: _Optional[int] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., media_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitReviewResponse(_message.Message):
    __slots__ = ("review", "edited")
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    EDITED_FIELD_NUMBER: _ClassVar[int]
    review: Review
    edited: bool
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ..., edited: _Optional[bool] = ...) -> None: ...

class GetReviewRequest(_message.Message):
    __slots__ = ("review_id",)
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    def __init__(self, review_id: _Optional[str] = ...) -> None: ...

class GetReviewResponse(_message.Message):
    __slots__ = ("review", "history")
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    review: Review
    history: _containers.RepeatedCompositeFieldContainer[ReviewRevision]
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ..., history: _Optional[_Iterable[_Union[ReviewRevision, _Mapping]]] = ...) -> None: ...

class ListReviewsRequest(_message.Message):
    __slots__ = ("sku", "sort", "stars", "verified_only", "page_size", "page_token")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    STARS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sku: str
    sort: ReviewSort
    stars: _containers.RepeatedScalarFieldContainer[int]
    verified_only: bool
    page_size: int
    page_token: str
    def __init__(self, sku: _Optional[str] = ..., sort: _Optional[_Union[ReviewSort, str]] = ..., stars: _Optional[_Iterable[int]] = ..., verified_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReviewsResponse(_message.Message):
    __slots__ = ("reviews", "next_page_token")
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reviews: _containers.RepeatedCompositeFieldContainer[Review]
    next_page_token: str
    def __init__(self, reviews: _Optional[_Iterable[_Union[Review, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetProductRatingRequest(_message.Message):
    __slots__ = ("sku",)
    SKU_FIELD_NUMBER: _ClassVar[int]
    sku: str
    def __init__(self, sku: _Optional[str] = ...) -> None: ...

class ProductRating(_message.Message):
    __slots__ = ("sku", "count", "mean", "histogram", "verified_count", "wilson_lower_bound", "bayesian_average")
    SKU_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_COUNT_FIELD_NUMBER: _ClassVar[int]
    WILSON_LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    BAYESIAN_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    count: int
    mean: float
    histogram: _containers.RepeatedScalarFieldContainer[int]
    verified_count: int
    wilson_lower_bound: float
    bayesian_average: float
    def __init__(self, sku: _Optional[str] = ..., count: _Optional[int] = ..., mean: _Optional[float] = ..., histogram: _Optional[_Iterable[int]] = ..., verified_count: _Optional[int] = ..., wilson_lower_bound: _Optional[float] = ..., bayesian_average: _Optional[float] = ...) -> None: ...

class GetProductRatingResponse(_message.Message):
    __slots__ = ("rating",)
    RATING_FIELD_NUMBER: _ClassVar[int]
    rating: ProductRating
    def __init__(self, rating: _Optional[_Union[ProductRating, _Mapping]] = ...) -> None: ...

class VoteHelpfulRequest(_message.Message):
    __slots__ = ("review_id", "user_id", "helpful")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HELPFUL_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    user_id: str
    helpful: bool
    def __init__(self, review_id: _Optional[str] = ..., user_id: _Optional[str] = ..., helpful: _Optional[bool] = ...) -> None: ...

class VoteHelpfulResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...

class ReportReviewRequest(_message.Message):
    __slots__ = ("review_id", "user_id", "reason")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    user_id: str
    reason: str
    def __init__(self, review_id: _Optional[str] = ..., user_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportReviewResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...

class ListModerationQueueRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModerationQueueResponse(_message.Message):
    __slots__ = ("reviews", "next_page_token")
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reviews: _containers.RepeatedCompositeFieldContainer[Review]
    next_page_token: str
    def __init__(self, reviews: _Optional[_Iterable[_Union[Review, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ModerateRequest(_message.Message):
    __slots__ = ("review_id", "decision", "reason")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    decision: ModerationDecision
    reason: str
    def __init__(self, review_id: _Optional[str] = ..., decision: _Optional[_Union[ModerationDecision, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ModerateResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...

class ReplyToReviewRequest(_message.Message):
    __slots__ = ("review_id", "seller_id", "body")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    SELLER_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    seller_id: str
    body: str
    def __init__(self, review_id: _Optional[str] = ..., seller_id: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...

class ReplyToReviewResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...
