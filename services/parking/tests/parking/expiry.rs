//! Holds expire by themselves, timed by a manual clock: the next caller gets a spot whose hold
//! ran out even when nobody read the reservation and no sweeper ran (the overlap check ignores
//! due holds); a confirmation after the hold ran out is refused and records EXPIRED; the
//! sweeper records EXPIRED and NO_SHOW in the store on its own; a hold outlives a restart.

use std::time::Duration;

use meshwork_common::clock::Clock;
use meshwork_parking::model::ReservationState;
use meshwork_proto::pb::parking::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::{self, create_lot, eventually, get, level, quarter_ahead, reserve, reserve_req};

const HOLD_MS: i64 = 600_000;
const WITHIN: Duration = Duration::from_secs(10);

async fn expired_holds_free_their_spot_for_the_next_caller(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("exp");
    // No sweeper within the test: only the overlap check can free the spot.
    let (_server, mut c) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let lot = support::lot_id("exp");
    create_lot(&mut c, &lot, vec![level("l1", &[(pb::SpotType::Regular, 1)])]).await;
    let start = quarter_ahead(clock.as_ref(), 3);
    let end = start + 2 * 3_600_000;

    let first = reserve(&mut c, reserve_req(&lot, "l1-r1", start, end, "AAA111")).await.expect("reserve");
    assert_eq!(first.state, pb::ReservationState::Held as i32);
    assert_eq!(support::ms(&first.hold_expire_time), clock.now_ms() + HOLD_MS);
    let taken = reserve(&mut c, reserve_req(&lot, "", start + 900_000, end, "BBB222")).await.unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition, "{}", taken.message());

    clock.advance(HOLD_MS - 1);
    let still = reserve(&mut c, reserve_req(&lot, "l1-r1", start, end, "BBB222")).await.unwrap_err();
    assert_eq!(still.code(), Code::FailedPrecondition, "one millisecond before the hold runs out");
    clock.advance(1);
    // Nobody read the first reservation; the next caller gets the spot.
    let second = reserve(&mut c, reserve_req(&lot, "", start + 900_000, end, "BBB222")).await.expect("spot freed");
    assert_eq!(second.spot_id, "l1-r1");
    assert_eq!(support::stored(&backend.store, &root, &first.reservation_id).await.state, ReservationState::Held);
    assert_eq!(get(&mut c, &first.reservation_id).await.state, pb::ReservationState::Expired as i32);

    // Confirming the first now is refused and records EXPIRED; the second confirms.
    let refused = c
        .confirm_reservation(pb::ConfirmReservationRequest { reservation_id: first.reservation_id.clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("EXPIRED"), "{}", refused.message());
    assert_eq!(support::stored(&backend.store, &root, &first.reservation_id).await.state, ReservationState::Expired);
    let cancel = pb::CancelReservationRequest { reservation_id: first.reservation_id.clone(), reason: String::new() };
    let gone = c.cancel_reservation(cancel).await.expect("cancelling an expired hold answers it");
    assert_eq!(gone.into_inner().reservation.map(|r| r.state), Some(pb::ReservationState::Expired as i32));
    let confirmed = c
        .confirm_reservation(pb::ConfirmReservationRequest { reservation_id: second.reservation_id.clone() })
        .await
        .expect("confirm")
        .into_inner()
        .reservation
        .expect("reservation");
    assert_eq!(confirmed.state, pb::ReservationState::Confirmed as i32);
    // A confirmed reservation does not expire.
    clock.advance(HOLD_MS * 3);
    let taken = reserve(&mut c, reserve_req(&lot, "l1-r1", start, end, "CCC333")).await.unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition);
}

async fn the_sweeper_records_expiry_and_no_shows_also_after_a_restart(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("sweep");
    let sweeping = Duration::from_millis(50);
    let hold = Duration::from_millis(HOLD_MS as u64);
    let (server, mut c) = support::replica(&backend.store, &root, clock.clone(), hold, sweeping).await;
    let lot = support::lot_id("sweep");
    create_lot(&mut c, &lot, vec![level("l1", &[(pb::SpotType::Ev, 2)])]).await;
    let start = quarter_ahead(clock.as_ref(), 1);
    let mut ev = reserve_req(&lot, "", start, start + 3_600_000, "EV1");
    ev.r#type = pb::SpotType::Ev as i32;
    let held = reserve(&mut c, ev.clone()).await.expect("reserve");
    let mut to_confirm = ev.clone();
    to_confirm.request_id = support::rid("ev2");
    let no_show = reserve(&mut c, to_confirm).await.expect("reserve");
    c.confirm_reservation(pb::ConfirmReservationRequest { reservation_id: no_show.reservation_id.clone() })
        .await
        .expect("confirm");

    // Not due yet: sweeps pass and the hold stays.
    clock.advance(HOLD_MS / 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(support::stored(&backend.store, &root, &held.reservation_id).await.state, ReservationState::Held);

    // The hold runs out while the replica is down; the next one's sweeper records it.
    server.stop().await;
    clock.advance(HOLD_MS / 2);
    let (_server, mut c) = support::replica(&backend.store, &root, clock.clone(), hold, sweeping).await;
    let (store, r) = (backend.store.clone(), root.clone());
    let id = held.reservation_id.clone();
    let recorded = eventually(WITHIN, || {
        let (store, r, id) = (store.clone(), r.clone(), id.clone());
        async move { support::stored(&store, &r, &id).await.state == ReservationState::Expired }
    })
    .await;
    assert!(recorded, "the sweeper recorded the expiry");
    let mut next = ev.clone();
    next.request_id = support::rid("ev3");
    assert_eq!(reserve(&mut c, next).await.expect("the freed EV spot").spot_id, held.spot_id);

    // Nobody checks in to the confirmed one: 30 minutes after its start it is a NO_SHOW and
    // its spot is free for the rest of the window.
    clock.advance(start + 30 * 60_000 - clock.now_ms());
    let id = no_show.reservation_id.clone();
    let recorded = eventually(WITHIN, || {
        let (store, r, id) = (store.clone(), root.clone(), id.clone());
        async move { support::stored(&store, &r, &id).await.state == ReservationState::NoShow }
    })
    .await;
    assert!(recorded, "the sweeper recorded the no-show");
    let late = c.check_in(pb::CheckInRequest { reservation_id: no_show.reservation_id.clone() }).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    let now = meshwork_parking::rules::floor_quarter(clock.now_ms());
    let rest = reserve(&mut c, reserve_req(&lot, &no_show.spot_id, now, start + 3_600_000, "LATE1")).await;
    assert_eq!(rest.expect("the no-show's spot is free").spot_id, no_show.spot_id);
}

on_every_backend!(
    expired_holds_free_their_spot_for_the_next_caller,
    the_sweeper_records_expiry_and_no_shows_also_after_a_restart
);
