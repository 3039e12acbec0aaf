//! The life of a reservation through the API, timed by a manual clock: quotes per quarter
//! hour, confirmation, refunds by the cancellation policy, check-in and check-out with the
//! overstay charged at 1.5x, repeats answered again, illegal moves refused, and listings by
//! plate and by lot, paged.

use meshwork_common::clock::Clock;
use meshwork_proto::pb::parking::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::{self, Client, create_lot, level, quarter_ahead, reserve, reserve_req};

const HOUR: i64 = 3_600_000;

async fn confirm(c: &mut Client, id: &str) -> pb::Reservation {
    let r = c.confirm_reservation(pb::ConfirmReservationRequest { reservation_id: id.into() }).await;
    r.expect("confirm").into_inner().reservation.expect("reservation")
}

async fn cancel(c: &mut Client, id: &str) -> pb::Reservation {
    let r = c.cancel_reservation(pb::CancelReservationRequest { reservation_id: id.into(), reason: "plans".into() });
    r.await.expect("cancel").into_inner().reservation.expect("reservation")
}

async fn a_reservation_is_quoted_confirmed_refunded_and_charged_for_overstay(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("life");
    let (_server, mut c) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let lot = support::lot_id("life");
    create_lot(&mut c, &lot, vec![level("l1", &[(pb::SpotType::Regular, 2)]), level("l2", &[(pb::SpotType::Ev, 1)])])
        .await;
    let got = c.get_lot(pb::GetLotRequest { lot_id: lot.clone() }).await.expect("get lot").into_inner().lot;
    let got = got.expect("lot");
    assert_eq!(got.spot_count, 3);
    assert_eq!(got.levels[0].spots[1].spot_id, "l1-r2");

    // Rounded outward: 10:07-12:01 is 10:00-12:15, nine quarters at 400/h.
    let start = quarter_ahead(clock.as_ref(), 4);
    let r = reserve(&mut c, reserve_req(&lot, "l1-r1", start + 7 * 60_000, start + 2 * HOUR + 60_000, "ab 12-cd"))
        .await
        .expect("reserve");
    assert_eq!((support::ms(&r.start_time), support::ms(&r.end_time)), (start, start + 2 * HOUR + 15 * 60_000));
    assert_eq!((r.price_minor, r.hourly_minor, r.currency.as_str(), r.total_minor), (900, 400, "USD", 0));
    assert_eq!(r.plate, "AB12CD");
    let r = confirm(&mut c, &r.reservation_id).await;
    assert_eq!((r.state, r.total_minor), (pb::ReservationState::Confirmed as i32, 900));
    assert_eq!(confirm(&mut c, &r.reservation_id).await.update_time, r.update_time, "a repeat answers again");
    // More than an hour before the start: a full refund.
    let r = cancel(&mut c, &r.reservation_id).await;
    assert_eq!((r.state, r.refund_minor, r.total_minor), (pb::ReservationState::Cancelled as i32, 900, 0));
    assert_eq!(cancel(&mut c, &r.reservation_id).await.refund_minor, 900, "a repeat answers again");

    // Within the hour: half back.
    let r = reserve(&mut c, reserve_req(&lot, "l1-r1", start, start + HOUR, "AB12CD")).await.expect("reserve");
    confirm(&mut c, &r.reservation_id).await;
    clock.advance(start - HOUR - clock.now_ms());
    let r = cancel(&mut c, &r.reservation_id).await;
    assert_eq!((r.refund_minor, r.total_minor), (200, 200), "exactly one hour before is not more than one");

    // A held reservation cancelled owes nothing; checking in needs a confirmation.
    let r = reserve(&mut c, reserve_req(&lot, "l1-r2", start, start + HOUR, "XY99")).await.expect("reserve");
    let refused = c.check_in(pb::CheckInRequest { reservation_id: r.reservation_id.clone() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("HELD"), "{}", refused.message());
    assert_eq!(cancel(&mut c, &r.reservation_id).await.total_minor, 0);

    // Check-in opens 15 minutes before the start; 20 minutes past the end is two quarters
    // of overstay at 1.5 x 400/h = 300.
    let r = reserve(&mut c, reserve_req(&lot, "l1-r2", start, start + HOUR, "XY99")).await.expect("reserve");
    confirm(&mut c, &r.reservation_id).await;
    clock.advance(start - 16 * 60_000 - clock.now_ms());
    let early = c.check_in(pb::CheckInRequest { reservation_id: r.reservation_id.clone() }).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    clock.advance(60_000);
    let inside = c.check_in(pb::CheckInRequest { reservation_id: r.reservation_id.clone() }).await.expect("check in");
    let inside = inside.into_inner().reservation.expect("reservation");
    assert_eq!(inside.state, pb::ReservationState::CheckedIn as i32);
    assert_eq!(support::ms(&inside.check_in_time), clock.now_ms());
    let refused = c
        .cancel_reservation(pb::CancelReservationRequest {
            reservation_id: r.reservation_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "a parked car checks out instead");
    // Overstaying blocks the spot for the next quarter hour.
    clock.advance(start + HOUR + 20 * 60_000 - clock.now_ms());
    let next = support::reserve_req(&lot, "l1-r2", start + HOUR + 15 * 60_000, start + 2 * HOUR, "NEXT1");
    assert_eq!(reserve(&mut c, next).await.unwrap_err().code(), Code::FailedPrecondition);
    let out = c.check_out(pb::CheckOutRequest { reservation_id: r.reservation_id.clone() }).await.expect("check out");
    let out = out.into_inner().reservation.expect("reservation");
    assert_eq!((out.state, out.overstay_minor, out.total_minor), (pb::ReservationState::CheckedOut as i32, 300, 700));
    let next = support::reserve_req(&lot, "l1-r2", start + HOUR + 15 * 60_000, start + 2 * HOUR, "NEXT1");
    reserve(&mut c, next).await.expect("the spot is free once the car left");
}

async fn listings_by_plate_and_lot_are_paged_by_start(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("list");
    let (_server, mut c) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let lot = support::lot_id("list");
    create_lot(&mut c, &lot, vec![level("l1", &[(pb::SpotType::Regular, 2)])]).await;
    let start = quarter_ahead(clock.as_ref(), 1);
    let plate = "LST777".to_string();
    let mut ids = Vec::new();
    for i in 0..7 {
        let from = start + i * HOUR;
        let r = reserve(&mut c, reserve_req(&lot, "l1-r1", from, from + HOUR, &plate)).await.expect("reserve");
        ids.push(r.reservation_id);
    }
    reserve(&mut c, reserve_req(&lot, "l1-r2", start, start + HOUR, "OTHER9")).await.expect("reserve");
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_reservations(pb::ListReservationsRequest {
                plate: plate.clone(),
                start_time: Some(meshwork_common::fields::timestamp(start + HOUR)),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.reservations.len() <= 2);
        seen.extend(page.reservations.into_iter().map(|r| r.reservation_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids[1..].to_vec(), "by start, from the second hour on");
    let by_lot = c
        .list_reservations(pb::ListReservationsRequest {
            lot_id: lot.clone(),
            end_time: Some(meshwork_common::fields::timestamp(start + 1)),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(by_lot.reservations.len(), 2, "the two starting at the first quarter");
}

on_every_backend!(
    a_reservation_is_quoted_confirmed_refunded_and_charged_for_overstay,
    listings_by_plate_and_lot_are_paged_by_start
);
