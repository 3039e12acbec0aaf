//! Holds release themselves when their time is up, timed by a manual clock: the sweeper
//! expires a due hold and the stock comes back; a commit after the hold ran out is refused
//! (also when no sweeper saw it yet: the commit expires it); a hold outlives a restart and
//! still expires.

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::clock::ManualClock;
use meshwork_proto::pb::inventory::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::{self, Client, eventually, line, receive, reserve, stock};

const WITHIN: Duration = Duration::from_secs(10);

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn state_of(client: &mut Client, id: &str) -> i32 {
    client
        .get_reservation(pb::GetReservationRequest { reservation_id: id.into() })
        .await
        .expect("get reservation")
        .into_inner()
        .reservation
        .map(|r| r.state)
        .unwrap_or_default()
}

async fn holds_expire_by_themselves_and_after_a_restart(backend: Backend) {
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let root = support::root("expiry");
    let (server, mut client) = support::replica(&backend.store, &root, clock.clone()).await;
    let sku = support::sku("EXP");
    receive(&mut client, &sku, "w1", 5).await;

    let held = reserve(&mut client, vec![line(&sku, 2)], Some(Duration::from_secs(2))).await.expect("reserve");
    assert_eq!(stock(&mut client, &sku).await.available, 3);
    // Not due yet: several sweeps pass and the hold stays.
    clock.advance(1000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state_of(&mut client, &held.reservation_id).await, pb::ReservationState::Held as i32);

    clock.advance(1500);
    let expired = eventually(WITHIN, || {
        let (mut c, id) = (client.clone(), held.reservation_id.clone());
        async move { state_of(&mut c, &id).await == pb::ReservationState::Expired as i32 }
    })
    .await;
    assert!(expired, "the hold expired by itself");
    let level = stock(&mut client, &sku).await;
    assert_eq!((level.on_hand, level.reserved, level.available), (5, 0, 5));
    let commit =
        client.commit_reservation(pb::CommitReservationRequest { reservation_id: held.reservation_id.clone() });
    assert_eq!(commit.await.unwrap_err().code(), Code::FailedPrecondition);
    let release = pb::ReleaseReservationRequest { reservation_id: held.reservation_id.clone(), reason: String::new() };
    let again = client.release_reservation(release).await.expect("releasing an expired hold answers it");
    assert_eq!(again.into_inner().reservation.map(|r| r.state), Some(pb::ReservationState::Expired as i32));

    // A commit right after the time ran out, racing the sweeper, is refused either way.
    let late = reserve(&mut client, vec![line(&sku, 1)], Some(Duration::from_secs(1))).await.expect("reserve");
    clock.advance(1001);
    let commit =
        client.commit_reservation(pb::CommitReservationRequest { reservation_id: late.reservation_id.clone() });
    assert_eq!(commit.await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(state_of(&mut client, &late.reservation_id).await, pb::ReservationState::Expired as i32);
    assert_eq!(stock(&mut client, &sku).await.available, 5);

    // A hold taken before a restart expires on the new instance.
    let before = reserve(&mut client, vec![line(&sku, 4)], Some(Duration::from_secs(5))).await.expect("reserve");
    server.stop().await;
    clock.advance(10_000);
    let (_server, mut client) = support::replica(&backend.store, &root, clock.clone()).await;
    let expired = eventually(WITHIN, || {
        let (mut c, id) = (client.clone(), before.reservation_id.clone());
        async move { state_of(&mut c, &id).await == pb::ReservationState::Expired as i32 }
    })
    .await;
    assert!(expired, "the hold expired after the restart");
    let level = stock(&mut client, &sku).await;
    assert_eq!((level.on_hand, level.reserved, level.available), (5, 0, 5));
}

/// A commit that finds its hold past its time, before any sweeper did, expires it itself and
/// is refused; the stock comes back in the same transaction.
async fn a_commit_never_takes_a_hold_past_its_time(backend: Backend) {
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let root = support::root("late");
    // A sweeper that never runs within the test.
    let (_server, mut client) =
        support::replica_sweeping(&backend.store, &root, clock.clone(), Duration::from_secs(3600)).await;
    let sku = support::sku("LATE");
    receive(&mut client, &sku, "w1", 3).await;
    let held = reserve(&mut client, vec![line(&sku, 3)], Some(Duration::from_secs(1))).await.expect("reserve");
    clock.advance(999);
    assert_eq!(state_of(&mut client, &held.reservation_id).await, pb::ReservationState::Held as i32);
    clock.advance(1);
    let commit =
        client.commit_reservation(pb::CommitReservationRequest { reservation_id: held.reservation_id.clone() });
    let refused = commit.await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("EXPIRED"), "{}", refused.message());
    assert_eq!(state_of(&mut client, &held.reservation_id).await, pb::ReservationState::Expired as i32);
    let level = stock(&mut client, &sku).await;
    assert_eq!((level.on_hand, level.reserved, level.available), (3, 0, 3));
}

on_every_backend!(holds_expire_by_themselves_and_after_a_restart, a_commit_never_takes_a_hold_past_its_time);
