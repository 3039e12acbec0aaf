//! One participant's signalling stream (`StreamMeeting`): the hello, then two halves. The
//! inbound half runs the client's actions and chat as that participant and answers each with
//! an `ActionResult`. The outbound half sends the meeting's events in log order from the
//! stream's position: it reads the log to catch up, then takes events from the replica's
//! feed ([`crate::feed`]); an event already sent is skipped, and a jump in the feed (lag, a
//! feed started late) is filled from the log, so there are no gaps and no repeats. A client
//! that reconnects with `from_sequence` = its last sequence + 1 continues exactly there.
//!
//! While the stream is open the participant's presence record says so (with this replica's id
//! and the stream's own id); when it closes, the record says since when it is closed, and the
//! sweeper ([`crate::presence`]) marks the participant LEFT 60 s later unless a new stream
//! opened meanwhile.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use meshwork_common::caller::Caller;
use meshwork_common::{Event, EventLog, Record, ServiceError, ServiceResult};
use meshwork_proto::pb::meetings::v1 as pb;
use pb::stream_meeting_request::Body;
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::model::{PresenceRecord, Status as PStatus};
use crate::service::{Action, Meetings};
use crate::{access, validate};

/// Messages buffered per stream before the sender waits for the client.
const OUT_CAPACITY: usize = 256;

/// Events read from the log per catch-up read.
const READ_BATCH: usize = 500;

/// What a stream's outbound half sends.
pub type Outbound = Result<pb::StreamMeetingResponse, Status>;

/// Opens a participant's stream: reads the hello from `inbound`, checks it, and returns the
/// receiver of what the stream sends.
pub async fn open<S>(
    meetings: Arc<Meetings>,
    caller: Option<Caller>,
    mut inbound: S,
) -> ServiceResult<mpsc::Receiver<Outbound>>
where
    S: Stream<Item = Result<pb::StreamMeetingRequest, Status>> + Send + Unpin + 'static,
{
    let first = match inbound.next().await {
        Some(Ok(first)) => first,
        Some(Err(e)) => {
            return Err(ServiceError::Unavailable(format!("the stream broke before its hello: {}", e.message())));
        }
        None => return Err(ServiceError::invalid("hello", "the stream ended before its hello")),
    };
    let Some(Body::Hello(hello)) = first.body else {
        return Err(ServiceError::invalid("hello", "required: the first message of the stream is a hello"));
    };
    validate::hello(&hello)?;
    access::acting(caller.as_ref(), &hello.user_id)?;
    let (meeting_id, user) = (hello.meeting_id.clone(), hello.user_id.clone());
    let m = meetings.meeting(&meeting_id).await?;
    let p = meetings.participant(&meeting_id, &user).await?.ok_or_else(|| {
        ServiceError::FailedPrecondition(format!("{user:?} has not joined meeting {meeting_id}: Join first"))
    })?;
    // After the end, a stream may still collect the events it missed, up to ENDED.
    if !m.ended() && !p.status.is_present() {
        return Err(ServiceError::FailedPrecondition(format!(
            "{user:?} is {} in meeting {meeting_id}: Join again first",
            crate::rules::status_name(p.status)
        )));
    }
    let log = meetings.log(&meeting_id);
    let head = log.head().await?;
    if hello.from_sequence > head + 1 {
        return Err(ServiceError::invalid(
            "hello.from_sequence",
            format!("is beyond the meeting's next sequence {}", head + 1),
        ));
    }
    let from = if hello.from_sequence == 0 { p.session_seq.max(1) } else { hello.from_sequence };
    // ENDED is the last event: after it there is nothing to wait for.
    if m.ended() && from > head {
        return Err(ServiceError::FailedPrecondition(format!(
            "meeting {meeting_id} has ended; its last event is {head}"
        )));
    }
    let presence =
        if m.ended() { None } else { Some(PresenceGuard::open(meetings.clone(), &meeting_id, &user).await?) };

    let (out, rx) = mpsc::channel(OUT_CAPACITY);
    let actions =
        tokio::spawn(run_inbound(meetings.clone(), meeting_id.clone(), user.clone(), inbound, out.downgrade()));
    let feed = meetings.feeds.subscribe(&meeting_id, &log);
    let pump = Pump {
        meetings,
        log,
        meeting_id,
        user,
        session_seq: p.session_seq,
        waiting: p.status == PStatus::Waiting,
        next: from,
        out,
    };
    tokio::spawn(async move {
        pump.run(feed).await;
        actions.abort();
        drop(presence);
    });
    Ok(rx)
}

/// Runs the client's actions and chat, answering each.
async fn run_inbound<S>(
    meetings: Arc<Meetings>,
    meeting_id: String,
    user: String,
    mut inbound: S,
    out: mpsc::WeakSender<Outbound>,
) where
    S: Stream<Item = Result<pb::StreamMeetingRequest, Status>> + Send + Unpin + 'static,
{
    while let Some(Ok(message)) = inbound.next().await {
        let reference = message.r#ref.clone();
        let outcome = handle(&meetings, &meeting_id, &user, message).await;
        let result = match outcome {
            Ok(sequence) => pb::ActionResult { r#ref: reference, code: 0, message: String::new(), sequence },
            Err(e) => pb::ActionResult { r#ref: reference, code: e.code() as i32, message: e.to_string(), sequence: 0 },
        };
        let Some(out) = out.upgrade() else { return };
        let reply = pb::StreamMeetingResponse { body: Some(pb::stream_meeting_response::Body::Result(result)) };
        if out.send(Ok(reply)).await.is_err() {
            return;
        }
    }
}

/// Runs one client message as the stream's participant; returns the sequence of its event.
async fn handle(
    meetings: &Meetings,
    meeting_id: &str,
    user: &str,
    message: pb::StreamMeetingRequest,
) -> ServiceResult<u64> {
    validate::stream_ref(&message.r#ref)?;
    match message.body {
        None => Err(ServiceError::invalid("body", "required: an action or a chat message")),
        Some(Body::Hello(_)) => Err(ServiceError::invalid("hello", "only the first message is a hello")),
        Some(Body::Chat(text)) => {
            validate::chat_text("chat", &text)?;
            meetings.chat(meeting_id, user, &text).await
        }
        Some(Body::Action(action)) => {
            let target =
                if action.target_user_id.is_empty() { user.to_string() } else { action.target_user_id.clone() };
            meshwork_common::fields::user_id("action.target_user_id", &target)?;
            let kind = match pb::ActionType::try_from(action.r#type) {
                Ok(pb::ActionType::Mute) => Action::Mute,
                Ok(pb::ActionType::Unmute) => Action::Unmute,
                Ok(pb::ActionType::RaiseHand) => Action::RaiseHand,
                Ok(pb::ActionType::LowerHand) => Action::LowerHand,
                Ok(pb::ActionType::StartScreenShare) => Action::StartScreenShare,
                Ok(pb::ActionType::StopScreenShare) => Action::StopScreenShare,
                Ok(pb::ActionType::Leave) => {
                    if target != user {
                        return Err(ServiceError::invalid("action.target_user_id", "LEAVE is for oneself"));
                    }
                    return Ok(meetings.leave_as(meeting_id, user, "left", user).await?.sequence);
                }
                Ok(pb::ActionType::Unspecified) | Err(_) => {
                    return Err(ServiceError::invalid("action.type", "required: one of the ActionType values"));
                }
            };
            Ok(meetings.act(meeting_id, &target, user, kind).await?.sequence)
        }
    }
}

/// The outbound half of a stream.
struct Pump {
    meetings: Arc<Meetings>,
    log: EventLog,
    meeting_id: String,
    user: String,
    /// The event that opened the participant's session: its own LEFT/REMOVED/DENIED after it
    /// closes the stream.
    session_seq: u64,
    /// While WAITING, only events about the participant (and ENDED) are sent.
    waiting: bool,
    /// The next sequence to send.
    next: u64,
    out: mpsc::Sender<Outbound>,
}

/// What to do after an event.
enum Flow {
    Continue,
    Close,
}

impl Pump {
    async fn run(mut self, mut feed: broadcast::Receiver<Arc<Event>>) {
        let mut behind = true;
        loop {
            if behind {
                match self.catch_up().await {
                    Ok(Flow::Continue) => behind = false,
                    Ok(Flow::Close) => return,
                    Err(e) => {
                        let _ = self.out.send(Err(e.into())).await;
                        return;
                    }
                }
            }
            tokio::select! {
                _ = self.out.closed() => return,
                received = feed.recv() => match received {
                    Ok(event) if event.sequence < self.next => {}
                    Ok(event) if event.sequence == self.next => {
                        if let Flow::Close = self.deliver(&event).await {
                            return;
                        }
                    }
                    // Something came between: the log has it.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => behind = true,
                    Err(broadcast::error::RecvError::Closed) => {
                        // The feed stopped (the meeting ended, or the store failed): read what is
                        // left, then follow a new one.
                        behind = true;
                        feed = self.meetings.feeds.subscribe(&self.meeting_id, &self.log);
                    }
                },
            }
        }
    }

    /// Sends every stored event from `next` on.
    async fn catch_up(&mut self) -> ServiceResult<Flow> {
        loop {
            let events = self.log.read(self.next, READ_BATCH).await?;
            let full = events.len() == READ_BATCH;
            for event in &events {
                if event.sequence < self.next {
                    continue;
                }
                if let Flow::Close = self.deliver(event).await {
                    return Ok(Flow::Close);
                }
            }
            if !full {
                return Ok(Flow::Continue);
            }
        }
    }

    /// Sends one event (unless filtered) and advances.
    async fn deliver(&mut self, event: &Event) -> Flow {
        self.next = event.sequence + 1;
        let mut wire = match pb::MeetingEvent::decode(event.payload.as_slice()) {
            Ok(w) => w,
            Err(e) => {
                let error = ServiceError::Internal(format!("undecodable meeting event {}: {e}", event.sequence));
                let _ = self.out.send(Err(error.into())).await;
                return Flow::Close;
            }
        };
        wire.sequence = event.sequence;
        let t = pb::EventType::try_from(wire.r#type).unwrap_or(pb::EventType::Unspecified);
        let mine = wire.user_id == self.user && event.sequence >= self.session_seq;
        if self.waiting && t == pb::EventType::Admitted && mine {
            self.waiting = false;
        }
        let ends = t == pb::EventType::Ended
            || (mine && matches!(t, pb::EventType::Left | pb::EventType::Removed | pb::EventType::Denied));
        let visible = !self.waiting || wire.user_id == self.user || t == pb::EventType::Ended;
        if visible {
            let message = pb::StreamMeetingResponse { body: Some(pb::stream_meeting_response::Body::Event(wire)) };
            if self.out.send(Ok(message)).await.is_err() {
                return Flow::Close;
            }
        }
        if ends { Flow::Close } else { Flow::Continue }
    }
}

/// The presence of an open stream: marks it open on creation and closed (since now) on drop,
/// unless a newer stream of the participant took over meanwhile.
struct PresenceGuard {
    meetings: Arc<Meetings>,
    meeting_id: String,
    user: String,
    stream: String,
}

impl PresenceGuard {
    async fn open(meetings: Arc<Meetings>, meeting_id: &str, user: &str) -> ServiceResult<Self> {
        let stream = meshwork_common::random_id("str_", 16);
        let record = PresenceRecord {
            replica: meetings.config.replica_id.clone(),
            stream: stream.clone(),
            connected: true,
            since_ms: meetings.clock.now_ms(),
        };
        meetings
            .store
            .write(
                vec![],
                vec![meshwork_storage::Mutation::put(meetings.keys.presence(meeting_id, user), record.encode()?)],
            )
            .await?;
        Ok(PresenceGuard { meetings, meeting_id: meeting_id.to_string(), user: user.to_string(), stream })
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let (meetings, meeting_id, user, stream) =
            (self.meetings.clone(), self.meeting_id.clone(), self.user.clone(), self.stream.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if let Err(e) = crate::presence::close(&meetings, &meeting_id, &user, &stream).await {
                tracing::warn!(error = %e, meeting_id = %meeting_id, user = %user, "cannot record a closed stream");
            }
        });
    }
}
