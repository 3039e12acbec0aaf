//! Shared fixtures: a meetings replica on a store under a key root of its own (the etcd
//! cluster is shared by every test of the run), meetings and joins, and a participant's
//! signalling stream as a client holds it.

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::clock::{Clock, SystemClock};
use meshwork_common::fields::timestamp;
use meshwork_meetings::Config;
use meshwork_proto::pb::meetings::v1 as pb;
use meshwork_storage::{Direction, DynStore, Entry, KeyRange, scan_all};
use meshwork_test_support::{TestServer, backends::unique, context_with_clock};
use pb::meetings_client::MeetingsClient;
use pb::stream_meeting_request::Body;
use pb::stream_meeting_response::Body as Out;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

pub type Client = MeetingsClient<Channel>;

/// How long a test waits for something that should come quickly.
pub const WAIT: Duration = Duration::from_secs(20);

/// Returns a user id no other test uses.
pub fn user(tag: &str) -> String {
    unique(tag)
}

/// Returns a key root of its own.
pub fn root(tag: &str) -> String {
    unique(&format!("mtg-{tag}"))
}

/// Serves one meetings replica on `store` under `root`, timed by `clock`, sweeping every 20 ms.
pub async fn replica(store: &DynStore, root: &str, clock: Arc<dyn Clock>) -> (TestServer, Client) {
    let config = Config { root: root.to_string(), sweep_interval: Duration::from_millis(20), ..Config::default() };
    let ctx = context_with_clock(store.clone(), clock);
    let server = TestServer::start(vec![meshwork_meetings::hosted_with(&ctx, config)]).await;
    let client = MeetingsClient::new(server.channel.clone());
    (server, client)
}

/// Serves one replica with the system clock under a new root.
pub async fn start(store: &DynStore, tag: &str) -> (TestServer, Client) {
    replica(store, &root(tag), Arc::new(SystemClock)).await
}

/// Every key under `root` and its value, but the replicas' heartbeats (which tick by themselves).
pub async fn snapshot(store: &DynStore, root: &str) -> Vec<Entry> {
    let all = scan_all(store, KeyRange::prefix(format!("{root}/")), Direction::Forward).await.expect("scan the store");
    let beats = format!("{root}/replicas/");
    all.into_iter().filter(|e| !e.key.starts_with(beats.as_bytes())).collect()
}

/// A CreateMeeting request of `host` starting now.
pub fn create_request(host: &str, passcode: &str, waiting_room: bool, now_ms: i64) -> pb::CreateMeetingRequest {
    pb::CreateMeetingRequest {
        request_id: unique("create"),
        host: host.into(),
        topic: "Weekly sync".into(),
        start: Some(timestamp(now_ms)),
        duration: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        passcode: passcode.into(),
        waiting_room,
        settings: None,
    }
}

/// Creates a meeting of `host` starting now (by `now_ms`).
pub async fn create_at(c: &mut Client, host: &str, passcode: &str, waiting_room: bool, now_ms: i64) -> pb::Meeting {
    c.create_meeting(create_request(host, passcode, waiting_room, now_ms))
        .await
        .expect("create meeting")
        .into_inner()
        .meeting
        .expect("meeting")
}

/// Creates a meeting of `host` starting now (system clock).
pub async fn create(c: &mut Client, host: &str, passcode: &str, waiting_room: bool) -> pb::Meeting {
    create_at(c, host, passcode, waiting_room, SystemClock.now_ms()).await
}

/// Joins `user` to `meeting`.
pub async fn join(
    c: &mut Client,
    meeting: &str,
    user: &str,
    passcode: &str,
) -> Result<pb::ParticipantResponse, Status> {
    c.join(pb::JoinRequest { meeting_id: meeting.into(), user_id: user.into(), passcode: passcode.into() })
        .await
        .map(|r| r.into_inner())
}

/// A participant action request on oneself.
pub fn me(meeting: &str, user: &str) -> pb::ParticipantActionRequest {
    pb::ParticipantActionRequest { meeting_id: meeting.into(), user_id: user.into(), acting_user_id: String::new() }
}

/// A host action request.
pub fn host_action(meeting: &str, actor: &str, user: &str) -> pb::HostActionRequest {
    pb::HostActionRequest { meeting_id: meeting.into(), acting_user_id: actor.into(), user_id: user.into() }
}

/// Returns a participant as ListParticipants shows it (any status).
pub async fn participant(c: &mut Client, meeting: &str, user: &str) -> Option<pb::Participant> {
    for status in [
        pb::ParticipantStatus::Unspecified,
        pb::ParticipantStatus::Left,
        pb::ParticipantStatus::Denied,
        pb::ParticipantStatus::Removed,
    ] {
        let listed = c
            .list_participants(pb::ListParticipantsRequest {
                meeting_id: meeting.into(),
                status: status as i32,
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .expect("list participants")
            .into_inner()
            .participants;
        if let Some(p) = listed.into_iter().find(|p| p.user_id == user) {
            return Some(p);
        }
    }
    None
}

/// One participant's open signalling stream.
pub struct Conn {
    pub tx: mpsc::Sender<pb::StreamMeetingRequest>,
    pub rx: Streaming<pb::StreamMeetingResponse>,
    /// Events received while waiting for an action's result.
    pending: std::collections::VecDeque<pb::MeetingEvent>,
}

/// Opens `user`'s stream on `meeting` from `from` (0: its session's start).
pub async fn connect(c: &mut Client, meeting: &str, user: &str, from: u64) -> Result<Conn, Status> {
    let (tx, rx) = mpsc::channel(64);
    let hello = pb::Hello { meeting_id: meeting.into(), user_id: user.into(), from_sequence: from };
    tx.send(pb::StreamMeetingRequest { r#ref: String::new(), body: Some(Body::Hello(hello)) })
        .await
        .expect("queue hello");
    let rx = c.stream_meeting(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    Ok(Conn { tx, rx, pending: Default::default() })
}

impl Conn {
    /// Returns the next event (skipping action results), or `None` when the stream ended.
    pub async fn next_event(&mut self) -> Option<pb::MeetingEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        loop {
            let message = tokio::time::timeout(WAIT, self.rx.message()).await.expect("an event in time");
            match message.expect("stream message")?.body {
                Some(Out::Event(e)) => return Some(e),
                Some(Out::Result(_)) | None => {}
            }
        }
    }

    /// Returns every event until (and including) sequence `last`.
    pub async fn events_through(&mut self, last: u64) -> Vec<pb::MeetingEvent> {
        let mut out = Vec::new();
        while out.last().is_none_or(|e: &pb::MeetingEvent| e.sequence < last) {
            match self.next_event().await {
                Some(e) => out.push(e),
                None => panic!("the stream ended before sequence {last}: {out:?}"),
            }
        }
        out
    }

    /// Returns every event until the stream ends.
    pub async fn events_to_end(&mut self) -> Vec<pb::MeetingEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event().await {
            out.push(e);
        }
        out
    }

    /// Sends `body` with `reference` and returns its result (events meanwhile are kept).
    pub async fn request(&mut self, reference: &str, body: Body) -> pb::ActionResult {
        let message = pb::StreamMeetingRequest { r#ref: reference.into(), body: Some(body) };
        self.tx.send(message).await.expect("send on the stream");
        loop {
            let message = tokio::time::timeout(WAIT, self.rx.message()).await.expect("a result in time");
            match message.expect("stream message").expect("stream open").body {
                Some(Out::Result(r)) if r.r#ref == reference => return r,
                Some(Out::Event(e)) => self.pending.push_back(e),
                _ => {}
            }
        }
    }

    /// Runs an action on the stream.
    pub async fn action(&mut self, reference: &str, t: pb::ActionType, target: &str) -> pb::ActionResult {
        self.request(reference, Body::Action(pb::ClientAction { r#type: t as i32, target_user_id: target.into() }))
            .await
    }
}

/// Returns an event's short form for comparisons: (sequence, type, user, text).
pub fn short(e: &pb::MeetingEvent) -> (u64, i32, String, String) {
    (e.sequence, e.r#type, e.user_id.clone(), e.text.clone())
}
