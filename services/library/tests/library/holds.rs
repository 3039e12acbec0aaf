//! The holds queue: five members are served in the order they queued as copies come back, and
//! a missed pickup passes the copy to the next hold, by the sweeper (watched in the stored
//! record, which the API's read-time settling does not touch) and, with no sweeper running in
//! time, by the read-time check of any call that meets the title.

use std::sync::Arc;
use std::time::Duration;

use meshwork_library::model::CopyStatus;
use meshwork_proto::pb::library::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::*;

/// Returns each queued member's hold position on `isbn`, from their accounts.
async fn positions(client: &mut Client, members: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for m in members {
        out.push(account(client, m).await.holds.first().map(|h| h.queue_position).unwrap_or(0));
    }
    out
}

async fn five_holds_are_served_in_order_including_a_missed_pickup(backend: Backend) {
    let clock = clock();
    let root = root("holds");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let isbn = isbn(10);
    add_title(&mut r.client, &isbn, "In Demand", &["Writer"], &[]).await;
    add_copy(&mut r.client, "DEM-1", &isbn, 2500).await;
    let members = ["h1", "h2", "h3", "h4", "h5"];
    register(&mut r.client, "h0", pb::MemberType::Adult).await;
    for m in members {
        register(&mut r.client, m, pb::MemberType::Adult).await;
    }
    checkout(&mut r.client, "h0", "DEM-1").await.expect("h0 borrows the only copy");
    for (i, m) in members.iter().enumerate() {
        clock.advance(1000);
        let hold = place_hold(&mut r.client, m, &isbn).await;
        assert_eq!((hold.state, hold.queue_position), (pb::HoldState::Waiting as i32, i as i32 + 1));
    }
    assert_eq!(positions(&mut r.client, &members).await, vec![1, 2, 3, 4, 5]);
    let dup = pb::PlaceHoldRequest { request_id: rid("dup"), member_id: "h3".into(), isbn: isbn.clone() };
    assert_eq!(r.client.place_hold(dup).await.unwrap_err().code(), Code::AlreadyExists);

    let mut served = Vec::new();
    // h0 returns: h1 is READY with a 3-day deadline; only h1 may take it.
    let back = give_back(&mut r.client, "DEM-1").await;
    let shelf = back.copy.unwrap();
    assert_eq!((shelf.status, shelf.hold_for.as_str()), (pb::CopyStatus::OnHoldShelf as i32, "h1"));
    let now_s = meshwork_common::clock::Clock::now_ms(&clock) / 1000;
    assert_eq!(shelf.pickup_deadline.unwrap().seconds, now_s + 3 * 24 * 3600);
    let h1 = account(&mut r.client, "h1").await.holds;
    assert_eq!(h1[0].state, pb::HoldState::ReadyForPickup as i32);
    assert_eq!(h1[0].barcode, "DEM-1");
    let taken = checkout(&mut r.client, "h2", "DEM-1").await.unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition);
    assert!(taken.message().contains("hold shelf for another member"), "{}", taken.message());
    checkout(&mut r.client, "h1", "DEM-1").await.expect("h1 picks up");
    served.push("h1");
    assert_eq!(positions(&mut r.client, &members).await, vec![0, 1, 2, 3, 4]);

    // h1 returns: h2's turn, but h2 does not come within 3 days. The sweeper passes it to h3.
    give_back(&mut r.client, "DEM-1").await;
    assert_eq!(stored_copy(&r, "DEM-1").await.hold_for, "h2");
    clock.advance(3 * 24 * 3600 * 1000 - 1000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stored_copy(&r, "DEM-1").await.hold_for, "h2", "not due yet: sweeps leave it");
    clock.advance(1000);
    let passed = eventually(Duration::from_secs(10), || {
        let r = &r;
        async move { stored_copy(r, "DEM-1").await.hold_for == "h3" }
    })
    .await;
    assert!(passed, "the sweeper passed the missed pickup to h3");
    let stored = stored_copy(&r, "DEM-1").await;
    assert_eq!(stored.status, CopyStatus::OnHoldShelf);
    assert_eq!(stored.pickup_deadline_ms, meshwork_common::clock::Clock::now_ms(&clock) + 3 * DAY);
    let h2 = account(&mut r.client, "h2").await;
    assert!(h2.holds.is_empty() && h2.loans.is_empty(), "h2's missed hold is gone: {h2:?}");
    let late = checkout(&mut r.client, "h2", "DEM-1").await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(positions(&mut r.client, &members).await, vec![0, 0, 1, 2, 3]);

    // h3, h4, h5 each pick up and return in turn.
    for m in ["h3", "h4", "h5"] {
        assert_eq!(copy(&mut r.client, "DEM-1").await.hold_for, m);
        checkout(&mut r.client, m, "DEM-1").await.unwrap_or_else(|e| panic!("{m} picks up: {e:?}"));
        served.push(m);
        clock.advance(DAY);
        give_back(&mut r.client, "DEM-1").await;
    }
    assert_eq!(served, vec!["h1", "h3", "h4", "h5"]);
    // The queue is empty: the copy is back on the shelf.
    let last = copy(&mut r.client, "DEM-1").await;
    assert_eq!((last.status, last.hold_for.as_str()), (pb::CopyStatus::Available as i32, ""));
    let title = r.client.get_title(pb::GetTitleRequest { isbn }).await.unwrap().into_inner();
    assert!(title.holds.is_empty());
    assert_eq!(title.title.unwrap().available_copies, 1);
    // No deadline is left in the index.
    let pickups = meshwork_storage::scan_all(
        &r.store,
        meshwork_storage::KeyRange::prefix(r.keys.pickups_prefix()),
        meshwork_storage::Direction::Forward,
    )
    .await
    .unwrap();
    assert!(pickups.is_empty(), "{pickups:?}");
}

async fn a_missed_pickup_is_passed_on_at_read_time_without_the_sweeper(backend: Backend) {
    let clock = clock();
    let root = root("readtime");
    // A sweeper that would not run within the test.
    let mut r = replica_sweeping(&backend.store, &root, Arc::new(clock.clone()), Duration::from_secs(3600)).await;
    let isbn = isbn(11);
    add_title(&mut r.client, &isbn, "Shelf", &["W"], &[]).await;
    register(&mut r.client, "a", pb::MemberType::Adult).await;
    register(&mut r.client, "b", pb::MemberType::Adult).await;
    place_hold(&mut r.client, "a", &isbn).await;
    place_hold(&mut r.client, "b", &isbn).await;
    // A new copy goes straight to the first hold.
    let added = add_copy(&mut r.client, "SHELF-1", &isbn, 900).await;
    assert_eq!((added.status, added.hold_for.as_str()), (pb::CopyStatus::OnHoldShelf as i32, "a"));
    clock.advance(3 * DAY + 1);
    assert_eq!(stored_copy(&r, "SHELF-1").await.hold_for, "a", "the sweeper has not run");
    // b's checkout meets the due deadline, settles it and gets the copy.
    checkout(&mut r.client, "b", "SHELF-1").await.expect("passed to b at read time");
    assert!(account(&mut r.client, "a").await.holds.is_empty());
    assert!(account(&mut r.client, "b").await.holds.is_empty());
}

on_every_backend!(
    five_holds_are_served_in_order_including_a_missed_pickup,
    a_missed_pickup_is_passed_on_at_read_time_without_the_sweeper
);
