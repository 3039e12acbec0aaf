//! The records the meetings service keeps in the Store, with their versioned encoding
//! ([`Record`]): the meeting, each participant, each participant's presence and each
//! replica's heartbeat. Mute state is kept so that MuteAll writes one record, not one per
//! participant (etcd allows 128 operations per transaction): the meeting remembers the
//! sequence of its last MuteAll, each participant the sequence of its own last mute change,
//! and a participant is muted when its own flag says so or a MuteAll came after its own
//! change (see [`crate::rules::effective_muted`]).

use meshwork_common::Record;
use serde::{Deserialize, Serialize};

/// Where a participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the waiting room.
    Waiting,
    /// In the meeting.
    InMeeting,
    /// Left (or lost the connection for more than 60 s); may join again.
    Left,
    /// Sent away from the waiting room; may knock again.
    Denied,
    /// Removed by a host: may never join again.
    Removed,
}

impl Status {
    /// Whether the participant is WAITING or IN_MEETING (has a session open).
    pub fn is_present(self) -> bool {
        matches!(self, Status::Waiting | Status::InMeeting)
    }
}

/// A participant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The meeting's host.
    Host,
    /// Given host controls by the host.
    CoHost,
    /// Everyone else.
    Attendee,
}

/// The hash of a meeting's passcode (PBKDF2-HMAC-SHA256), never the passcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasscodeHash {
    /// Random salt.
    pub salt: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The derived key, lower-case hex.
    pub hash: String,
}

/// A meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingRecord {
    pub meeting_id: String,
    pub host: String,
    pub topic: String,
    pub start_ms: i64,
    pub duration_ms: i64,
    /// `None` when joining needs no passcode.
    pub passcode: Option<PasscodeHash>,
    pub waiting_room: bool,
    pub mute_on_entry: bool,
    pub disable_chat: bool,
    pub max_participants: u32,
    pub locked: bool,
    pub allow_unmute: bool,
    /// The user sharing their screen, or empty.
    pub sharer: String,
    /// Participants IN_MEETING now.
    pub participant_count: u32,
    /// Most participants IN_MEETING at once.
    pub peak_participants: u32,
    /// Sequence of the last MuteAll (0: never).
    pub mute_all_seq: u64,
    /// When the meeting ended (0: not ended).
    pub ended_ms: i64,
    pub create_ms: i64,
}

impl Record for MeetingRecord {
    const KIND: &'static str = "meeting record";
}

impl MeetingRecord {
    /// Whether the meeting ended.
    pub fn ended(&self) -> bool {
        self.ended_ms != 0
    }
}

/// One time a participant was IN_MEETING: join and leave (0 while open), Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub join_ms: i64,
    pub leave_ms: i64,
}

/// A participant of a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub user_id: String,
    pub status: Status,
    pub role: Role,
    /// The participant's own mute flag (see the module doc for MuteAll).
    pub muted: bool,
    /// Sequence of the participant's last own mute change (or of its entry).
    pub mute_seq: u64,
    pub hand_raised: bool,
    /// Sequence of the event that started the current (or last) session: its JOINED or
    /// WAITING. A stream ends on this participant's LEFT/REMOVED/DENIED only after it.
    pub session_seq: u64,
    /// When the current (or last) session started and ended (0: open), Unix ms.
    pub join_ms: i64,
    pub leave_ms: i64,
    /// Every IN_MEETING session, oldest first.
    pub sessions: Vec<SessionRecord>,
}

impl Record for ParticipantRecord {
    const KIND: &'static str = "participant record";
}

/// Whether a participant's stream is open, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// The replica holding the open stream (empty when none is open).
    pub replica: String,
    /// The open stream's own id, so that an old stream's close does not mark a newer one gone.
    pub stream: String,
    /// Whether a stream is open.
    pub connected: bool,
    /// When the last stream closed (or the participant joined without one yet), Unix ms.
    pub since_ms: i64,
}

impl Record for PresenceRecord {
    const KIND: &'static str = "presence record";
}

/// A replica's heartbeat: proof that the streams it holds are still open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub beat_ms: i64,
}

impl Record for ReplicaRecord {
    const KIND: &'static str = "replica heartbeat";
}
