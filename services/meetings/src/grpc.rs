//! gRPC glue: decodes requests, reads the caller, calls [`Meetings`], encodes responses. No
//! logic.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_proto::pb::meetings::v1 as pb;
use pb::EventType as E;
use pb::meetings_server::Meetings as MeetingsApi;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::service::{Action, Meetings};

/// The tonic service.
#[derive(Clone)]
pub struct MeetingsService {
    inner: Arc<Meetings>,
}

impl MeetingsService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Meetings>) -> Self {
        MeetingsService { inner }
    }

    async fn act(
        &self,
        request: Request<pb::ParticipantActionRequest>,
        action: Action,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.act_request(caller.as_ref(), request.get_ref(), action).await?))
    }

    async fn host(
        &self,
        request: Request<pb::HostActionRequest>,
        t: E,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.host_action(caller.as_ref(), request.get_ref(), t).await?))
    }
}

#[tonic::async_trait]
impl MeetingsApi for MeetingsService {
    async fn create_meeting(
        &self,
        request: Request<pb::CreateMeetingRequest>,
    ) -> Result<Response<pb::CreateMeetingResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let meeting = self.inner.create(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::CreateMeetingResponse { meeting: Some(meeting) }))
    }

    async fn get_meeting(
        &self,
        request: Request<pb::GetMeetingRequest>,
    ) -> Result<Response<pb::GetMeetingResponse>, Status> {
        let meeting = self.inner.get(&request.get_ref().meeting_id).await?;
        Ok(Response::new(pb::GetMeetingResponse { meeting: Some(meeting) }))
    }

    async fn join(&self, request: Request<pb::JoinRequest>) -> Result<Response<pb::ParticipantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.join(caller.as_ref(), request.get_ref()).await?))
    }

    async fn leave(
        &self,
        request: Request<pb::ParticipantActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.leave(caller.as_ref(), request.get_ref()).await?))
    }

    async fn admit(
        &self,
        request: Request<pb::HostActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.host(request, E::Admitted).await
    }

    async fn deny(&self, request: Request<pb::HostActionRequest>) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.host(request, E::Denied).await
    }

    async fn remove(
        &self,
        request: Request<pb::HostActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.host(request, E::Removed).await
    }

    async fn mute_all(
        &self,
        request: Request<pb::MeetingControlRequest>,
    ) -> Result<Response<pb::MeetingResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.mute_all(caller.as_ref(), request.get_ref()).await?))
    }

    async fn allow_unmute(
        &self,
        request: Request<pb::AllowUnmuteRequest>,
    ) -> Result<Response<pb::MeetingResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.allow_unmute(caller.as_ref(), request.get_ref()).await?))
    }

    async fn make_co_host(
        &self,
        request: Request<pb::MakeCoHostRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.make_co_host(caller.as_ref(), request.get_ref()).await?))
    }

    async fn lock_meeting(
        &self,
        request: Request<pb::LockMeetingRequest>,
    ) -> Result<Response<pb::MeetingResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.lock(caller.as_ref(), request.get_ref()).await?))
    }

    async fn end_meeting(
        &self,
        request: Request<pb::MeetingControlRequest>,
    ) -> Result<Response<pb::MeetingResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.end(caller.as_ref(), request.get_ref()).await?))
    }

    async fn mute(
        &self,
        request: Request<pb::ParticipantActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.act(request, Action::Mute).await
    }

    async fn unmute(
        &self,
        request: Request<pb::ParticipantActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.act(request, Action::Unmute).await
    }

    async fn raise_hand(
        &self,
        request: Request<pb::ParticipantActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.act(request, Action::RaiseHand).await
    }

    async fn lower_hand(
        &self,
        request: Request<pb::ParticipantActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.act(request, Action::LowerHand).await
    }

    async fn start_screen_share(
        &self,
        request: Request<pb::ParticipantActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.act(request, Action::StartScreenShare).await
    }

    async fn stop_screen_share(
        &self,
        request: Request<pb::ParticipantActionRequest>,
    ) -> Result<Response<pb::ParticipantResponse>, Status> {
        self.act(request, Action::StopScreenShare).await
    }

    async fn send_chat(&self, request: Request<pb::SendChatRequest>) -> Result<Response<pb::SendChatResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let sequence = self.inner.send_chat(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::SendChatResponse { sequence }))
    }

    type StreamMeetingStream = BoxStream<'static, Result<pb::StreamMeetingResponse, Status>>;

    async fn stream_meeting(
        &self,
        request: Request<Streaming<pb::StreamMeetingRequest>>,
    ) -> Result<Response<Self::StreamMeetingStream>, Status> {
        let caller = Caller::from_request(&request)?;
        let out = crate::stream::open(self.inner.clone(), caller, request.into_inner()).await?;
        Ok(Response::new(ReceiverStream::new(out).boxed()))
    }

    async fn list_participants(
        &self,
        request: Request<pb::ListParticipantsRequest>,
    ) -> Result<Response<pb::ListParticipantsResponse>, Status> {
        let (participants, next_page_token) = self.inner.list(request.get_ref()).await?;
        Ok(Response::new(pb::ListParticipantsResponse { participants, next_page_token }))
    }

    async fn get_meeting_report(
        &self,
        request: Request<pb::GetMeetingReportRequest>,
    ) -> Result<Response<pb::GetMeetingReportResponse>, Status> {
        Ok(Response::new(self.inner.report(&request.get_ref().meeting_id).await?))
    }
}
