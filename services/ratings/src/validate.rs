//! Field rules, one function per request: INVALID_ARGUMENT naming the field and the reason,
//! checked before anything is read or written.

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::fields;
use meshwork_common::{is_random_id, validate_request_id};
use meshwork_proto::pb::ratings::v1 as pb;

/// Largest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Largest body, in characters.
pub const MAX_BODY: usize = 5000;
/// Most media URLs per review.
pub const MAX_MEDIA: usize = 10;
/// Largest media URL.
pub const MAX_URL: usize = 2000;
/// Largest reason (reports, moderation).
pub const MAX_REASON: usize = 500;
/// Largest seller reply.
pub const MAX_REPLY: usize = 2000;

/// Checks a review id: `rev_` and 20 base62 characters.
pub fn review_id(field: &str, id: &str) -> ServiceResult<()> {
    if id.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if !is_random_id(id, "rev_", 20) {
        return Err(ServiceError::invalid(field, "must be rev_ followed by 20 letters or digits"));
    }
    Ok(())
}

fn no_control(field: &str, value: &str) -> ServiceResult<()> {
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(ServiceError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a SubmitReview request.
pub fn submit(req: &pb::SubmitReviewRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    fields::sku("sku", &req.sku)?;
    fields::user_id("user_id", &req.user_id)?;
    if !(1..=5).contains(&req.rating) {
        return Err(ServiceError::invalid("rating", "must be 1 to 5 stars"));
    }
    fields::text("title", &req.title, MAX_TITLE, false)?;
    no_control("title", &req.title)?;
    fields::text("body", &req.body, MAX_BODY, false)?;
    no_control("body", &req.body)?;
    if req.media_urls.len() > MAX_MEDIA {
        return Err(ServiceError::invalid("media_urls", format!("at most {MAX_MEDIA} URLs")));
    }
    for (i, url) in req.media_urls.iter().enumerate() {
        let field = format!("media_urls[{i}]");
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() <= "https://".len() {
            return Err(ServiceError::invalid(field, "must be an http or https URL"));
        }
        if url.len() > MAX_URL || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ServiceError::invalid(field, format!("at most {MAX_URL} characters, no spaces")));
        }
    }
    Ok(())
}

/// Checks a GetReview request.
pub fn get(req: &pb::GetReviewRequest) -> ServiceResult<()> {
    review_id("review_id", &req.review_id)
}

/// Checks a ListReviews request and returns the page size.
pub fn list(req: &pb::ListReviewsRequest) -> ServiceResult<usize> {
    fields::sku("sku", &req.sku)?;
    if pb::ReviewSort::try_from(req.sort).is_err() {
        return Err(ServiceError::invalid("sort", "must be HELPFUL, NEWEST, RATING_HIGH or RATING_LOW"));
    }
    if let Some(bad) = req.stars.iter().find(|s| !(1..=5).contains(*s)) {
        return Err(ServiceError::invalid("stars", format!("{bad} is not 1 to 5")));
    }
    fields::page_size("page_size", req.page_size)
}

/// Checks a GetProductRating request.
pub fn product_rating(req: &pb::GetProductRatingRequest) -> ServiceResult<()> {
    fields::sku("sku", &req.sku)
}

/// Checks a VoteHelpful request.
pub fn vote(req: &pb::VoteHelpfulRequest) -> ServiceResult<()> {
    review_id("review_id", &req.review_id)?;
    fields::user_id("user_id", &req.user_id)
}

/// Checks a ReportReview request.
pub fn report(req: &pb::ReportReviewRequest) -> ServiceResult<()> {
    review_id("review_id", &req.review_id)?;
    fields::user_id("user_id", &req.user_id)?;
    fields::text("reason", &req.reason, MAX_REASON, true)?;
    no_control("reason", &req.reason)
}

/// Checks a ListModerationQueue request and returns the page size.
pub fn queue(req: &pb::ListModerationQueueRequest) -> ServiceResult<usize> {
    fields::page_size("page_size", req.page_size)
}

/// Checks a Moderate request and returns the decision.
pub fn moderate(req: &pb::ModerateRequest) -> ServiceResult<pb::ModerationDecision> {
    review_id("review_id", &req.review_id)?;
    let decision = match pb::ModerationDecision::try_from(req.decision) {
        Ok(d @ (pb::ModerationDecision::Publish | pb::ModerationDecision::Reject)) => d,
        _ => return Err(ServiceError::invalid("decision", "must be PUBLISH or REJECT")),
    };
    fields::text("reason", &req.reason, MAX_REASON, true)?;
    no_control("reason", &req.reason)?;
    Ok(decision)
}

/// Checks a ReplyToReview request.
pub fn reply(req: &pb::ReplyToReviewRequest) -> ServiceResult<()> {
    review_id("review_id", &req.review_id)?;
    fields::user_id("seller_id", &req.seller_id)?;
    fields::text("body", &req.body, MAX_REPLY, true)?;
    no_control("body", &req.body)
}
