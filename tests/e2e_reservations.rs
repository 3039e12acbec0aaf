//! End to end: the reservation systems (parking, library, meetings) in the real `meshwork up`,
//! through its gateway, with outside clients.
//!
//! - 100 participants hold bidirectional `StreamMeeting` streams through the gateway while
//!   chats and hand raises land: every stream sees one and the same gapless event order ending
//!   with ENDED, and one that drops and resumes from its last sequence misses nothing.
//! - 200 concurrent `Reserve` calls for overlapping windows of one parking spot: exactly one
//!   HELD per overlapping set, on the embedded store and on the 3-member etcd cluster.
//! - The library's circulation with grpcurl: the last copy goes to one member, a waiting hold
//!   blocks renewal, the return puts the copy on the hold shelf for the first in the queue.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use meshwork_proto::pb::meetings::v1 as meetings;
use meshwork_storage::testing::EtcdCluster;
use support::Mesh;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

type MeetingsClient = meetings::meetings_client::MeetingsClient<Channel>;

/// One event as a stream shows it: (sequence, type, user, text).
type Seen = (u64, i32, String, String);

/// Opens `user`'s stream on `meeting` from `from`; returns the request sender (kept to hold
/// the stream open) and the response stream.
async fn open_stream(
    client: &mut MeetingsClient,
    meeting: &str,
    user: &str,
    from: u64,
) -> (mpsc::Sender<meetings::StreamMeetingRequest>, tonic::Streaming<meetings::StreamMeetingResponse>) {
    let (tx, rx) = mpsc::channel(16);
    let hello = meetings::Hello { meeting_id: meeting.into(), user_id: user.into(), from_sequence: from };
    let body = meetings::stream_meeting_request::Body::Hello(hello);
    tx.send(meetings::StreamMeetingRequest { r#ref: "hello".into(), body: Some(body) }).await.unwrap();
    let responses = client.stream_meeting(ReceiverStream::new(rx)).await.unwrap().into_inner();
    (tx, responses)
}

/// Reads events from `responses` until ENDED (true) or until `stop_after` events (false).
async fn read_events(
    responses: &mut tonic::Streaming<meetings::StreamMeetingResponse>,
    seen: &mut Vec<Seen>,
    stop_after: Option<usize>,
) -> bool {
    while let Some(message) = responses.message().await.unwrap() {
        if let Some(meetings::stream_meeting_response::Body::Event(e)) = message.body {
            seen.push((e.sequence, e.r#type, e.user_id, e.text));
            if e.r#type == meetings::EventType::Ended as i32 {
                return true;
            }
            if stop_after.is_some_and(|n| seen.len() >= n) {
                return false;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_library_and_parking_through_the_gateway() {
    let data = tempfile::tempdir().unwrap();
    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces"]);
    let channel = Channel::from_shared(format!("http://{}", mesh.addr)).unwrap().connect().await.unwrap();
    let mut client = MeetingsClient::new(channel.clone());

    let create = meetings::CreateMeetingRequest {
        request_id: "e2e-meeting".into(),
        host: "host".into(),
        topic: "All hands".into(),
        start: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        duration: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        passcode: "sesame42".into(),
        ..Default::default()
    };
    let meeting = client.create_meeting(create).await.unwrap().into_inner().meeting.unwrap().meeting_id;
    let users: Vec<String> = (0..100).map(|i| format!("user{i}")).collect();
    let join = |user: &str| meetings::JoinRequest {
        meeting_id: meeting.clone(),
        user_id: user.into(),
        passcode: "sesame42".into(),
    };
    client.join(join("host")).await.unwrap();
    for user in &users {
        client.join(join(user)).await.unwrap();
    }

    // Every participant streams from sequence 1; the last one drops after 120 events and
    // resumes from its last sequence + 1.
    let mut readers = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let (mut client, meeting, user) = (client.clone(), meeting.clone(), user.clone());
        let resumes = i == users.len() - 1;
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let (tx, mut responses) = open_stream(&mut client, &meeting, &user, 1).await;
            if resumes {
                assert!(!read_events(&mut responses, &mut seen, Some(120)).await);
                drop((tx, responses));
                let from = seen.last().unwrap().0 + 1;
                let (_tx, mut responses) = open_stream(&mut client, &meeting, &user, from).await;
                assert!(read_events(&mut responses, &mut seen, None).await, "{user}: no ENDED after resuming");
            } else {
                assert!(read_events(&mut responses, &mut seen, None).await, "{user}: stream ended without ENDED");
                drop(tx);
            }
            seen
        }));
    }

    // Chats and hand raises from many participants at once, then the host ends the meeting.
    let start = Instant::now();
    let mut writers = Vec::new();
    for (i, user) in users.iter().enumerate().take(50) {
        let (mut client, meeting, user) = (client.clone(), meeting.clone(), user.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..3 {
                let chat = meetings::SendChatRequest {
                    meeting_id: meeting.clone(),
                    user_id: user.clone(),
                    text: format!("message {n} from {user}"),
                };
                client.send_chat(chat).await.unwrap();
            }
            if i % 5 == 0 {
                let hand = meetings::ParticipantActionRequest {
                    meeting_id: meeting.clone(),
                    user_id: user.clone(),
                    acting_user_id: user.clone(),
                };
                client.raise_hand(hand).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let end = meetings::MeetingControlRequest { meeting_id: meeting.clone(), acting_user_id: "host".into() };
    client.end_meeting(end).await.unwrap();

    let mut orders = Vec::new();
    for reader in readers {
        orders.push(tokio::time::timeout(Duration::from_secs(60), reader).await.expect("a stream hung").unwrap());
    }
    let elapsed = start.elapsed();
    let first = &orders[0];
    let sequences: Vec<u64> = first.iter().map(|e| e.0).collect();
    assert_eq!(sequences, (1..=first.len() as u64).collect::<Vec<_>>(), "gaps or repeats");
    let chats = first.iter().filter(|e| e.1 == meetings::EventType::Chat as i32).count();
    assert_eq!(chats, 150);
    for (i, order) in orders.iter().enumerate() {
        assert_eq!(order, first, "participant {i} saw another order");
    }
    let distinct: BTreeSet<&str> = first.iter().map(|e| e.2.as_str()).collect();
    assert!(distinct.len() > 100, "joins of all 101 participants are in the log");
    let delivered = orders.iter().map(Vec::len).sum::<usize>();
    eprintln!(
        "meeting fan-out: {} events x {} streams = {delivered} deliveries in {elapsed:?} ({:.0}/s)",
        first.len(),
        orders.len(),
        delivered as f64 / elapsed.as_secs_f64()
    );

    library_journey(mesh.addr);
    parking_race(mesh.addr, "race-embedded").await;
    drop(mesh);

    // The same race on the 3-member etcd cluster (shared by the run: a lot of its own).
    let endpoints = tokio::task::spawn_blocking(|| EtcdCluster::shared().store_url().to_string()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces", "--store", &endpoints]);
    parking_race(mesh.addr, &format!("race-etcd-{}", std::process::id())).await;
}

/// Runs grpcurl with `body` on `method` and returns (success, stdout JSON or Null, stderr).
fn call(addr: std::net::SocketAddr, method: &str, body: &str) -> (bool, serde_json::Value, String) {
    let (ok, out, err) = support::grpcurl(addr, &["-d", body], &[method]);
    (ok, serde_json::from_str(&out).unwrap_or(serde_json::Value::Null), err)
}

/// The library's circulation with grpcurl: a loan, a hold that blocks renewal, the return
/// that puts the copy on the hold shelf for the first in the queue, and both accounts.
fn library_journey(addr: std::net::SocketAddr) {
    let ok = |method: &str, body: &str| {
        let (ok, json, err) = call(addr, &format!("meshwork.library.v1.Library/{method}"), body);
        assert!(ok, "{method} failed: {err}");
        json
    };
    ok(
        "AddTitle",
        r#"{"request_id":"t-1","title":{"isbn":"0-306-40615-2","title":"Signals and Systems","authors":["Ada Lovelace"],"subjects":["mathematics"]}}"#,
    );
    ok(
        "AddCopy",
        r#"{"request_id":"c-1","copy":{"barcode":"SIG-0001","isbn":"9780306406157","branch":"main","replacement_cost_minor":2500,"currency":"USD"}}"#,
    );
    for (id, name) in [("card-1", "Grace Hopper"), ("card-2", "Alan Turing")] {
        let body = format!(
            r#"{{"request_id":"m-{id}","member":{{"member_id":"{id}","name":"{name}","type":"MEMBER_TYPE_ADULT"}}}}"#
        );
        ok("RegisterMember", &body);
    }
    ok("Checkout", r#"{"request_id":"out-1","member_id":"card-1","barcode":"SIG-0001"}"#);
    // The last copy is out: a second checkout is refused with the reason.
    let (took, _, err) = call(
        addr,
        "meshwork.library.v1.Library/Checkout",
        r#"{"request_id":"out-2","member_id":"card-2","barcode":"SIG-0001"}"#,
    );
    assert!(!took && err.contains("FailedPrecondition"), "{err}");
    ok("PlaceHold", r#"{"request_id":"hold-1","member_id":"card-2","isbn":"978-0-306-40615-7"}"#);
    let (renewed, _, err) = call(
        addr,
        "meshwork.library.v1.Library/Renew",
        r#"{"request_id":"renew-1","member_id":"card-1","barcode":"SIG-0001"}"#,
    );
    assert!(!renewed && err.contains("hold"), "renewal while a hold waits: {err}");
    ok("Return", r#"{"request_id":"ret-1","barcode":"SIG-0001"}"#);
    let account = ok("MemberAccount", r#"{"member_id":"card-2"}"#);
    assert_eq!(account["holds"][0]["state"], "HOLD_STATE_READY_FOR_PICKUP", "{account}");
    assert_eq!(account["holds"][0]["barcode"], "SIG-0001", "{account}");
    let found = ok("SearchCatalog", r#"{"query":"signals lovelace"}"#);
    assert!(found.to_string().contains("9780306406157"), "{found}");
}

/// 200 concurrent Reserve calls through the gateway for one spot, in 20 sets of 10
/// overlapping windows: exactly one HELD per set, the winners disjoint.
async fn parking_race(gateway: std::net::SocketAddr, lot_id: &str) {
    use meshwork_proto::pb::parking::v1 as parking;
    let channel = Channel::from_shared(format!("http://{gateway}")).unwrap().connect().await.unwrap();
    let mut client = parking::parking_client::ParkingClient::new(channel);
    let lot = parking::Lot {
        lot_id: lot_id.into(),
        name: "Race lot".into(),
        currency: "USD".into(),
        prices: vec![parking::Price { r#type: parking::SpotType::Regular as i32, hourly_minor: 400 }],
        levels: vec![parking::Level {
            level_id: "p1".into(),
            name: "P1".into(),
            blocks: vec![parking::SpotBlock { r#type: parking::SpotType::Regular as i32, count: 2 }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let request = parking::CreateLotRequest { request_id: format!("lot-{lot_id}"), lot: Some(lot) };
    let lot = client.create_lot(request).await.unwrap().into_inner().lot.unwrap();
    let spot = lot.levels[0].spots[0].spot_id.clone();
    // A day from now, on a quarter hour.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let base_ms = (now_ms / 900_000 + 96) * 900_000;
    let report = meshwork_parking::scenario::overlapping_reserves(&[client], lot_id, &spot, base_ms, 200, lot_id).await;
    report.verify().unwrap_or_else(|e| panic!("double booking through the gateway on {lot_id}: {e}"));
    assert_eq!(report.winners.len(), 20);
    assert_eq!(report.refused.values().sum::<usize>(), 180);
}
