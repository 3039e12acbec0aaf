//! The signalling stream on every backend: a hundred participants see one and the same event
//! order while they act concurrently; a participant that reconnects from its sequence misses
//! nothing and gets nothing twice; of concurrent StartScreenShare calls one wins and the
//! others are told who shares; EndMeeting closes every stream with ENDED as its last event.

use std::collections::BTreeSet;
use std::time::Instant;

use meshwork_proto::pb::meetings::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use pb::EventType as E;
use pb::stream_meeting_request::Body;
use tonic::Code;

use crate::support::{self, Conn, connect, create, join, me, short, user};

const PARTICIPANTS: usize = 100;

async fn a_hundred_participants_see_one_order(backend: Backend) {
    let started = Instant::now();
    let (_server, mut c) = support::start(&backend.store, "hundred").await;
    let host = user("host");
    let meeting = create(&mut c, &host, "", false).await.meeting_id;
    join(&mut c, &meeting, &host, "").await.expect("host joins");
    let users: Vec<String> = (0..PARTICIPANTS).map(|i| user(&format!("p{i}-"))).collect();
    let joins = users.iter().map(|u| {
        let (mut c, meeting, u) = (c.clone(), meeting.clone(), u.clone());
        tokio::spawn(async move { join(&mut c, &meeting, &u, "").await })
    });
    for joined in futures::future::join_all(joins).await {
        assert_eq!(joined.unwrap().expect("join").participant.unwrap().status, pb::ParticipantStatus::InMeeting as i32);
    }
    let from = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
    let from = from.meeting.unwrap().last_sequence + 1;
    let mut conns = Vec::new();
    for u in &users {
        conns.push(connect(&mut c, &meeting, u, from).await.expect("connect"));
    }
    // Everyone acts at once: a hand by a unary call, a chat on the stream.
    let actions = conns.into_iter().zip(users.clone()).map(|(mut conn, u)| {
        let (mut c, meeting) = (c.clone(), meeting.clone());
        tokio::spawn(async move {
            c.raise_hand(me(&meeting, &u)).await.expect("raise hand");
            let result = conn.request("hi", Body::Chat(format!("hello from {u}"))).await;
            assert_eq!(result.code, 0, "{}", result.message);
            conn
        })
    });
    let conns: Vec<Conn> = futures::future::join_all(actions).await.into_iter().map(|r| r.unwrap()).collect();
    let ended = c
        .end_meeting(pb::MeetingControlRequest { meeting_id: meeting.clone(), acting_user_id: host.clone() })
        .await
        .expect("end")
        .into_inner();
    let last = ended.sequence;
    let delivery = Instant::now();
    let seen = conns.into_iter().map(|mut conn| tokio::spawn(async move { conn.events_to_end().await }));
    let seen: Vec<Vec<pb::MeetingEvent>> =
        futures::future::join_all(seen).await.into_iter().map(|r| r.unwrap()).collect();
    let first: Vec<_> = seen[0].iter().map(short).collect();
    assert_eq!(first.len() as u64, last - from + 1, "every event from {from} to {last}");
    assert!(first.iter().enumerate().all(|(i, e)| e.0 == from + i as u64), "gapless");
    assert_eq!(first.last().unwrap().1, E::Ended as i32, "ENDED is the last");
    for (i, events) in seen.iter().enumerate() {
        assert_eq!(events.iter().map(short).collect::<Vec<_>>(), first, "participant {i} saw another order");
    }
    let hands: BTreeSet<&str> = first.iter().filter(|e| e.1 == E::HandRaised as i32).map(|e| e.2.as_str()).collect();
    let chats: BTreeSet<&str> = first.iter().filter(|e| e.1 == E::Chat as i32).map(|e| e.2.as_str()).collect();
    assert_eq!(hands.len(), PARTICIPANTS);
    assert_eq!(chats.len(), PARTICIPANTS);
    let delivered = PARTICIPANTS * first.len();
    eprintln!(
        "{PARTICIPANTS} participants, {} events each, {delivered} deliveries drained in {:?}; whole case {:?}",
        first.len(),
        delivery.elapsed(),
        started.elapsed()
    );
}

async fn a_reconnect_resumes_without_gaps_or_repeats(backend: Backend) {
    let (_server, mut c) = support::start(&backend.store, "resume").await;
    let host = user("host");
    let (talker, dropper) = (user("talker"), user("dropper"));
    let meeting = create(&mut c, &host, "", false).await.meeting_id;
    for u in [&host, &talker, &dropper] {
        join(&mut c, &meeting, u, "").await.expect("join");
    }
    // The observer never drops: its events are the reference.
    let mut observer = connect(&mut c, &meeting, &host, 1).await.expect("observer");
    let mut conn = connect(&mut c, &meeting, &dropper, 1).await.expect("dropper");
    // The talker chats while the dropper drops and reconnects, again and again.
    let chats = 60;
    let talking = {
        let (mut c, meeting, talker) = (c.clone(), meeting.clone(), talker.clone());
        tokio::spawn(async move {
            for i in 0..chats {
                let chat =
                    pb::SendChatRequest { meeting_id: meeting.clone(), user_id: talker.clone(), text: format!("m{i}") };
                c.send_chat(chat).await.expect("chat");
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut got: Vec<pb::MeetingEvent> = Vec::new();
    for round in 0..6 {
        // Take a few events, then drop the stream mid-flow and resume after the last one seen.
        for _ in 0..(3 + round) {
            got.push(conn.next_event().await.expect("an event"));
        }
        drop(conn);
        let from = got.last().unwrap().sequence + 1;
        conn = connect(&mut c, &meeting, &dropper, from).await.expect("reconnect");
    }
    talking.await.unwrap();
    let last = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
    let last = last.meeting.unwrap().last_sequence;
    got.extend(conn.events_through(last).await);
    let reference = observer.events_through(last).await;
    assert_eq!(got.iter().map(short).collect::<Vec<_>>(), reference.iter().map(short).collect::<Vec<_>>());
    let texts: Vec<&str> = got.iter().filter(|e| e.r#type == E::Chat as i32).map(|e| e.text.as_str()).collect();
    assert_eq!(texts, (0..chats).map(|i| format!("m{i}")).collect::<Vec<_>>(), "every chat once, in order");
    // The participant is still in the meeting: its drops were short.
    let p = support::participant(&mut c, &meeting, &dropper).await.unwrap();
    assert_eq!(p.status, pb::ParticipantStatus::InMeeting as i32);
    assert!(p.connected);
}

async fn one_screen_share_wins(backend: Backend) {
    let (_server, mut c) = support::start(&backend.store, "share").await;
    let host = user("host");
    let meeting = create(&mut c, &host, "", false).await.meeting_id;
    let users: Vec<String> = (0..8).map(|i| user(&format!("s{i}-"))).collect();
    for u in &users {
        join(&mut c, &meeting, u, "").await.expect("join");
    }
    for round in 0..6 {
        // Two at once, then (last round) all eight at once.
        let racers: Vec<String> = if round < 5 { users[round..round + 2].to_vec() } else { users.clone() };
        let calls = racers.iter().map(|u| {
            let (mut c, meeting, u) = (c.clone(), meeting.clone(), u.clone());
            tokio::spawn(async move { (u.clone(), c.start_screen_share(me(&meeting, &u)).await) })
        });
        let results: Vec<_> = futures::future::join_all(calls).await.into_iter().map(|r| r.unwrap()).collect();
        let winners: Vec<&String> = results.iter().filter(|(_, r)| r.is_ok()).map(|(u, _)| u).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = winners[0].clone();
        for (u, r) in &results {
            if let Err(e) = r {
                assert_eq!(e.code(), Code::FailedPrecondition, "{u}: {e:?}");
                assert!(e.message().contains(&winner), "the refusal names the sharer: {}", e.message());
            }
        }
        let m = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
        assert_eq!(m.meeting.unwrap().sharer, winner);
        c.stop_screen_share(me(&meeting, &winner)).await.expect("stop");
    }
    // One SHARE_STARTED per round in the log, each followed by its SHARE_STOPPED.
    let mut observer = connect(&mut c, &meeting, &host, 0).await;
    assert!(observer.is_err(), "the host has not joined: {:?}", observer.as_ref().err());
    join(&mut c, &meeting, &host, "").await.unwrap();
    observer = connect(&mut c, &meeting, &host, 1).await;
    let mut observer = observer.unwrap();
    let head = c.get_meeting(pb::GetMeetingRequest { meeting_id: meeting.clone() }).await.unwrap().into_inner();
    let events = observer.events_through(head.meeting.unwrap().last_sequence).await;
    let shares: Vec<i32> = events
        .iter()
        .map(|e| e.r#type)
        .filter(|t| *t == E::ShareStarted as i32 || *t == E::ShareStopped as i32)
        .collect();
    assert_eq!(shares, [E::ShareStarted as i32, E::ShareStopped as i32].repeat(6));
}

async fn ending_closes_every_stream_with_a_final_event(backend: Backend) {
    let (_server, mut c) = support::start(&backend.store, "end").await;
    let host = user("host");
    let meeting = create(&mut c, &host, "", true).await.meeting_id;
    join(&mut c, &meeting, &host, "").await.unwrap();
    let inside: Vec<String> = (0..5).map(|i| user(&format!("in{i}-"))).collect();
    let waiter = user("waiter");
    for u in &inside {
        join(&mut c, &meeting, u, "").await.unwrap();
        c.admit(support::host_action(&meeting, &host, u)).await.expect("admit");
    }
    join(&mut c, &meeting, &waiter, "").await.unwrap();
    let mut conns: Vec<Conn> = Vec::new();
    for u in inside.iter().chain([&host, &waiter]) {
        conns.push(connect(&mut c, &meeting, u, 0).await.expect("connect"));
    }
    let ended = c
        .end_meeting(pb::MeetingControlRequest { meeting_id: meeting.clone(), acting_user_id: host.clone() })
        .await
        .unwrap()
        .into_inner();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let events = conn.events_to_end().await;
        let last = events.last().unwrap_or_else(|| panic!("stream {i} got nothing"));
        assert_eq!((last.r#type, last.sequence), (E::Ended as i32, ended.sequence), "stream {i}");
    }
    // Nothing comes after ENDED: a stream from beyond it is refused rather than left hanging.
    let beyond = connect(&mut c, &meeting, &waiter, ended.sequence + 1).await.err().map(|e| e.code());
    assert_eq!(beyond, Some(Code::FailedPrecondition));
    // The waiter saw only what concerned it: its WAITING and the end.
    let mut again = connect(&mut c, &meeting, &waiter, 0).await.expect("collect after the end");
    let seen: Vec<i32> = again.events_to_end().await.iter().map(|e| e.r#type).collect();
    assert_eq!(seen, vec![E::Waiting as i32, E::Ended as i32]);
    // Nothing moves after the end; ending again answers the same meeting.
    let err = c.raise_hand(me(&meeting, &inside[0])).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let again = c
        .end_meeting(pb::MeetingControlRequest { meeting_id: meeting.clone(), acting_user_id: host.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.sequence, 0);
    let report = c.get_meeting_report(pb::GetMeetingReportRequest { meeting_id: meeting.clone() }).await.unwrap();
    let report = report.into_inner();
    assert_eq!(report.attendance.len(), 6, "the host and five admitted; the waiter never entered");
    assert!(report.attendance.iter().all(|a| a.sessions.iter().all(|s| s.leave_time.is_some())));
    assert!(
        report.attendance.iter().all(|a| a.status == pb::ParticipantStatus::Left as i32),
        "the end ended every session"
    );
    assert_eq!(report.meeting.unwrap().participant_count, 0);
    let present = c
        .list_participants(pb::ListParticipantsRequest { meeting_id: meeting.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .participants;
    assert!(present.is_empty(), "no one is in an ended meeting: {present:?}");
}

on_every_backend!(
    a_hundred_participants_see_one_order,
    a_reconnect_resumes_without_gaps_or_repeats,
    one_screen_share_wins,
    ending_closes_every_stream_with_a_final_event
);
