//! The bad-input catalogue on every backend: every RPC with empty, oversized, malformed and
//! unknown values, and the refusals of state (unknown meeting, wrong passcode, no host
//! rights, another identity): each answers the right code naming the field, and no key of the
//! service changes.

use std::sync::Arc;

use meshwork_common::SystemClock;
use meshwork_common::fields::timestamp;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::meetings::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use pb::stream_meeting_request::Body;
use tonic::{Code, Request, Status};

use crate::support::{self, connect, create_request, host_action, join, me, user};

/// Asserts `result` failed with `code`, its message starting with `field:` when one is named.
fn expect<T: std::fmt::Debug>(case: &str, result: Result<T, Status>, code: Code, field: &str) {
    match result {
        Ok(v) => panic!("{case}: accepted: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{case}: {}", s.message());
            assert!(field.is_empty() || s.message().starts_with(&format!("{field}:")), "{case}: {}", s.message());
        }
    }
}

fn as_user<T>(message: T, subject: &str) -> Request<T> {
    let mut request = Request::new(message);
    let identity = Identity::new(subject, vec![], Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().expect("ascii identity"));
    request
}

async fn every_rpc_refuses_bad_input_and_changes_nothing(backend: Backend) {
    let root = support::root("bad");
    let (_server, mut c) = support::replica(&backend.store, &root, Arc::new(SystemClock)).await;
    let (host, ann, waiter) = (user("host"), user("ann"), user("waiter"));
    let now = meshwork_common::Clock::now_ms(&SystemClock);
    let m = c.create_meeting(create_request(&host, "code1", true, now)).await.unwrap().into_inner().meeting.unwrap();
    let id = m.meeting_id.clone();
    join(&mut c, &id, &host, "code1").await.unwrap();
    join(&mut c, &id, &ann, "code1").await.unwrap();
    c.admit(host_action(&id, &host, &ann)).await.unwrap();
    join(&mut c, &id, &waiter, "code1").await.unwrap();
    c.start_screen_share(me(&id, &host)).await.unwrap();
    let mut conn = connect(&mut c, &id, &ann, 0).await.unwrap();
    // Let the stream's presence settle before the snapshot.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let before = support::snapshot(&backend.store, &root).await;
    let unknown = format!("mtg_{}", "0".repeat(20));
    let long = "u".repeat(129);

    // CreateMeeting.
    let good = create_request(&host, "", false, now);
    let create_cases: Vec<(&str, pb::CreateMeetingRequest, Code, &str)> = vec![
        (
            "no request_id",
            pb::CreateMeetingRequest { request_id: String::new(), ..good.clone() },
            Code::InvalidArgument,
            "request_id",
        ),
        (
            "bad request_id",
            pb::CreateMeetingRequest { request_id: "a b".into(), ..good.clone() },
            Code::InvalidArgument,
            "request_id",
        ),
        ("no host", pb::CreateMeetingRequest { host: String::new(), ..good.clone() }, Code::InvalidArgument, "host"),
        ("long host", pb::CreateMeetingRequest { host: long.clone(), ..good.clone() }, Code::InvalidArgument, "host"),
        (
            "blank topic",
            pb::CreateMeetingRequest { topic: "  ".into(), ..good.clone() },
            Code::InvalidArgument,
            "topic",
        ),
        (
            "long topic",
            pb::CreateMeetingRequest { topic: "t".repeat(201), ..good.clone() },
            Code::InvalidArgument,
            "topic",
        ),
        ("no start", pb::CreateMeetingRequest { start: None, ..good.clone() }, Code::InvalidArgument, "start"),
        (
            "old start",
            pb::CreateMeetingRequest { start: Some(timestamp(now - 3 * 86_400_000)), ..good.clone() },
            Code::InvalidArgument,
            "start",
        ),
        (
            "bad nanos",
            pb::CreateMeetingRequest {
                start: Some(prost_types::Timestamp { seconds: now / 1000, nanos: -1 }),
                ..good.clone()
            },
            Code::InvalidArgument,
            "start",
        ),
        ("no duration", pb::CreateMeetingRequest { duration: None, ..good.clone() }, Code::InvalidArgument, "duration"),
        (
            "negative duration",
            pb::CreateMeetingRequest {
                duration: Some(prost_types::Duration { seconds: -60, nanos: 0 }),
                ..good.clone()
            },
            Code::InvalidArgument,
            "duration",
        ),
        (
            "long duration",
            pb::CreateMeetingRequest {
                duration: Some(prost_types::Duration { seconds: 86_401, nanos: 0 }),
                ..good.clone()
            },
            Code::InvalidArgument,
            "duration",
        ),
        (
            "long passcode",
            pb::CreateMeetingRequest { passcode: "p".repeat(11), ..good.clone() },
            Code::InvalidArgument,
            "passcode",
        ),
        (
            "odd passcode",
            pb::CreateMeetingRequest { passcode: "p w".into(), ..good.clone() },
            Code::InvalidArgument,
            "passcode",
        ),
        (
            "too many",
            pb::CreateMeetingRequest {
                settings: Some(pb::MeetingSettings { max_participants: 1001, ..Default::default() }),
                ..good.clone()
            },
            Code::InvalidArgument,
            "settings.max_participants",
        ),
        (
            "negative max",
            pb::CreateMeetingRequest {
                settings: Some(pb::MeetingSettings { max_participants: -1, ..Default::default() }),
                ..good.clone()
            },
            Code::InvalidArgument,
            "settings.max_participants",
        ),
    ];
    for (case, req, code, field) in create_cases {
        expect(case, c.create_meeting(req).await, code, field);
    }
    expect("another host", c.create_meeting(as_user(good.clone(), &ann)).await, Code::PermissionDenied, "");

    // GetMeeting, GetMeetingReport.
    for (case, mid, code, field) in [
        ("empty", String::new(), Code::InvalidArgument, "meeting_id"),
        ("malformed", "mtg_x".to_string(), Code::InvalidArgument, "meeting_id"),
        ("unknown", unknown.clone(), Code::NotFound, ""),
    ] {
        expect(case, c.get_meeting(pb::GetMeetingRequest { meeting_id: mid.clone() }).await, code, field);
        expect(case, c.get_meeting_report(pb::GetMeetingReportRequest { meeting_id: mid }).await, code, field);
    }

    // Join.
    let j = |mid: &str, u: &str, code: &str| pb::JoinRequest {
        meeting_id: mid.into(),
        user_id: u.into(),
        passcode: code.into(),
    };
    expect("join no meeting", c.join(j("", &ann, "code1")).await, Code::InvalidArgument, "meeting_id");
    expect("join no user", c.join(j(&id, "", "code1")).await, Code::InvalidArgument, "user_id");
    expect("join control char", c.join(j(&id, "a\u{0}", "code1")).await, Code::InvalidArgument, "user_id");
    expect("join long passcode", c.join(j(&id, &ann, &"p".repeat(11))).await, Code::InvalidArgument, "passcode");
    expect("join unknown", c.join(j(&unknown, &ann, "")).await, Code::NotFound, "");
    expect("join wrong passcode", c.join(j(&id, &user("new"), "code2")).await, Code::PermissionDenied, "");
    expect("join as another", c.join(as_user(j(&id, &user("new"), "code1"), &ann)).await, Code::PermissionDenied, "");

    // The participant actions and Leave.
    let pa = |mid: &str, u: &str, actor: &str| pb::ParticipantActionRequest {
        meeting_id: mid.into(),
        user_id: u.into(),
        acting_user_id: actor.into(),
    };
    let action_cases: Vec<(&str, pb::ParticipantActionRequest, Code, &str)> = vec![
        ("no meeting", pa("", &ann, ""), Code::InvalidArgument, "meeting_id"),
        ("no user", pa(&id, "", ""), Code::InvalidArgument, "user_id"),
        ("long user", pa(&id, &long, ""), Code::InvalidArgument, "user_id"),
        ("long actor", pa(&id, &ann, &long), Code::InvalidArgument, "acting_user_id"),
        ("unknown meeting", pa(&unknown, &ann, ""), Code::NotFound, ""),
        ("unknown user", pa(&id, &user("nobody"), ""), Code::NotFound, ""),
        ("waiting user", pa(&id, &waiter, ""), Code::FailedPrecondition, ""),
    ];
    for (case, req, code, field) in action_cases {
        expect(&format!("mute {case}"), c.mute(req.clone()).await, code, field);
        expect(&format!("unmute {case}"), c.unmute(req.clone()).await, code, field);
        expect(&format!("raise {case}"), c.raise_hand(req.clone()).await, code, field);
        expect(&format!("lower {case}"), c.lower_hand(req.clone()).await, code, field);
        expect(&format!("share {case}"), c.start_screen_share(req.clone()).await, code, field);
        expect(&format!("stop share {case}"), c.stop_screen_share(req.clone()).await, code, field);
        if code == Code::InvalidArgument || code == Code::NotFound && case == "unknown meeting" {
            expect(&format!("leave {case}"), c.leave(req).await, code, field);
        }
    }
    expect("share while the host shares", c.start_screen_share(pa(&id, &ann, "")).await, Code::FailedPrecondition, "");
    expect("raise for another", c.raise_hand(pa(&id, &ann, &host)).await, Code::PermissionDenied, "");
    expect("mute by an attendee", c.mute(pa(&id, &host, &ann)).await, Code::PermissionDenied, "");
    expect("leave for another", c.leave(pa(&id, &ann, &host)).await, Code::PermissionDenied, "");
    expect("raise as another", c.raise_hand(as_user(pa(&id, &ann, ""), &host)).await, Code::PermissionDenied, "");

    // Host actions on one participant.
    let host_cases: Vec<(&str, pb::HostActionRequest, Code, &str)> = vec![
        ("no meeting", host_action("", &host, &waiter), Code::InvalidArgument, "meeting_id"),
        ("no actor", host_action(&id, "", &waiter), Code::InvalidArgument, "acting_user_id"),
        ("no user", host_action(&id, &host, ""), Code::InvalidArgument, "user_id"),
        ("unknown meeting", host_action(&unknown, &host, &waiter), Code::NotFound, ""),
        ("not a host", host_action(&id, &ann, &waiter), Code::PermissionDenied, ""),
        ("unknown user", host_action(&id, &host, &user("nobody")), Code::NotFound, ""),
    ];
    for (case, req, code, field) in host_cases {
        expect(&format!("admit {case}"), c.admit(req.clone()).await, code, field);
        expect(&format!("deny {case}"), c.deny(req.clone()).await, code, field);
        expect(&format!("remove {case}"), c.remove(req).await, code, field);
    }
    expect("admit one inside", c.admit(host_action(&id, &host, &ann)).await, Code::FailedPrecondition, "");
    expect("remove the host", c.remove(host_action(&id, &host, &host)).await, Code::FailedPrecondition, "");
    expect(
        "admit as another",
        c.admit(as_user(host_action(&id, &host, &waiter), &ann)).await,
        Code::PermissionDenied,
        "",
    );

    // Meeting-wide controls.
    let mc =
        |mid: &str, actor: &str| pb::MeetingControlRequest { meeting_id: mid.into(), acting_user_id: actor.into() };
    for (case, mid, actor, code, field) in [
        ("no meeting", String::new(), host.clone(), Code::InvalidArgument, "meeting_id"),
        ("no actor", id.clone(), String::new(), Code::InvalidArgument, "acting_user_id"),
        ("unknown", unknown.clone(), host.clone(), Code::NotFound, ""),
        ("not a host", id.clone(), ann.clone(), Code::PermissionDenied, ""),
    ] {
        expect(&format!("mute all {case}"), c.mute_all(mc(&mid, &actor)).await, code, field);
        expect(&format!("end {case}"), c.end_meeting(mc(&mid, &actor)).await, code, field);
        let allow = pb::AllowUnmuteRequest { meeting_id: mid.clone(), acting_user_id: actor.clone(), allowed: false };
        expect(&format!("allow unmute {case}"), c.allow_unmute(allow).await, code, field);
        let lock = pb::LockMeetingRequest { meeting_id: mid.clone(), acting_user_id: actor.clone(), locked: true };
        expect(&format!("lock {case}"), c.lock_meeting(lock).await, code, field);
        let co = pb::MakeCoHostRequest {
            meeting_id: mid.clone(),
            acting_user_id: actor.clone(),
            user_id: ann.clone(),
            revoke: false,
        };
        expect(&format!("co-host {case}"), c.make_co_host(co).await, code, field);
    }
    let co = |u: &str| pb::MakeCoHostRequest {
        meeting_id: id.clone(),
        acting_user_id: host.clone(),
        user_id: u.into(),
        revoke: false,
    };
    expect("co-host no user", c.make_co_host(co("")).await, Code::InvalidArgument, "user_id");
    expect("co-host a waiter", c.make_co_host(co(&waiter)).await, Code::FailedPrecondition, "");
    expect("co-host the host", c.make_co_host(co(&host)).await, Code::FailedPrecondition, "");
    expect("end as another", c.end_meeting(as_user(mc(&id, &host), &ann)).await, Code::PermissionDenied, "");

    // SendChat.
    let chat = |mid: &str, u: &str, text: &str| pb::SendChatRequest {
        meeting_id: mid.into(),
        user_id: u.into(),
        text: text.into(),
    };
    expect("chat no meeting", c.send_chat(chat("", &ann, "hi")).await, Code::InvalidArgument, "meeting_id");
    expect("chat no user", c.send_chat(chat(&id, "", "hi")).await, Code::InvalidArgument, "user_id");
    expect("chat blank", c.send_chat(chat(&id, &ann, " ")).await, Code::InvalidArgument, "text");
    expect("chat long", c.send_chat(chat(&id, &ann, &"x".repeat(1001))).await, Code::InvalidArgument, "text");
    expect("chat waiting", c.send_chat(chat(&id, &waiter, "hi")).await, Code::FailedPrecondition, "");
    expect("chat unknown", c.send_chat(chat(&unknown, &ann, "hi")).await, Code::NotFound, "");

    // ListParticipants.
    let list = |mid: &str, status: i32, size: i32, token: &str| pb::ListParticipantsRequest {
        meeting_id: mid.into(),
        status,
        page_size: size,
        page_token: token.into(),
    };
    expect("list no meeting", c.list_participants(list("", 0, 0, "")).await, Code::InvalidArgument, "meeting_id");
    expect("list bad status", c.list_participants(list(&id, 99, 0, "")).await, Code::InvalidArgument, "status");
    expect("list negative size", c.list_participants(list(&id, 0, -1, "")).await, Code::InvalidArgument, "page_size");
    expect("list huge size", c.list_participants(list(&id, 0, 1001, "")).await, Code::InvalidArgument, "page_size");
    expect(
        "list bad token",
        c.list_participants(list(&id, 0, 1, "garbage")).await,
        Code::InvalidArgument,
        "page_token",
    );
    let page = c.list_participants(list(&id, 0, 1, "")).await.unwrap().into_inner();
    assert!(!page.next_page_token.is_empty());
    let other_filter = list(&id, pb::ParticipantStatus::Left as i32, 1, &page.next_page_token);
    expect("list token of another query", c.list_participants(other_filter).await, Code::InvalidArgument, "page_token");
    expect("list unknown", c.list_participants(list(&unknown, 0, 0, "")).await, Code::NotFound, "");

    // StreamMeeting: the hello, then bad messages on an open stream (answered, not fatal).
    let hello =
        |mid: &str, u: &str, from: u64| pb::Hello { meeting_id: mid.into(), user_id: u.into(), from_sequence: from };
    let open = |first: Option<Body>| {
        let mut c = c.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(pb::StreamMeetingRequest { r#ref: String::new(), body: first }).await.unwrap();
            let result = c.stream_meeting(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
            drop(tx);
            result.map(|_| ())
        }
    };
    expect("stream no hello", open(None).await, Code::InvalidArgument, "hello");
    expect("stream chat first", open(Some(Body::Chat("hi".into()))).await, Code::InvalidArgument, "hello");
    expect(
        "stream no meeting",
        open(Some(Body::Hello(hello("", &ann, 0)))).await,
        Code::InvalidArgument,
        "hello.meeting_id",
    );
    expect("stream no user", open(Some(Body::Hello(hello(&id, "", 0)))).await, Code::InvalidArgument, "hello.user_id");
    expect(
        "stream future",
        open(Some(Body::Hello(hello(&id, &ann, 1_000_000)))).await,
        Code::InvalidArgument,
        "hello.from_sequence",
    );
    expect("stream unknown", open(Some(Body::Hello(hello(&unknown, &ann, 0)))).await, Code::NotFound, "");
    expect(
        "stream not joined",
        open(Some(Body::Hello(hello(&id, &user("nobody"), 0)))).await,
        Code::FailedPrecondition,
        "",
    );
    let mut as_other = c.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::StreamMeetingRequest { r#ref: String::new(), body: Some(Body::Hello(hello(&id, &ann, 0))) })
        .await
        .unwrap();
    let denied = as_other.stream_meeting(as_user(tokio_stream::wrappers::ReceiverStream::new(rx), &host)).await;
    expect("stream as another", denied.map(|_| ()), Code::PermissionDenied, "");
    for (reference, body, code, field) in [
        ("r1", Body::Hello(hello(&id, &ann, 0)), Code::InvalidArgument, "hello"),
        ("r2", Body::Chat(String::new()), Code::InvalidArgument, "chat"),
        ("r3", Body::Chat("x".repeat(1001)), Code::InvalidArgument, "chat"),
        (
            "r4",
            Body::Action(pb::ClientAction { r#type: 0, target_user_id: String::new() }),
            Code::InvalidArgument,
            "action.type",
        ),
        (
            "r5",
            Body::Action(pb::ClientAction { r#type: 99, target_user_id: String::new() }),
            Code::InvalidArgument,
            "action.type",
        ),
        (
            "r6",
            Body::Action(pb::ClientAction { r#type: pb::ActionType::Mute as i32, target_user_id: long.clone() }),
            Code::InvalidArgument,
            "action.target_user_id",
        ),
        (
            "r7",
            Body::Action(pb::ClientAction { r#type: pb::ActionType::Leave as i32, target_user_id: host.clone() }),
            Code::InvalidArgument,
            "action.target_user_id",
        ),
        (
            "r8",
            Body::Action(pb::ClientAction { r#type: pb::ActionType::RaiseHand as i32, target_user_id: host.clone() }),
            Code::PermissionDenied,
            "",
        ),
        (
            "r9",
            Body::Action(pb::ClientAction {
                r#type: pb::ActionType::StartScreenShare as i32,
                target_user_id: String::new(),
            }),
            Code::FailedPrecondition,
            "",
        ),
    ] {
        let r = conn.request(reference, body).await;
        assert_eq!(r.code, code as i32, "{reference}: {}", r.message);
        assert!(field.is_empty() || r.message.starts_with(&format!("{field}:")), "{reference}: {}", r.message);
        assert_eq!(r.sequence, 0);
    }
    let long_ref = "r".repeat(65);
    let r = conn.request(&long_ref, Body::Chat("hi".into())).await;
    assert_eq!(r.code, Code::InvalidArgument as i32, "{}", r.message);
    assert!(r.message.starts_with("ref:"), "{}", r.message);

    assert_eq!(support::snapshot(&backend.store, &root).await, before, "a rejected call changed the store");
    // The stream is still open after all that, and works.
    let r = conn.action("ok", pb::ActionType::RaiseHand, "").await;
    assert_eq!(r.code, 0, "{}", r.message);
}

on_every_backend!(every_rpc_refuses_bad_input_and_changes_nothing);
