//! gRPC glue: decodes requests, reads the caller, calls [`Timeline`], encodes responses. No
//! logic.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_proto::pb::timeline::v1 as pb;
use pb::timeline_server::Timeline as TimelineApi;
use tonic::{Request, Response, Status};

use crate::service::Timeline;

/// The tonic service.
#[derive(Clone)]
pub struct TimelineService {
    inner: Arc<Timeline>,
}

impl TimelineService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Timeline>) -> Self {
        TimelineService { inner }
    }
}

#[tonic::async_trait]
impl TimelineApi for TimelineService {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let user = self.inner.create_user(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::CreateUserResponse { user: Some(user) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        let user = self.inner.get_user(&request.get_ref().handle).await?;
        Ok(Response::new(pb::GetUserResponse { user: Some(user) }))
    }

    async fn follow(&self, request: Request<pb::FollowRequest>) -> Result<Response<pb::FollowResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let changed = self.inner.follow(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::FollowResponse { changed }))
    }

    async fn unfollow(&self, request: Request<pb::UnfollowRequest>) -> Result<Response<pb::UnfollowResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let changed = self.inner.unfollow(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::UnfollowResponse { changed }))
    }

    async fn list_followers(
        &self,
        request: Request<pb::ListFollowersRequest>,
    ) -> Result<Response<pb::ListFollowersResponse>, Status> {
        let r = request.get_ref();
        let (handles, next_page_token) = self.inner.list_edges(true, &r.user, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListFollowersResponse { handles, next_page_token }))
    }

    async fn list_following(
        &self,
        request: Request<pb::ListFollowingRequest>,
    ) -> Result<Response<pb::ListFollowingResponse>, Status> {
        let r = request.get_ref();
        let (handles, next_page_token) = self.inner.list_edges(false, &r.user, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListFollowingResponse { handles, next_page_token }))
    }

    async fn create_post(
        &self,
        request: Request<pb::CreatePostRequest>,
    ) -> Result<Response<pb::CreatePostResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let post = self.inner.create_post(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::CreatePostResponse { post: Some(post) }))
    }

    async fn get_post(&self, request: Request<pb::GetPostRequest>) -> Result<Response<pb::GetPostResponse>, Status> {
        let post = self.inner.get_post(&request.get_ref().post_id).await?;
        Ok(Response::new(pb::GetPostResponse { post: Some(post) }))
    }

    async fn delete_post(
        &self,
        request: Request<pb::DeletePostRequest>,
    ) -> Result<Response<pb::DeletePostResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.inner.delete_post(caller.as_ref(), &request.get_ref().post_id).await?;
        Ok(Response::new(pb::DeletePostResponse {}))
    }

    async fn like(&self, request: Request<pb::LikeRequest>) -> Result<Response<pb::LikeResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let (like_count, changed) = self.inner.like(caller.as_ref(), true, &r.post_id, &r.user).await?;
        Ok(Response::new(pb::LikeResponse { like_count, changed }))
    }

    async fn unlike(&self, request: Request<pb::UnlikeRequest>) -> Result<Response<pb::UnlikeResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let (like_count, changed) = self.inner.like(caller.as_ref(), false, &r.post_id, &r.user).await?;
        Ok(Response::new(pb::UnlikeResponse { like_count, changed }))
    }

    async fn repost(&self, request: Request<pb::RepostRequest>) -> Result<Response<pb::RepostResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let (repost, repost_count, changed) = self.inner.repost(caller.as_ref(), &r.post_id, &r.user).await?;
        Ok(Response::new(pb::RepostResponse { repost: Some(repost), repost_count, changed }))
    }

    async fn get_user_timeline(
        &self,
        request: Request<pb::GetUserTimelineRequest>,
    ) -> Result<Response<pb::GetUserTimelineResponse>, Status> {
        let (posts, next_page_token) = self.inner.user_timeline(request.get_ref()).await?;
        Ok(Response::new(pb::GetUserTimelineResponse { posts, next_page_token }))
    }

    async fn get_home_timeline(
        &self,
        request: Request<pb::GetHomeTimelineRequest>,
    ) -> Result<Response<pb::GetHomeTimelineResponse>, Status> {
        let (posts, next_page_token) = self.inner.home_timeline(request.get_ref()).await?;
        Ok(Response::new(pb::GetHomeTimelineResponse { posts, next_page_token }))
    }

    type StreamHomeTimelineStream = BoxStream<'static, Result<pb::HomeTimelineEvent, Status>>;

    async fn stream_home_timeline(
        &self,
        request: Request<pb::StreamHomeTimelineRequest>,
    ) -> Result<Response<Self::StreamHomeTimelineStream>, Status> {
        let events = self.inner.stream_home(request.get_ref()).await?;
        Ok(Response::new(events.map(|e| e.map_err(Status::from)).boxed()))
    }

    async fn get_fanout_status(
        &self,
        request: Request<pb::GetFanoutStatusRequest>,
    ) -> Result<Response<pb::GetFanoutStatusResponse>, Status> {
        Ok(Response::new(self.inner.fanout_status(&request.get_ref().post_id).await?))
    }
}
