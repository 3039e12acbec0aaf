//! Presence on every backend, by a ManualClock: a participant whose stream dropped is marked
//! LEFT once 60 s pass without a new one (a reconnect in time keeps it in), as is one that
//! joined and never opened a stream; those with open streams stay. And a meeting survives a
//! restart: a second replica on the same store serves it as it was and continues its log.

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::{ManualClock, SystemClock};
use meshwork_proto::pb::meetings::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use pb::EventType as E;
use pb::ParticipantStatus as S;

use crate::support::{self, Client, connect, create, create_at, join, me, participant, user};

/// Waits until `user`'s participant satisfies `check`.
async fn until(c: &mut Client, meeting: &str, user: &str, what: &str, check: impl Fn(&pb::Participant) -> bool) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let p = participant(c, meeting, user).await.expect("participant");
        if check(&p) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{user} never became {what}: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lets the sweeper (every 20 ms) run several times.
async fn sweeps() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn a_dropped_stream_is_marked_left_after_sixty_seconds(backend: Backend) {
    let start = 1_800_000_000_000;
    let clock = ManualClock::new(start);
    let (_server, mut c) = support::replica(&backend.store, &support::root("drop"), Arc::new(clock.clone())).await;
    let (host, ann, bob, carol) = (user("host"), user("ann"), user("bob"), user("carol"));
    let meeting = create_at(&mut c, &host, "", false, start).await.meeting_id;
    for u in [&host, &ann, &bob, &carol] {
        join(&mut c, &meeting, u, "").await.unwrap();
    }
    let mut host_conn = connect(&mut c, &meeting, &host, 0).await.unwrap();
    let _bob_conn = connect(&mut c, &meeting, &bob, 0).await.unwrap();
    let ann_conn = connect(&mut c, &meeting, &ann, 0).await.unwrap();
    until(&mut c, &meeting, &ann, "connected", |p| p.connected).await;
    c.raise_hand(me(&meeting, &ann)).await.unwrap();

    // Dropped, back within 60 s: still in.
    drop(ann_conn);
    until(&mut c, &meeting, &ann, "disconnected", |p| !p.connected).await;
    clock.advance(59_000);
    sweeps().await;
    assert_eq!(participant(&mut c, &meeting, &ann).await.unwrap().status, S::InMeeting as i32);
    let ann_conn = connect(&mut c, &meeting, &ann, 0).await.unwrap();
    until(&mut c, &meeting, &ann, "connected", |p| p.connected).await;
    clock.advance(59_000);
    sweeps().await;
    assert_eq!(participant(&mut c, &meeting, &ann).await.unwrap().status, S::InMeeting as i32);
    // carol never opened a stream: 118 s after her join she is gone.
    until(&mut c, &meeting, &carol, "left", |p| p.status == S::Left as i32).await;

    // Dropped for good: LEFT once 60 s pass, not before.
    drop(ann_conn);
    until(&mut c, &meeting, &ann, "disconnected", |p| !p.connected).await;
    clock.advance(60_000);
    sweeps().await;
    assert_eq!(participant(&mut c, &meeting, &ann).await.unwrap().status, S::InMeeting as i32, "60 s is not more");
    clock.advance(1_000);
    until(&mut c, &meeting, &ann, "left", |p| p.status == S::Left as i32).await;
    let ann_now = participant(&mut c, &meeting, &ann).await.unwrap();
    assert!(!ann_now.hand_raised && !ann_now.connected);
    // The others, with streams open all along, stay.
    for u in [&host, &bob] {
        let p = participant(&mut c, &meeting, u).await.unwrap();
        assert_eq!((p.status, p.connected), (S::InMeeting as i32, true), "{u}");
    }
    // Everyone saw why: LEFT, connection lost, by the system.
    let last = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
    let events = host_conn.events_through(last.meeting.unwrap().last_sequence).await;
    let lost: Vec<&str> = events
        .iter()
        .filter(|e| e.r#type == E::Left as i32 && e.text == "connection lost" && e.actor_id == "system")
        .map(|e| e.user_id.as_str())
        .collect();
    assert_eq!(lost, vec![carol.as_str(), ann.as_str()]);
    // A stream cannot be opened for someone who left: join again first.
    assert_eq!(connect(&mut c, &meeting, &ann, 0).await.err().map(|e| e.code()), Some(tonic::Code::FailedPrecondition));
    join(&mut c, &meeting, &ann, "").await.unwrap();
    connect(&mut c, &meeting, &ann, 0).await.expect("back after joining again");
}

async fn a_meeting_survives_a_restart(backend: Backend) {
    let root = support::root("restart");
    let (first, mut c) = support::replica(&backend.store, &root, Arc::new(SystemClock)).await;
    let (host, ann, bob) = (user("host"), user("ann"), user("bob"));
    let meeting = create(&mut c, &host, "pass", true).await.meeting_id;
    join(&mut c, &meeting, &host, "pass").await.unwrap();
    join(&mut c, &meeting, &ann, "pass").await.unwrap();
    c.admit(support::host_action(&meeting, &host, &ann)).await.unwrap();
    join(&mut c, &meeting, &bob, "pass").await.unwrap();
    c.raise_hand(me(&meeting, &ann)).await.unwrap();
    c.start_screen_share(me(&meeting, &ann)).await.unwrap();
    let mut conn = connect(&mut c, &meeting, &ann, 1).await.unwrap();
    let before = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
    let before = before.meeting.unwrap();
    let seen_before = conn.events_through(before.last_sequence).await;
    drop(conn);
    first.stop().await;

    let (_second, mut c) = support::replica(&backend.store, &root, Arc::new(SystemClock)).await;
    let after = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
    let after = after.meeting.unwrap();
    assert_eq!(after, before, "the meeting as it was");
    let a = participant(&mut c, &meeting, &ann).await.unwrap();
    assert!(a.status == S::InMeeting as i32 && a.hand_raised && a.sharing);
    assert_eq!(participant(&mut c, &meeting, &bob).await.unwrap().status, S::Waiting as i32);
    // The passcode still holds, the waiting room still works, the log continues.
    assert_eq!(join(&mut c, &meeting, &user("x"), "nope").await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let admitted = c.admit(support::host_action(&meeting, &host, &bob)).await.unwrap().into_inner();
    assert_eq!(admitted.sequence, before.last_sequence + 1);
    let mut resumed = connect(&mut c, &meeting, &ann, 1).await.unwrap();
    let all = resumed.events_through(admitted.sequence).await;
    assert_eq!(
        all[..seen_before.len()].iter().map(support::short).collect::<Vec<_>>(),
        seen_before.iter().map(support::short).collect::<Vec<_>>()
    );
    assert_eq!(all.last().unwrap().r#type, E::Admitted as i32);
}

on_every_backend!(a_dropped_stream_is_marked_left_after_sixty_seconds, a_meeting_survives_a_restart);
