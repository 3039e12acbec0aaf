//! Host controls and participant rules on every backend: the waiting room (admit, deny, knock
//! again), removal for good, passcodes, MuteAll / AllowUnmute, the lock, co-hosts, who may use
//! host controls, and the attendance report's times (by a ManualClock).

use std::sync::Arc;

use meshwork_common::{ManualClock, SystemClock};
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::meetings::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use pb::ParticipantStatus as S;
use tonic::{Code, Request};

use crate::support::{self, connect, create, host_action, join, me, participant, user};

async fn waiting_room_passcode_and_removal(backend: Backend) {
    let root = support::root("wait");
    let (_server, mut c) = support::replica(&backend.store, &root, Arc::new(SystemClock)).await;
    let (host, ann, bob, eve) = (user("host"), user("ann"), user("bob"), user("eve"));
    let meeting = create(&mut c, &host, "s3cret", true).await;
    assert!(meeting.has_passcode && meeting.waiting_room);
    let meeting = meeting.meeting_id;

    // Wrong or missing passcode: PERMISSION_DENIED, and no trace of the attempt.
    let before = support::snapshot(&backend.store, &root).await;
    for wrong in ["", "s3cre", "S3CRET"] {
        let err = join(&mut c, &meeting, &ann, wrong).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{wrong:?}: {err:?}");
    }
    assert_eq!(support::snapshot(&backend.store, &root).await, before);

    // The host never waits; the others do until admitted or denied.
    let h = join(&mut c, &meeting, &host, "s3cret").await.unwrap().participant.unwrap();
    assert_eq!((h.status, h.role), (S::InMeeting as i32, pb::Role::Host as i32));
    for u in [&ann, &bob, &eve] {
        let p = join(&mut c, &meeting, u, "s3cret").await.unwrap().participant.unwrap();
        assert_eq!(p.status, S::Waiting as i32);
    }
    // A waiting participant cannot act in the meeting, nor admit others.
    assert_eq!(c.raise_hand(me(&meeting, &ann)).await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(c.admit(host_action(&meeting, &ann, &bob)).await.unwrap_err().code(), Code::PermissionDenied);

    let admitted = c.admit(host_action(&meeting, &host, &ann)).await.unwrap().into_inner();
    assert_eq!(admitted.participant.unwrap().status, S::InMeeting as i32);
    assert!(admitted.sequence > 0);
    let denied = c.deny(host_action(&meeting, &host, &bob)).await.unwrap().into_inner();
    assert_eq!(denied.participant.unwrap().status, S::Denied as i32);
    // Admitting someone not waiting is FAILED_PRECONDITION; a denied user may knock again.
    assert_eq!(c.admit(host_action(&meeting, &host, &bob)).await.unwrap_err().code(), Code::FailedPrecondition);
    let again = join(&mut c, &meeting, &bob, "s3cret").await.unwrap().participant.unwrap();
    assert_eq!(again.status, S::Waiting as i32);

    // Removed users never come back, from the meeting or from the waiting room.
    for u in [&ann, &bob] {
        let removed = c.remove(host_action(&meeting, &host, u)).await.unwrap().into_inner();
        assert_eq!(removed.participant.unwrap().status, S::Removed as i32);
        let err = join(&mut c, &meeting, u, "s3cret").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("removed"), "{}", err.message());
        assert_eq!(connect(&mut c, &meeting, u, 0).await.err().map(|e| e.code()), Some(Code::FailedPrecondition));
    }
    // The host cannot be removed.
    let err = c.remove(host_action(&meeting, &host, &host)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Locked: no one new, the host still may come back.
    let locked = c
        .lock_meeting(pb::LockMeetingRequest {
            meeting_id: meeting.clone(),
            acting_user_id: host.clone(),
            locked: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(locked.meeting.unwrap().locked);
    let err = join(&mut c, &meeting, &user("late"), "s3cret").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("locked"));
    c.leave(me(&meeting, &host)).await.unwrap();
    assert_eq!(join(&mut c, &meeting, &host, "s3cret").await.unwrap().participant.unwrap().status, S::InMeeting as i32);
    // The one still waiting can still be admitted.
    assert_eq!(participant(&mut c, &meeting, &eve).await.unwrap().status, S::Waiting as i32);
}

async fn mute_all_and_allow_unmute(backend: Backend) {
    let (_server, mut c) = support::start(&backend.store, "mute").await;
    let (host, co, ann) = (user("host"), user("co"), user("ann"));
    let meeting = create(&mut c, &host, "", false).await.meeting_id;
    for u in [&host, &co, &ann] {
        join(&mut c, &meeting, u, "").await.unwrap();
    }
    // Only the host appoints co-hosts; an attendee has no host controls.
    let err = c
        .make_co_host(pb::MakeCoHostRequest {
            meeting_id: meeting.clone(),
            acting_user_id: ann.clone(),
            user_id: co.clone(),
            revoke: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let control = |actor: &str| pb::MeetingControlRequest { meeting_id: meeting.clone(), acting_user_id: actor.into() };
    assert_eq!(c.mute_all(control(&ann)).await.unwrap_err().code(), Code::PermissionDenied);
    let made = c
        .make_co_host(pb::MakeCoHostRequest {
            meeting_id: meeting.clone(),
            acting_user_id: host.clone(),
            user_id: co.clone(),
            revoke: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.participant.unwrap().role, pb::Role::CoHost as i32);

    // The co-host mutes everyone; attendees cannot unmute themselves, the co-host is not muted.
    let muted = c.mute_all(control(&co)).await.unwrap().into_inner().meeting.unwrap();
    assert!(!muted.allow_unmute);
    assert!(participant(&mut c, &meeting, &ann).await.unwrap().muted);
    assert!(!participant(&mut c, &meeting, &co).await.unwrap().muted);
    assert!(!participant(&mut c, &meeting, &host).await.unwrap().muted);
    let err = c.unmute(me(&meeting, &ann)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("not allowed"), "{}", err.message());
    assert!(participant(&mut c, &meeting, &ann).await.unwrap().muted, "a refused unmute changes nothing");
    // Nor on the stream.
    let mut conn = connect(&mut c, &meeting, &ann, 0).await.unwrap();
    let r = conn.action("u1", pb::ActionType::Unmute, "").await;
    assert_eq!(r.code, Code::FailedPrecondition as i32, "{}", r.message);
    // Muting someone else needs host controls; the host may do it.
    let by_ann =
        pb::ParticipantActionRequest { meeting_id: meeting.clone(), user_id: co.clone(), acting_user_id: ann.clone() };
    assert_eq!(c.mute(by_ann).await.unwrap_err().code(), Code::PermissionDenied);

    c.allow_unmute(pb::AllowUnmuteRequest { meeting_id: meeting.clone(), acting_user_id: host.clone(), allowed: true })
        .await
        .unwrap();
    let r = conn.action("u2", pb::ActionType::Unmute, "").await;
    assert_eq!(r.code, 0, "{}", r.message);
    assert!(r.sequence > 0);
    assert!(!participant(&mut c, &meeting, &ann).await.unwrap().muted);
    // Unmuting again changes nothing (no event).
    assert_eq!(c.unmute(me(&meeting, &ann)).await.unwrap().into_inner().sequence, 0);
    // The host mutes ann; ann may unmute (allowed) but not unmute someone else.
    let by_host = pb::ParticipantActionRequest {
        meeting_id: meeting.clone(),
        user_id: ann.clone(),
        acting_user_id: host.clone(),
    };
    assert!(c.mute(by_host).await.unwrap().into_inner().participant.unwrap().muted);
    let r = conn.action("u3", pb::ActionType::Unmute, &co).await;
    assert_eq!(r.code, Code::PermissionDenied as i32, "{}", r.message);
    // Hands: raise on the stream, the co-host lowers it.
    let r = conn.action("h1", pb::ActionType::RaiseHand, "").await;
    assert_eq!(r.code, 0);
    let lower =
        pb::ParticipantActionRequest { meeting_id: meeting.clone(), user_id: ann.clone(), acting_user_id: co.clone() };
    assert!(!c.lower_hand(lower).await.unwrap().into_inner().participant.unwrap().hand_raised);
    // The stream saw every change in order.
    let last = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
    let events = conn.events_through(last.meeting.unwrap().last_sequence).await;
    let types: Vec<i32> = events.iter().map(|e| e.r#type).collect();
    use pb::EventType as E;
    for t in [E::CoHostGranted, E::MutedAll, E::UnmuteAllowed, E::Unmuted, E::Muted, E::HandRaised, E::HandLowered] {
        assert!(types.contains(&(t as i32)), "{t:?} missing from {types:?}");
    }
}

async fn identity_and_the_report(backend: Backend) {
    let clock = ManualClock::new(1_800_000_000_000);
    let root = support::root("report");
    let (_server, mut c) = support::replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let (host, ann) = (user("host"), user("ann"));
    let meeting = support::create_at(&mut c, &host, "", false, 1_800_000_000_000).await.meeting_id;
    // A verified caller acts as itself only (or as admin).
    let as_ann = |message: pb::JoinRequest| {
        let mut request = Request::new(message);
        let identity = Identity::new(&ann, vec![], Method::Jwt).encode();
        request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().unwrap());
        request
    };
    let for_host = pb::JoinRequest { meeting_id: meeting.clone(), user_id: host.clone(), passcode: String::new() };
    assert_eq!(c.join(as_ann(for_host)).await.unwrap_err().code(), Code::PermissionDenied);
    let for_ann = pb::JoinRequest { meeting_id: meeting.clone(), user_id: ann.clone(), passcode: String::new() };
    c.join(as_ann(for_ann.clone())).await.expect("ann as herself");
    join(&mut c, &meeting, &host, "").await.unwrap();
    // Both keep a stream open (without one, 60 s of clock would mark them left).
    let _host_conn = connect(&mut c, &meeting, &host, 0).await.unwrap();
    let _ann_conn = connect(&mut c, &meeting, &ann, 0).await.unwrap();
    for u in [&host, &ann] {
        while !participant(&mut c, &meeting, u).await.unwrap().connected {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    // ann: 10 min, leaves, back 5 min later for 20 min; the host stays until the end at 40 min.
    clock.advance(10 * 60_000);
    c.leave(me(&meeting, &ann)).await.unwrap();
    clock.advance(5 * 60_000);
    c.join(as_ann(for_ann)).await.unwrap();
    let _ann_again = connect(&mut c, &meeting, &ann, 0).await.unwrap();
    while !participant(&mut c, &meeting, &ann).await.unwrap().connected {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    clock.advance(20 * 60_000);
    c.leave(me(&meeting, &ann)).await.unwrap();
    clock.advance(5 * 60_000);
    c.end_meeting(pb::MeetingControlRequest { meeting_id: meeting.clone(), acting_user_id: host.clone() })
        .await
        .unwrap();
    let report = c.get_meeting_report(pb::GetMeetingReportRequest { meeting_id: meeting.clone() }).await.unwrap();
    let report = report.into_inner();
    assert_eq!(report.peak_participants, 2);
    let of = |u: &str| report.attendance.iter().find(|a| a.user_id == u).unwrap().clone();
    let a = of(&ann);
    assert_eq!(a.sessions.len(), 2);
    assert_eq!(a.total.unwrap().seconds, 30 * 60);
    assert_eq!(a.sessions[1].join_time.unwrap().seconds - a.sessions[0].join_time.unwrap().seconds, 15 * 60);
    let h = of(&host);
    assert_eq!(h.total.unwrap().seconds, 40 * 60);
    assert_eq!(h.sessions[0].leave_time.unwrap().seconds, 1_800_000_000 + 40 * 60);
}

on_every_backend!(waiting_room_passcode_and_removal, mute_all_and_allow_unmute, identity_and_the_report);
