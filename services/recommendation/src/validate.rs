//! Field rules, one function per request: every RPC checks its input here before it touches
//! the store or the model, answering INVALID_ARGUMENT with the field's proto name and the
//! reason.

use std::time::Duration;

use meshwork_common::fields;
use meshwork_common::{ServiceError, ServiceResult, validate_request_id};
use meshwork_proto::pb::recommendation::v1 as pb;

use crate::model::InteractionKind;

/// Answers hold 1 to 100 items; 0 asks for this many.
pub const DEFAULT_K: usize = 10;
/// The most items one answer holds.
pub const MAX_K: usize = 100;
/// How far in the future an interaction's `at` may be (clock skew between clients).
pub const MAX_FUTURE: Duration = Duration::from_secs(300);
/// Trending's window when unset.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Trending's shortest window.
pub const MIN_WINDOW: Duration = Duration::from_secs(60);
/// Trending's longest window.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Segments of a category path, at most.
const MAX_SEGMENTS: usize = 5;
/// Characters of one category segment, at most.
const MAX_SEGMENT_CHARS: usize = 40;

/// A checked RecordInteraction.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// What happened.
    pub kind: InteractionKind,
    /// When, in ms (the request's `at`, or now).
    pub at_ms: i64,
}

/// Returns the model's kind of a wire kind, None for UNSPECIFIED or an unknown number.
pub fn kind(raw: i32) -> Option<InteractionKind> {
    match pb::InteractionKind::try_from(raw).ok()? {
        pb::InteractionKind::Unspecified => None,
        pb::InteractionKind::View => Some(InteractionKind::View),
        pb::InteractionKind::Cart => Some(InteractionKind::Cart),
        pb::InteractionKind::Purchase => Some(InteractionKind::Purchase),
        pb::InteractionKind::Rating => Some(InteractionKind::Rating),
    }
}

/// Checks a RecordInteraction at time `now_ms`.
pub fn record_interaction(req: &pb::RecordInteractionRequest, now_ms: i64) -> ServiceResult<Interaction> {
    validate_request_id(&req.request_id)?;
    fields::user_id("user_id", &req.user_id)?;
    fields::sku("item", &req.item)?;
    let kind = kind(req.kind)
        .ok_or_else(|| ServiceError::invalid("kind", "required: INTERACTION_KIND_VIEW, _CART, _PURCHASE or _RATING"))?;
    if kind == InteractionKind::Rating {
        if !(req.value.is_finite() && (1.0..=5.0).contains(&req.value) && (req.value * 2.0).fract() == 0.0) {
            return Err(ServiceError::invalid("value", "a rating is 1 to 5 in steps of 0.5"));
        }
    } else if req.value != 0.0 {
        return Err(ServiceError::invalid("value", "must be 0 (unset) except for INTERACTION_KIND_RATING"));
    }
    let at_ms = match &req.at {
        None => now_ms,
        Some(ts) => {
            let at = fields::millis("at", ts)?;
            if at < 0 {
                return Err(ServiceError::invalid("at", "must not be before 1970"));
            }
            if at > now_ms + MAX_FUTURE.as_millis() as i64 {
                return Err(ServiceError::invalid("at", "must not be more than 5 minutes in the future"));
            }
            at
        }
    };
    Ok(Interaction { kind, at_ms })
}

/// Returns `k` of a request: 0 means [`DEFAULT_K`]; 1 to [`MAX_K`] otherwise.
pub fn k(field: &str, k: i32) -> ServiceResult<usize> {
    fields::page_size_within(field, k, DEFAULT_K, MAX_K)
        .map_err(|_| ServiceError::invalid(field, "must be 1 to 100 (0 means 10)"))
}

/// Checks an optional category path: empty, or 1-5 segments of `[a-z0-9-]{1,40}` joined by
/// `/` (the catalog's rule).
pub fn category(field: &str, path: &str) -> ServiceResult<Option<String>> {
    if path.is_empty() {
        return Ok(None);
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(ServiceError::invalid(field, format!("has {} segments, at most {MAX_SEGMENTS}", segments.len())));
    }
    for segment in segments {
        if segment.is_empty() {
            return Err(ServiceError::invalid(field, "has an empty segment (no leading, trailing or double /)"));
        }
        if segment.len() > MAX_SEGMENT_CHARS
            || !segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ServiceError::invalid(field, "segments are [a-z0-9-]{1,40}"));
        }
    }
    Ok(Some(path.to_string()))
}

/// Checks a RecommendForUser; returns (k, category).
pub fn recommend_for_user(req: &pb::RecommendForUserRequest) -> ServiceResult<(usize, Option<String>)> {
    fields::user_id("user_id", &req.user_id)?;
    Ok((k("k", req.k)?, category("category", &req.category)?))
}

/// Checks a SimilarItems; returns k.
pub fn similar_items(req: &pb::SimilarItemsRequest) -> ServiceResult<usize> {
    fields::sku("item", &req.item)?;
    k("k", req.k)
}

/// Checks a Trending; returns (k, category, window).
pub fn trending(req: &pb::TrendingRequest) -> ServiceResult<(usize, Option<String>, Duration)> {
    let category = category("category", &req.category)?;
    let window = match &req.window {
        None => DEFAULT_WINDOW,
        Some(d) => {
            let w = fields::duration("window", d)?;
            if !(MIN_WINDOW..=MAX_WINDOW).contains(&w) {
                return Err(ServiceError::invalid("window", "must be 1 minute to 30 days"));
            }
            w
        }
    };
    Ok((k("k", req.k)?, category, window))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: ServiceResult<impl std::fmt::Debug>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn interactions() {
        let ok = pb::RecordInteractionRequest {
            request_id: "r1".into(),
            user_id: "u".into(),
            item: "SKU-1".into(),
            kind: pb::InteractionKind::Rating as i32,
            value: 4.5,
            at: None,
        };
        assert_eq!(record_interaction(&ok, 1000).unwrap(), Interaction { kind: InteractionKind::Rating, at_ms: 1000 });
        let bad = |f: fn(&mut pb::RecordInteractionRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            field(record_interaction(&r, 1000))
        };
        assert_eq!(bad(|r| r.request_id.clear()), "request_id");
        assert_eq!(bad(|r| r.user_id.clear()), "user_id");
        assert_eq!(bad(|r| r.item = "sku-1".into()), "item");
        assert_eq!(bad(|r| r.kind = 0), "kind");
        assert_eq!(bad(|r| r.kind = 99), "kind");
        assert_eq!(bad(|r| r.value = 4.2), "value");
        assert_eq!(bad(|r| r.value = f64::NAN), "value");
        assert_eq!(bad(|r| r.value = 6.0), "value");
        assert_eq!(bad(|r| r.kind = pb::InteractionKind::View as i32), "value");
        assert_eq!(bad(|r| r.at = Some(prost_types::Timestamp { seconds: 10_000, nanos: 0 })), "at");
        assert_eq!(bad(|r| r.at = Some(prost_types::Timestamp { seconds: 0, nanos: -1 })), "at");
    }

    #[test]
    fn queries() {
        assert_eq!(k("k", 0).unwrap(), 10);
        assert_eq!(field(k("k", 101)), "k");
        assert_eq!(field(k("k", -1)), "k");
        assert_eq!(category("c", "a/b-2").unwrap().as_deref(), Some("a/b-2"));
        assert_eq!(field(category("c", "A")), "c");
        assert_eq!(field(category("c", "a//b")), "c");
        assert_eq!(field(category("c", "a/b/c/d/e/f")), "c");
        let t = |w: Option<prost_types::Duration>| {
            trending(&pb::TrendingRequest { category: String::new(), window: w, k: 0 })
        };
        assert_eq!(t(None).unwrap().2, DEFAULT_WINDOW);
        assert_eq!(field(t(Some(prost_types::Duration { seconds: 59, nanos: 0 }))), "window");
        assert_eq!(field(t(Some(prost_types::Duration { seconds: -60, nanos: 0 }))), "window");
        assert_eq!(field(t(Some(prost_types::Duration { seconds: 31 * 86400, nanos: 0 }))), "window");
    }
}
