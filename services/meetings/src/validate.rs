//! Field rules of every meetings request, one function per request, checked before the store
//! is touched: INVALID_ARGUMENT naming the field and the reason.

use meshwork_common::{ServiceError, ServiceResult, fields, is_random_id, validate_request_id};
use meshwork_proto::pb::meetings::v1 as pb;

/// Largest `max_participants`.
pub const MAX_PARTICIPANTS: i32 = 1_000;
/// Longest topic, in characters.
pub const MAX_TOPIC: usize = 200;
/// Longest chat message, in characters.
pub const MAX_CHAT: usize = 1_000;
/// Longest `ref` of a stream message, in characters.
pub const MAX_REF: usize = 64;
const DAY_MS: i64 = 24 * 3600 * 1000;
const MINUTE_MS: i64 = 60_000;

/// Checks a meeting id: `mtg_` and 20 base62 characters.
pub fn meeting_id(field: &str, id: &str) -> ServiceResult<()> {
    if id.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if !is_random_id(id, "mtg_", 20) {
        return Err(ServiceError::invalid(field, "must be mtg_ and 20 base62 characters"));
    }
    Ok(())
}

/// Checks a passcode as a meeting is created with it: empty, or 1-10 of `[A-Za-z0-9@*_.-]`.
pub fn new_passcode(field: &str, passcode: &str) -> ServiceResult<()> {
    if passcode.chars().count() > 10 {
        return Err(ServiceError::invalid(field, "at most 10 characters"));
    }
    if !passcode.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'*' | b'_' | b'.' | b'-')) {
        return Err(ServiceError::invalid(field, "must be characters of [A-Za-z0-9@*_.-]"));
    }
    Ok(())
}

/// Checks CreateMeeting; returns (start ms, duration ms, max participants).
pub fn create(req: &pb::CreateMeetingRequest, now_ms: i64) -> ServiceResult<(i64, i64, u32)> {
    validate_request_id(&req.request_id)?;
    fields::user_id("host", &req.host)?;
    fields::text("topic", &req.topic, MAX_TOPIC, true)?;
    if req.topic.chars().any(char::is_control) {
        return Err(ServiceError::invalid("topic", "must not contain control characters"));
    }
    let start = req.start.as_ref().ok_or_else(|| ServiceError::invalid("start", "required"))?;
    let start_ms = fields::millis("start", start)?;
    if start_ms < now_ms - DAY_MS || start_ms > now_ms + 366 * DAY_MS {
        return Err(ServiceError::invalid("start", "must be at most 1 day in the past and 1 year ahead"));
    }
    let duration = req.duration.as_ref().ok_or_else(|| ServiceError::invalid("duration", "required"))?;
    let duration_ms = i64::try_from(fields::duration("duration", duration)?.as_millis()).unwrap_or(i64::MAX);
    if !(MINUTE_MS..=DAY_MS).contains(&duration_ms) {
        return Err(ServiceError::invalid("duration", "must be 1 minute to 24 hours"));
    }
    new_passcode("passcode", &req.passcode)?;
    let max = req.settings.as_ref().map_or(0, |s| s.max_participants);
    if !(0..=MAX_PARTICIPANTS).contains(&max) {
        return Err(ServiceError::invalid("settings.max_participants", "must be 0 to 1000"));
    }
    let max = if max == 0 { crate::rules::DEFAULT_MAX_PARTICIPANTS } else { max as u32 };
    Ok((start_ms, duration_ms, max))
}

/// Checks Join.
pub fn join(req: &pb::JoinRequest) -> ServiceResult<()> {
    meeting_id("meeting_id", &req.meeting_id)?;
    fields::user_id("user_id", &req.user_id)?;
    if req.passcode.chars().count() > 10 {
        return Err(ServiceError::invalid("passcode", "at most 10 characters"));
    }
    Ok(())
}

/// Checks a participant action; returns the acting user (`acting_user_id`, or `user_id`).
pub fn participant_action(req: &pb::ParticipantActionRequest) -> ServiceResult<String> {
    meeting_id("meeting_id", &req.meeting_id)?;
    fields::user_id("user_id", &req.user_id)?;
    if req.acting_user_id.is_empty() {
        return Ok(req.user_id.clone());
    }
    fields::user_id("acting_user_id", &req.acting_user_id)?;
    Ok(req.acting_user_id.clone())
}

/// Checks a host action on a participant.
pub fn host_action(req: &pb::HostActionRequest) -> ServiceResult<()> {
    meeting_id("meeting_id", &req.meeting_id)?;
    fields::user_id("acting_user_id", &req.acting_user_id)?;
    fields::user_id("user_id", &req.user_id)
}

/// Checks a meeting-wide control.
pub fn control(meeting: &str, acting_user_id: &str) -> ServiceResult<()> {
    meeting_id("meeting_id", meeting)?;
    fields::user_id("acting_user_id", acting_user_id)
}

/// Checks MakeCoHost.
pub fn make_co_host(req: &pb::MakeCoHostRequest) -> ServiceResult<()> {
    meeting_id("meeting_id", &req.meeting_id)?;
    fields::user_id("acting_user_id", &req.acting_user_id)?;
    fields::user_id("user_id", &req.user_id)
}

/// Checks a chat message's text.
pub fn chat_text(field: &str, text: &str) -> ServiceResult<()> {
    fields::text(field, text, MAX_CHAT, true)
}

/// Checks SendChat.
pub fn send_chat(req: &pb::SendChatRequest) -> ServiceResult<()> {
    meeting_id("meeting_id", &req.meeting_id)?;
    fields::user_id("user_id", &req.user_id)?;
    chat_text("text", &req.text)
}

/// Checks a stream's hello.
pub fn hello(hello: &pb::Hello) -> ServiceResult<()> {
    meeting_id("hello.meeting_id", &hello.meeting_id)?;
    fields::user_id("hello.user_id", &hello.user_id)
}

/// Checks a stream message's `ref`.
pub fn stream_ref(r: &str) -> ServiceResult<()> {
    if r.chars().count() > MAX_REF {
        return Err(ServiceError::invalid("ref", "at most 64 characters"));
    }
    Ok(())
}

/// Checks ListParticipants; returns the page size.
pub fn list(req: &pb::ListParticipantsRequest) -> ServiceResult<usize> {
    meeting_id("meeting_id", &req.meeting_id)?;
    if pb::ParticipantStatus::try_from(req.status).is_err() {
        return Err(ServiceError::invalid("status", format!("{} is not a ParticipantStatus", req.status)));
    }
    fields::page_size("page_size", req.page_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: ServiceResult<impl std::fmt::Debug>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_names_each_bad_field() {
        let now = 1_700_000_000_000;
        let good = pb::CreateMeetingRequest {
            request_id: "r1".into(),
            host: "h".into(),
            topic: "Standup".into(),
            start: Some(fields::timestamp(now)),
            duration: Some(prost_types::Duration { seconds: 1800, nanos: 0 }),
            passcode: "abc123".into(),
            waiting_room: true,
            settings: None,
        };
        assert_eq!(create(&good, now).unwrap(), (now, 1_800_000, 300));
        let bad = |f: fn(&mut pb::CreateMeetingRequest)| {
            let mut r = good.clone();
            f(&mut r);
            field(create(&r, now))
        };
        assert_eq!(bad(|r| r.request_id.clear()), "request_id");
        assert_eq!(bad(|r| r.host.clear()), "host");
        assert_eq!(bad(|r| r.topic = " ".into()), "topic");
        assert_eq!(bad(|r| r.topic = "a\nb".into()), "topic");
        assert_eq!(bad(|r| r.start = None), "start");
        assert_eq!(bad(|r| r.start = Some(fields::timestamp(0))), "start");
        assert_eq!(bad(|r| r.duration = Some(prost_types::Duration { seconds: 59, nanos: 0 })), "duration");
        assert_eq!(bad(|r| r.passcode = "with space".into()), "passcode");
        assert_eq!(bad(|r| r.passcode = "12345678901".into()), "passcode");
        assert_eq!(
            bad(|r| r.settings = Some(pb::MeetingSettings { max_participants: 1001, ..Default::default() })),
            "settings.max_participants"
        );
    }

    #[test]
    fn ids_and_actions() {
        assert_eq!(field(meeting_id("meeting_id", "mtg_short")), "meeting_id");
        assert!(meeting_id("m", &format!("mtg_{}", "a".repeat(20))).is_ok());
        let req = pb::ParticipantActionRequest {
            meeting_id: format!("mtg_{}", "a".repeat(20)),
            user_id: "u".into(),
            acting_user_id: String::new(),
        };
        assert_eq!(participant_action(&req).unwrap(), "u");
        let by_host = pb::ParticipantActionRequest { acting_user_id: "h".into(), ..req.clone() };
        assert_eq!(participant_action(&by_host).unwrap(), "h");
        let bad = pb::ParticipantActionRequest { acting_user_id: "\u{1}".into(), ..req };
        assert_eq!(field(participant_action(&bad)), "acting_user_id");
    }
}
