//! The meeting's rules, pure: who may use host controls, where a Join lands, whether a
//! participant is muted, and when a dropped participant counts as gone. The service applies
//! them inside its store transactions.

use meshwork_common::{ServiceError, ServiceResult};

use crate::model::{MeetingRecord, ParticipantRecord, PresenceRecord, Role, Status};

/// How long a participant may be without an open stream before it is marked LEFT.
pub const PRESENCE_TIMEOUT_MS: i64 = 60_000;

/// Default of `max_participants`.
pub const DEFAULT_MAX_PARTICIPANTS: u32 = 300;

/// The authority of a host control's caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Host,
    CoHost,
}

/// Returns the authority of `actor` (its record, if any) in `meeting`: the host, or a co-host
/// IN_MEETING; PERMISSION_DENIED otherwise.
pub fn authority(
    meeting: &MeetingRecord,
    actor_id: &str,
    actor: Option<&ParticipantRecord>,
) -> ServiceResult<Authority> {
    if actor_id == meeting.host {
        return Ok(Authority::Host);
    }
    match actor {
        Some(p) if p.role == Role::CoHost && p.status == Status::InMeeting => Ok(Authority::CoHost),
        _ => Err(ServiceError::PermissionDenied(format!(
            "{:?} is neither the host nor a co-host of meeting {}",
            actor_id, meeting.meeting_id
        ))),
    }
}

/// Returns the host-only authority check's error unless `actor_id` is the host.
pub fn host_only(meeting: &MeetingRecord, actor_id: &str, what: &str) -> ServiceResult<()> {
    if actor_id == meeting.host {
        return Ok(());
    }
    Err(ServiceError::PermissionDenied(format!("only the host may {what}; {actor_id:?} is not the host")))
}

/// Fails with FAILED_PRECONDITION when the meeting ended.
pub fn not_ended(meeting: &MeetingRecord) -> ServiceResult<()> {
    if meeting.ended() {
        return Err(ServiceError::FailedPrecondition(format!("meeting {} has ended", meeting.meeting_id)));
    }
    Ok(())
}

/// Where a Join lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Already WAITING or IN_MEETING: nothing changes.
    Already,
    /// Enters with this status (WAITING or IN_MEETING).
    Enter(Status),
}

/// Returns where `user` lands on joining `meeting` (after the passcode was checked), given its
/// record from earlier sessions.
pub fn join(meeting: &MeetingRecord, user: &str, existing: Option<&ParticipantRecord>) -> ServiceResult<JoinOutcome> {
    not_ended(meeting)?;
    if let Some(p) = existing {
        match p.status {
            Status::Waiting | Status::InMeeting => return Ok(JoinOutcome::Already),
            Status::Removed => {
                return Err(ServiceError::PermissionDenied(format!(
                    "{user:?} was removed from meeting {} and cannot join again",
                    meeting.meeting_id
                )));
            }
            Status::Left | Status::Denied => {}
        }
    }
    let is_host = user == meeting.host;
    if meeting.locked && !is_host {
        return Err(ServiceError::FailedPrecondition(format!(
            "meeting {} is locked: no one new may join",
            meeting.meeting_id
        )));
    }
    let co_host = existing.is_some_and(|p| p.role == Role::CoHost);
    if meeting.waiting_room && !is_host && !co_host {
        return Ok(JoinOutcome::Enter(Status::Waiting));
    }
    Ok(JoinOutcome::Enter(Status::InMeeting))
}

/// Fails with RESOURCE_EXHAUSTED when one more participant would exceed the meeting's limit.
pub fn has_room(meeting: &MeetingRecord) -> ServiceResult<()> {
    if meeting.participant_count >= meeting.max_participants {
        return Err(ServiceError::ResourceExhausted(format!(
            "meeting {} is full ({} participants)",
            meeting.meeting_id, meeting.max_participants
        )));
    }
    Ok(())
}

/// Whether `p` is muted in `meeting`: its own flag, or a MuteAll after its own last change
/// (the host and co-hosts are not muted by MuteAll).
pub fn effective_muted(meeting: &MeetingRecord, p: &ParticipantRecord) -> bool {
    p.muted || (p.role == Role::Attendee && meeting.mute_all_seq > p.mute_seq)
}

/// Fails with FAILED_PRECONDITION unless `p` is IN_MEETING.
pub fn in_meeting(meeting: &MeetingRecord, p: &ParticipantRecord) -> ServiceResult<()> {
    if p.status != Status::InMeeting {
        return Err(ServiceError::FailedPrecondition(format!(
            "{:?} is not in meeting {} (status {})",
            p.user_id,
            meeting.meeting_id,
            status_name(p.status)
        )));
    }
    Ok(())
}

/// Returns the name of a status as the API spells it.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Waiting => "WAITING",
        Status::InMeeting => "IN_MEETING",
        Status::Left => "LEFT",
        Status::Denied => "DENIED",
        Status::Removed => "REMOVED",
    }
}

/// Whether the participant of `presence` counts as gone at `now_ms`: no stream open for more
/// than [`PRESENCE_TIMEOUT_MS`], or a stream held by another replica whose heartbeat
/// (`replica_beat_ms`, `None` when it has none) is that old. `own_replica` is the sweeping
/// replica: its own streams are open by definition (it is running).
pub fn gone(presence: &PresenceRecord, own_replica: &str, replica_beat_ms: Option<i64>, now_ms: i64) -> bool {
    let quiet_since = if !presence.connected {
        presence.since_ms
    } else if presence.replica == own_replica {
        return false;
    } else {
        replica_beat_ms.unwrap_or(i64::MIN)
    };
    now_ms.saturating_sub(quiet_since) > PRESENCE_TIMEOUT_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting() -> MeetingRecord {
        MeetingRecord {
            meeting_id: "mtg_1".into(),
            host: "h".into(),
            topic: "t".into(),
            start_ms: 0,
            duration_ms: 60_000,
            passcode: None,
            waiting_room: true,
            mute_on_entry: false,
            disable_chat: false,
            max_participants: 2,
            locked: false,
            allow_unmute: true,
            sharer: String::new(),
            participant_count: 0,
            peak_participants: 0,
            mute_all_seq: 0,
            ended_ms: 0,
            create_ms: 0,
        }
    }

    fn participant(user: &str, status: Status, role: Role) -> ParticipantRecord {
        ParticipantRecord {
            user_id: user.into(),
            status,
            role,
            muted: false,
            mute_seq: 5,
            hand_raised: false,
            session_seq: 5,
            join_ms: 0,
            leave_ms: 0,
            sessions: vec![],
        }
    }

    #[test]
    fn joins_land_by_waiting_room_lock_and_history() {
        let mut m = meeting();
        assert_eq!(join(&m, "a", None).unwrap(), JoinOutcome::Enter(Status::Waiting));
        assert_eq!(join(&m, "h", None).unwrap(), JoinOutcome::Enter(Status::InMeeting));
        let co = participant("c", Status::Left, Role::CoHost);
        assert_eq!(join(&m, "c", Some(&co)).unwrap(), JoinOutcome::Enter(Status::InMeeting));
        let waiting = participant("a", Status::Waiting, Role::Attendee);
        assert_eq!(join(&m, "a", Some(&waiting)).unwrap(), JoinOutcome::Already);
        let removed = participant("a", Status::Removed, Role::Attendee);
        assert_eq!(join(&m, "a", Some(&removed)).unwrap_err().code(), tonic::Code::PermissionDenied);
        let denied = participant("a", Status::Denied, Role::Attendee);
        assert_eq!(join(&m, "a", Some(&denied)).unwrap(), JoinOutcome::Enter(Status::Waiting));
        m.waiting_room = false;
        assert_eq!(join(&m, "a", None).unwrap(), JoinOutcome::Enter(Status::InMeeting));
        m.locked = true;
        assert_eq!(join(&m, "a", None).unwrap_err().code(), tonic::Code::FailedPrecondition);
        assert_eq!(join(&m, "h", None).unwrap(), JoinOutcome::Enter(Status::InMeeting));
        m.ended_ms = 1;
        assert_eq!(join(&m, "h", None).unwrap_err().code(), tonic::Code::FailedPrecondition);
        m.ended_ms = 0;
        m.participant_count = 2;
        assert_eq!(has_room(&m).unwrap_err().code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn authority_is_the_host_or_a_present_co_host() {
        let m = meeting();
        assert_eq!(authority(&m, "h", None).unwrap(), Authority::Host);
        let co = participant("c", Status::InMeeting, Role::CoHost);
        assert_eq!(authority(&m, "c", Some(&co)).unwrap(), Authority::CoHost);
        let gone_co = participant("c", Status::Left, Role::CoHost);
        assert!(authority(&m, "c", Some(&gone_co)).is_err());
        let a = participant("a", Status::InMeeting, Role::Attendee);
        assert_eq!(authority(&m, "a", Some(&a)).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(host_only(&m, "c", "end the meeting").is_err());
    }

    #[test]
    fn mute_all_mutes_attendees_until_their_own_next_change() {
        let mut m = meeting();
        let mut a = participant("a", Status::InMeeting, Role::Attendee);
        let co = participant("c", Status::InMeeting, Role::CoHost);
        assert!(!effective_muted(&m, &a));
        m.mute_all_seq = 6;
        assert!(effective_muted(&m, &a));
        assert!(!effective_muted(&m, &co), "co-hosts keep their microphone");
        a.mute_seq = 7;
        assert!(!effective_muted(&m, &a), "an unmute after the MuteAll counts");
    }

    #[test]
    fn presence_goes_stale_after_sixty_seconds_without_a_stream() {
        let closed =
            PresenceRecord { replica: String::new(), stream: String::new(), connected: false, since_ms: 1_000 };
        assert!(!gone(&closed, "r1", None, 61_000));
        assert!(gone(&closed, "r1", None, 61_001));
        let open_here = PresenceRecord { replica: "r1".into(), stream: "s".into(), connected: true, since_ms: 0 };
        assert!(!gone(&open_here, "r1", None, i64::MAX));
        let open_there = PresenceRecord { replica: "r2".into(), ..open_here };
        assert!(!gone(&open_there, "r1", Some(50_000), 100_000));
        assert!(gone(&open_there, "r1", Some(30_000), 100_000));
        assert!(gone(&open_there, "r1", None, 100_000), "a replica without a heartbeat is gone");
    }
}
