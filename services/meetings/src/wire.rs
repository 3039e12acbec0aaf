//! Conversions from the stored records to the API's messages.

use meshwork_common::fields::{timestamp, timestamp_opt};
use meshwork_proto::pb::meetings::v1 as pb;

use crate::model::{MeetingRecord, ParticipantRecord, Role, Status};
use crate::rules;

/// Returns the API status of a stored one.
pub fn status(s: Status) -> pb::ParticipantStatus {
    match s {
        Status::Waiting => pb::ParticipantStatus::Waiting,
        Status::InMeeting => pb::ParticipantStatus::InMeeting,
        Status::Left => pb::ParticipantStatus::Left,
        Status::Denied => pb::ParticipantStatus::Denied,
        Status::Removed => pb::ParticipantStatus::Removed,
    }
}

fn role(r: Role) -> pb::Role {
    match r {
        Role::Host => pb::Role::Host,
        Role::CoHost => pb::Role::CoHost,
        Role::Attendee => pb::Role::Attendee,
    }
}

fn duration(ms: i64) -> prost_types::Duration {
    let ms = ms.max(0);
    prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

/// Returns the status of `p` as the API shows it: an ended meeting ended every session.
fn shown_status(m: &MeetingRecord, p: &ParticipantRecord) -> pb::ParticipantStatus {
    if m.ended() && p.status.is_present() { pb::ParticipantStatus::Left } else { status(p.status) }
}

/// Returns the API form of a meeting whose log stands at `last_sequence`.
pub fn meeting(m: &MeetingRecord, last_sequence: u64) -> pb::Meeting {
    pb::Meeting {
        meeting_id: m.meeting_id.clone(),
        host: m.host.clone(),
        topic: m.topic.clone(),
        start: Some(timestamp(m.start_ms)),
        duration: Some(duration(m.duration_ms)),
        has_passcode: m.passcode.is_some(),
        waiting_room: m.waiting_room,
        settings: Some(pb::MeetingSettings {
            mute_on_entry: m.mute_on_entry,
            disable_chat: m.disable_chat,
            max_participants: i32::try_from(m.max_participants).unwrap_or(i32::MAX),
        }),
        locked: m.locked,
        allow_unmute: m.allow_unmute,
        sharer: m.sharer.clone(),
        participant_count: if m.ended() { 0 } else { i32::try_from(m.participant_count).unwrap_or(i32::MAX) },
        ended_time: timestamp_opt(m.ended_ms),
        create_time: Some(timestamp(m.create_ms)),
        last_sequence,
    }
}

/// Returns the API form of a participant of `m`; `connected` from its presence.
pub fn participant(m: &MeetingRecord, p: &ParticipantRecord, connected: bool) -> pb::Participant {
    let present = p.status.is_present() && !m.ended();
    // An ended meeting ended every open session at its end.
    let leave_ms = if p.status.is_present() && m.ended() { m.ended_ms } else { p.leave_ms };
    pb::Participant {
        user_id: p.user_id.clone(),
        status: shown_status(m, p) as i32,
        role: role(p.role) as i32,
        muted: rules::effective_muted(m, p),
        hand_raised: p.hand_raised && present,
        sharing: present && m.sharer == p.user_id,
        join_time: timestamp_opt(p.join_ms),
        leave_time: if present { None } else { timestamp_opt(leave_ms) },
        connected: connected && present,
    }
}

/// Returns the attendance of `p` in `m` at `now_ms`: its sessions and their total (an open
/// session counts up to the meeting's end, or to now).
pub fn attendance(m: &MeetingRecord, p: &ParticipantRecord, now_ms: i64) -> pb::Attendance {
    let open_until = if m.ended() { m.ended_ms } else { now_ms };
    let mut total = 0i64;
    let sessions = p
        .sessions
        .iter()
        .map(|s| {
            let end = if s.leave_ms == 0 { open_until } else { s.leave_ms };
            total += end.saturating_sub(s.join_ms).max(0);
            let leave_ms = if s.leave_ms == 0 && m.ended() { m.ended_ms } else { s.leave_ms };
            pb::Session { join_time: Some(timestamp(s.join_ms)), leave_time: timestamp_opt(leave_ms) }
        })
        .collect();
    pb::Attendance {
        user_id: p.user_id.clone(),
        sessions,
        total: Some(duration(total)),
        status: shown_status(m, p) as i32,
    }
}
