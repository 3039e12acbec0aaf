//! The bad-input catalogue: every RPC with empty, malformed, out-of-range and unknown values,
//! conflicting fields, unknown ids, illegal moves and callers without the right: each answers
//! the right code naming the field, and nothing under the service's key root changes (a
//! snapshot of every key and version before and after).

use meshwork_common::fields::timestamp;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::parking::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::{Code, Request, Status};

use crate::support::{self, create_lot, level, quarter_ahead, reserve, reserve_req};
use meshwork_common::clock::Clock;

/// Asserts `result` failed with `code`, its message starting with `field:` when one is named.
fn expect<T: std::fmt::Debug>(case: &str, result: Result<T, Status>, code: Code, field: &str) {
    match result {
        Ok(v) => panic!("{case}: accepted: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{case}: {}", s.message());
            assert!(s.message().starts_with(&format!("{field}:")) || field.is_empty(), "{case}: {}", s.message());
        }
    }
}

fn as_user<T>(message: T, subject: &str, roles: &[&str]) -> Request<T> {
    let mut request = Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().expect("ascii identity"));
    request
}

fn secs(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds: s, nanos: 0 })
}

fn good_lot(id: &str) -> pb::Lot {
    pb::Lot {
        lot_id: id.into(),
        name: "Bad input lot".into(),
        currency: "EUR".into(),
        prices: vec![pb::Price { r#type: pb::SpotType::Regular as i32, hourly_minor: 100 }],
        levels: vec![level("l1", &[(pb::SpotType::Regular, 2)])],
        ..Default::default()
    }
}

async fn every_rpc_refuses_bad_input_and_changes_nothing(backend: Backend) {
    use pb::SpotType as T;
    let clock = support::manual_clock();
    let root = support::root("bad");
    let (_server, mut c) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let lot = support::lot_id("bad");
    create_lot(&mut c, &lot, vec![level("l1", &[(T::Regular, 2)])]).await;
    let start = quarter_ahead(clock.as_ref(), 2);
    let held = reserve(&mut c, reserve_req(&lot, "l1-r1", start, start + 3_600_000, "HELD1")).await.expect("reserve");
    let mut owned = reserve_req(&lot, "l1-r2", start, start + 3_600_000, "ALICE1");
    owned.user_id = "alice".into();
    let owned = reserve(&mut c, owned).await.expect("reserve for alice");
    let before = support::snapshot(&backend.store, &root).await;
    let unknown = "rsv_00000000000000000000".to_string();

    // CreateLot.
    let create = |lot: pb::Lot| pb::CreateLotRequest { request_id: support::rid("bad"), lot: Some(lot) };
    let fresh = support::lot_id("new");
    let with = |f: &dyn Fn(&mut pb::Lot)| {
        let mut l = good_lot(&fresh);
        f(&mut l);
        create(l)
    };
    let cases: Vec<(&str, pb::CreateLotRequest, Code, &str)> = vec![
        (
            "no request_id",
            pb::CreateLotRequest { request_id: String::new(), ..with(&|_| {}) },
            Code::InvalidArgument,
            "request_id",
        ),
        (
            "bad request_id",
            pb::CreateLotRequest { request_id: "a b".into(), ..with(&|_| {}) },
            Code::InvalidArgument,
            "request_id",
        ),
        ("no lot", pb::CreateLotRequest { request_id: support::rid("b"), lot: None }, Code::InvalidArgument, "lot"),
        ("empty lot_id", with(&|l| l.lot_id.clear()), Code::InvalidArgument, "lot.lot_id"),
        ("upper-case lot_id", with(&|l| l.lot_id = "LOT".into()), Code::InvalidArgument, "lot.lot_id"),
        ("long lot_id", with(&|l| l.lot_id = "l".repeat(41)), Code::InvalidArgument, "lot.lot_id"),
        ("blank name", with(&|l| l.name = "  ".into()), Code::InvalidArgument, "lot.name"),
        ("long name", with(&|l| l.name = "n".repeat(101)), Code::InvalidArgument, "lot.name"),
        ("no currency", with(&|l| l.currency.clear()), Code::InvalidArgument, "lot.currency"),
        ("bad currency", with(&|l| l.currency = "usd".into()), Code::InvalidArgument, "lot.currency"),
        ("unpriced type", with(&|l| l.prices[0].r#type = 0), Code::InvalidArgument, "lot.prices[0].type"),
        ("unknown price type", with(&|l| l.prices[0].r#type = 42), Code::InvalidArgument, "lot.prices[0].type"),
        (
            "negative price",
            with(&|l| l.prices[0].hourly_minor = -1),
            Code::InvalidArgument,
            "lot.prices[0].hourly_minor",
        ),
        (
            "huge price",
            with(&|l| l.prices[0].hourly_minor = 100_000_001),
            Code::InvalidArgument,
            "lot.prices[0].hourly_minor",
        ),
        ("priced twice", with(&|l| l.prices.push(l.prices[0])), Code::InvalidArgument, "lot.prices[1].type"),
        ("no levels", with(&|l| l.levels.clear()), Code::InvalidArgument, "lot.levels"),
        (
            "too many levels",
            with(&|l| l.levels = (0..101).map(|i| level(&format!("v{i}"), &[(T::Regular, 1)])).collect()),
            Code::InvalidArgument,
            "lot.levels",
        ),
        (
            "bad level_id",
            with(&|l| l.levels[0].level_id = "L 1".into()),
            Code::InvalidArgument,
            "lot.levels[0].level_id",
        ),
        ("level twice", with(&|l| l.levels.push(l.levels[0].clone())), Code::InvalidArgument, "lot.levels[1].level_id"),
        ("no spots", with(&|l| l.levels[0].blocks.clear()), Code::InvalidArgument, "lot.levels"),
        (
            "zero block",
            with(&|l| l.levels[0].blocks[0].count = 0),
            Code::InvalidArgument,
            "lot.levels[0].blocks[0].count",
        ),
        (
            "huge block",
            with(&|l| l.levels[0].blocks[0].count = 10_001),
            Code::InvalidArgument,
            "lot.levels[0].blocks[0].count",
        ),
        (
            "block type unpriced",
            with(&|l| l.levels[0].blocks[0].r#type = T::Ev as i32),
            Code::InvalidArgument,
            "lot.levels[0].blocks[0].type",
        ),
        (
            "block without type",
            with(&|l| l.levels[0].blocks[0].r#type = 0),
            Code::InvalidArgument,
            "lot.levels[0].blocks[0].type",
        ),
        (
            "bad spot_id",
            with(&|l| {
                l.levels[0].spots.push(pb::Spot {
                    spot_id: "A/1".into(),
                    r#type: T::Regular as i32,
                    level_id: String::new(),
                })
            }),
            Code::InvalidArgument,
            "lot.levels[0].spots[0].spot_id",
        ),
        (
            "spot twice",
            with(&|l| {
                let s = pb::Spot { spot_id: "s1".into(), r#type: T::Regular as i32, level_id: String::new() };
                l.levels[0].spots = vec![s.clone(), s];
            }),
            Code::InvalidArgument,
            "lot.levels[0].spots[1].spot_id",
        ),
        (
            "over 10,000 spots",
            with(&|l| l.levels = (0..3).map(|i| level(&format!("v{i}"), &[(T::Regular, 4000)])).collect()),
            Code::InvalidArgument,
            "lot.levels[2].blocks[0].count",
        ),
        ("existing lot", create(good_lot(&lot)), Code::AlreadyExists, ""),
    ];
    for (case, request, code, field) in cases {
        expect(case, c.create_lot(request).await, code, field);
    }
    expect(
        "driver creates a lot",
        c.create_lot(as_user(create(good_lot(&fresh)), "bob", &[])).await,
        Code::PermissionDenied,
        "",
    );

    // GetLot.
    expect("no lot_id", c.get_lot(pb::GetLotRequest { lot_id: String::new() }).await, Code::InvalidArgument, "lot_id");
    expect("bad lot_id", c.get_lot(pb::GetLotRequest { lot_id: "Lot".into() }).await, Code::InvalidArgument, "lot_id");
    expect("unknown lot", c.get_lot(pb::GetLotRequest { lot_id: fresh.clone() }).await, Code::NotFound, "");

    // SearchAvailability.
    let search = pb::SearchAvailabilityRequest {
        lot_id: lot.clone(),
        r#type: T::Regular as i32,
        start_time: Some(timestamp(start)),
        duration: secs(3600),
        ..Default::default()
    };
    let s = |f: &dyn Fn(&mut pb::SearchAvailabilityRequest)| {
        let mut r = search.clone();
        f(&mut r);
        r
    };
    let now = clock.as_ref().now_ms();
    let cases: Vec<(&str, pb::SearchAvailabilityRequest, Code, &str)> = vec![
        ("no lot_id", s(&|r| r.lot_id.clear()), Code::InvalidArgument, "lot_id"),
        ("unknown type", s(&|r| r.r#type = 9), Code::InvalidArgument, "type"),
        ("no start", s(&|r| r.start_time = None), Code::InvalidArgument, "start_time"),
        ("two starts", s(&|r| r.start_in = secs(60)), Code::InvalidArgument, "start_in"),
        ("past start", s(&|r| r.start_time = Some(timestamp(now - 3_600_000))), Code::InvalidArgument, "start_time"),
        (
            "bad nanos",
            s(&|r| r.start_time = Some(prost_types::Timestamp { seconds: 1, nanos: -1 })),
            Code::InvalidArgument,
            "start_time",
        ),
        (
            "over 30 days ahead",
            s(&|r| r.start_time = Some(timestamp(now + 31 * 86_400_000))),
            Code::InvalidArgument,
            "start_time",
        ),
        (
            "negative start_in",
            s(&|r| {
                r.start_time = None;
                r.start_in = secs(-5)
            }),
            Code::InvalidArgument,
            "start_in",
        ),
        ("no end", s(&|r| r.duration = None), Code::InvalidArgument, "end_time"),
        ("two ends", s(&|r| r.end_time = Some(timestamp(start + 3_600_000))), Code::InvalidArgument, "duration"),
        ("zero duration", s(&|r| r.duration = secs(0)), Code::InvalidArgument, "duration"),
        ("over 7 days", s(&|r| r.duration = secs(8 * 86_400)), Code::InvalidArgument, "duration"),
        (
            "end before start",
            s(&|r| {
                r.duration = None;
                r.end_time = Some(timestamp(start - 1))
            }),
            Code::InvalidArgument,
            "end_time",
        ),
        ("negative limit", s(&|r| r.limit = -1), Code::InvalidArgument, "limit"),
        ("huge limit", s(&|r| r.limit = 101), Code::InvalidArgument, "limit"),
        ("unknown lot", s(&|r| r.lot_id = fresh.clone()), Code::NotFound, ""),
    ];
    for (case, request, code, field) in cases {
        expect(case, c.search_availability(request).await, code, field);
    }

    // Reserve.
    let good = reserve_req(&lot, "l1-r2", start + 4 * 3_600_000, start + 5 * 3_600_000, "NEW1");
    let r = |f: &dyn Fn(&mut pb::ReserveRequest)| {
        let mut r = good.clone();
        f(&mut r);
        r
    };
    let cases: Vec<(&str, pb::ReserveRequest, Code, &str)> = vec![
        ("no request_id", r(&|r| r.request_id.clear()), Code::InvalidArgument, "request_id"),
        ("long request_id", r(&|r| r.request_id = "r".repeat(65)), Code::InvalidArgument, "request_id"),
        ("no lot_id", r(&|r| r.lot_id.clear()), Code::InvalidArgument, "lot_id"),
        ("neither type nor spot", r(&|r| r.spot_id.clear()), Code::InvalidArgument, "type"),
        ("type and spot", r(&|r| r.r#type = T::Regular as i32), Code::InvalidArgument, "spot_id"),
        (
            "unknown type",
            r(&|r| {
                r.spot_id.clear();
                r.r#type = 77
            }),
            Code::InvalidArgument,
            "type",
        ),
        ("bad spot_id", r(&|r| r.spot_id = "Spot 1".into()), Code::InvalidArgument, "spot_id"),
        ("no start", r(&|r| r.start_time = None), Code::InvalidArgument, "start_time"),
        ("past start", r(&|r| r.start_time = Some(timestamp(now - 86_400_000))), Code::InvalidArgument, "start_time"),
        (
            "start_in over 30 days",
            r(&|r| {
                r.start_time = None;
                r.start_in = secs(31 * 86_400)
            }),
            Code::InvalidArgument,
            "start_in",
        ),
        ("no end", r(&|r| r.end_time = None), Code::InvalidArgument, "end_time"),
        ("end at start", r(&|r| r.end_time = r.start_time), Code::InvalidArgument, "end_time"),
        (
            "over 7 days",
            r(&|r| r.end_time = Some(timestamp(start + 8 * 86_400_000))),
            Code::InvalidArgument,
            "end_time",
        ),
        ("no plate", r(&|r| r.plate.clear()), Code::InvalidArgument, "plate"),
        ("bad plate", r(&|r| r.plate = "AB_12".into()), Code::InvalidArgument, "plate"),
        ("short plate", r(&|r| r.plate = "A".into()), Code::InvalidArgument, "plate"),
        ("control user_id", r(&|r| r.user_id = "a\u{7}".into()), Code::InvalidArgument, "user_id"),
        ("unknown lot", r(&|r| r.lot_id = fresh.clone()), Code::NotFound, ""),
        ("unknown spot", r(&|r| r.spot_id = "l9-r1".into()), Code::NotFound, ""),
        (
            "no spot of the type",
            r(&|r| {
                r.spot_id.clear();
                r.r#type = T::Ev as i32
            }),
            Code::FailedPrecondition,
            "",
        ),
        (
            "taken spot",
            r(&|r| {
                r.spot_id = "l1-r1".into();
                r.start_time = Some(timestamp(start))
            }),
            Code::FailedPrecondition,
            "",
        ),
    ];
    for (case, request, code, field) in cases {
        expect(case, c.reserve(request).await, code, field);
    }
    let for_alice = r(&|r| r.user_id = "alice".into());
    expect("booking for another", c.reserve(as_user(for_alice, "bob", &[])).await, Code::PermissionDenied, "");

    // The reservation moves and GetReservation.
    for (case, id, code, field) in [
        ("no id", String::new(), Code::InvalidArgument, "reservation_id"),
        ("bad id", "rsv_short".to_string(), Code::InvalidArgument, "reservation_id"),
        ("unknown id", unknown.clone(), Code::NotFound, ""),
    ] {
        let confirm = pb::ConfirmReservationRequest { reservation_id: id.clone() };
        expect(case, c.confirm_reservation(confirm).await, code, field);
        let cancel = pb::CancelReservationRequest { reservation_id: id.clone(), reason: String::new() };
        expect(case, c.cancel_reservation(cancel).await, code, field);
        expect(case, c.check_in(pb::CheckInRequest { reservation_id: id.clone() }).await, code, field);
        expect(case, c.check_out(pb::CheckOutRequest { reservation_id: id.clone() }).await, code, field);
        expect(case, c.get_reservation(pb::GetReservationRequest { reservation_id: id.clone() }).await, code, field);
    }
    let long_reason =
        pb::CancelReservationRequest { reservation_id: held.reservation_id.clone(), reason: "r".repeat(501) };
    expect("long reason", c.cancel_reservation(long_reason).await, Code::InvalidArgument, "reason");
    let id = held.reservation_id.clone();
    expect(
        "check in a hold",
        c.check_in(pb::CheckInRequest { reservation_id: id.clone() }).await,
        Code::FailedPrecondition,
        "",
    );
    expect(
        "check out a hold",
        c.check_out(pb::CheckOutRequest { reservation_id: id }).await,
        Code::FailedPrecondition,
        "",
    );
    let theirs = owned.reservation_id.clone();
    let bob = |m| as_user(m, "bob", &[]);
    expect(
        "bob confirms alice's",
        c.confirm_reservation(bob(pb::ConfirmReservationRequest { reservation_id: theirs.clone() })).await,
        Code::PermissionDenied,
        "",
    );
    expect(
        "bob cancels alice's",
        c.cancel_reservation(as_user(
            pb::CancelReservationRequest { reservation_id: theirs.clone(), reason: String::new() },
            "bob",
            &[],
        ))
        .await,
        Code::PermissionDenied,
        "",
    );
    expect(
        "bob checks in alice's",
        c.check_in(as_user(pb::CheckInRequest { reservation_id: theirs.clone() }, "bob", &[])).await,
        Code::PermissionDenied,
        "",
    );
    expect(
        "bob reads alice's",
        c.get_reservation(as_user(pb::GetReservationRequest { reservation_id: theirs.clone() }, "bob", &[])).await,
        Code::PermissionDenied,
        "",
    );

    // ListReservations.
    let list = pb::ListReservationsRequest { plate: "HELD1".into(), ..Default::default() };
    let l = |f: &dyn Fn(&mut pb::ListReservationsRequest)| {
        let mut r = list.clone();
        f(&mut r);
        r
    };
    let page = c.list_reservations(l(&|r| r.page_size = 1)).await.expect("list").into_inner();
    assert!(page.next_page_token.is_empty(), "one reservation of HELD1");
    let cases: Vec<(&str, pb::ListReservationsRequest, Code, &str)> = vec![
        ("neither plate nor lot", l(&|r| r.plate.clear()), Code::InvalidArgument, "plate"),
        ("plate and lot", l(&|r| r.lot_id = lot.clone()), Code::InvalidArgument, "lot_id"),
        ("bad plate", l(&|r| r.plate = "#1".into()), Code::InvalidArgument, "plate"),
        (
            "bad lot",
            l(&|r| {
                r.plate.clear();
                r.lot_id = "A".into()
            }),
            Code::InvalidArgument,
            "lot_id",
        ),
        (
            "end before start",
            l(&|r| {
                r.start_time = Some(timestamp(start));
                r.end_time = Some(timestamp(start))
            }),
            Code::InvalidArgument,
            "end_time",
        ),
        ("negative page", l(&|r| r.page_size = -1), Code::InvalidArgument, "page_size"),
        ("huge page", l(&|r| r.page_size = 1001), Code::InvalidArgument, "page_size"),
        ("bad token", l(&|r| r.page_token = "junk".into()), Code::InvalidArgument, "page_token"),
    ];
    for (case, request, code, field) in cases {
        expect(case, c.list_reservations(request).await, code, field);
    }
    let by_lot = pb::ListReservationsRequest { lot_id: lot.clone(), ..Default::default() };
    expect("driver lists a lot", c.list_reservations(as_user(by_lot, "bob", &[])).await, Code::PermissionDenied, "");

    assert_eq!(support::snapshot(&backend.store, &root).await, before, "a refused call changed nothing");
}

on_every_backend!(every_rpc_refuses_bad_input_and_changes_nothing);
