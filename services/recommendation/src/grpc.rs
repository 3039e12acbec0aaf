//! gRPC glue: decodes requests, reads the caller ([`Caller`], optional: the dev gateway allows
//! anonymous calls), calls [`Recommendations`], encodes responses. No logic here.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_proto::pb::recommendation::v1 as pb;
use pb::recommendations_server::Recommendations as RecommendationsApi;
use tonic::{Request, Response, Status};

use crate::service::Recommendations;

/// The tonic service.
#[derive(Clone, Debug)]
pub struct RecommendationsService {
    inner: Arc<Recommendations>,
}

impl RecommendationsService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Recommendations>) -> Self {
        RecommendationsService { inner }
    }
}

#[tonic::async_trait]
impl RecommendationsApi for RecommendationsService {
    async fn record_interaction(
        &self,
        request: Request<pb::RecordInteractionRequest>,
    ) -> Result<Response<pb::RecordInteractionResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.record_interaction(request.get_ref(), caller.as_ref()).await?))
    }

    async fn recommend_for_user(
        &self,
        request: Request<pb::RecommendForUserRequest>,
    ) -> Result<Response<pb::RecommendForUserResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.recommend_for_user(request.get_ref(), caller.as_ref()).await?))
    }

    async fn similar_items(
        &self,
        request: Request<pb::SimilarItemsRequest>,
    ) -> Result<Response<pb::SimilarItemsResponse>, Status> {
        Ok(Response::new(self.inner.similar_items(request.get_ref()).await?))
    }

    async fn trending(&self, request: Request<pb::TrendingRequest>) -> Result<Response<pb::TrendingResponse>, Status> {
        Ok(Response::new(self.inner.trending(request.get_ref()).await?))
    }
}
