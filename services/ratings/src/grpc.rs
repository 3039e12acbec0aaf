//! gRPC glue: decodes requests, reads the caller and the call context, calls [`Ratings`],
//! encodes responses. No logic.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_common::mesh::CallContext;
use meshwork_proto::pb::ratings::v1 as pb;
use pb::ratings_server::Ratings as RatingsApi;
use tonic::{Request, Response, Status};

use crate::service::Ratings;

/// The tonic service.
#[derive(Clone)]
pub struct RatingsService {
    inner: Arc<Ratings>,
}

impl RatingsService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Ratings>) -> Self {
        RatingsService { inner }
    }
}

#[tonic::async_trait]
impl RatingsApi for RatingsService {
    async fn submit_review(
        &self,
        request: Request<pb::SubmitReviewRequest>,
    ) -> Result<Response<pb::SubmitReviewResponse>, Status> {
        let cx = CallContext::from_request(&request);
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.submit(caller.as_ref(), &cx, request.into_inner()).await?))
    }

    async fn get_review(
        &self,
        request: Request<pb::GetReviewRequest>,
    ) -> Result<Response<pb::GetReviewResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.get(caller.as_ref(), request.get_ref()).await?))
    }

    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Result<Response<pb::ListReviewsResponse>, Status> {
        Ok(Response::new(self.inner.list(request.get_ref()).await?))
    }

    async fn get_product_rating(
        &self,
        request: Request<pb::GetProductRatingRequest>,
    ) -> Result<Response<pb::GetProductRatingResponse>, Status> {
        let rating = self.inner.product_rating(request.get_ref()).await?;
        Ok(Response::new(pb::GetProductRatingResponse { rating: Some(rating) }))
    }

    async fn vote_helpful(
        &self,
        request: Request<pb::VoteHelpfulRequest>,
    ) -> Result<Response<pb::VoteHelpfulResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let review = self.inner.vote(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::VoteHelpfulResponse { review: Some(review) }))
    }

    async fn report_review(
        &self,
        request: Request<pb::ReportReviewRequest>,
    ) -> Result<Response<pb::ReportReviewResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let review = self.inner.report(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::ReportReviewResponse { review: Some(review) }))
    }

    async fn list_moderation_queue(
        &self,
        request: Request<pb::ListModerationQueueRequest>,
    ) -> Result<Response<pb::ListModerationQueueResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.queue(caller.as_ref(), request.get_ref()).await?))
    }

    async fn moderate(&self, request: Request<pb::ModerateRequest>) -> Result<Response<pb::ModerateResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let review = self.inner.moderate(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::ModerateResponse { review: Some(review) }))
    }

    async fn reply_to_review(
        &self,
        request: Request<pb::ReplyToReviewRequest>,
    ) -> Result<Response<pb::ReplyToReviewResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let review = self.inner.reply(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::ReplyToReviewResponse { review: Some(review) }))
    }
}
