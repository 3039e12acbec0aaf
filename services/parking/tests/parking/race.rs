//! No double booking under concurrency: 200 Reserve calls for one spot, over two replicas on
//! one store, in twenty overlapping groups: exactly one HELD per group (the reusable scenario
//! of `meshwork_parking::scenario`). Type-level requests racing for the last free spots of a
//! type get one spot each and never the same. The same request_id sent concurrently answers
//! one reservation.

use std::collections::HashSet;

use meshwork_parking::scenario;
use meshwork_proto::pb::parking::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::{self, create_lot, level, quarter_ahead, reserve, reserve_req};

async fn two_hundred_racing_reserves_hold_once_per_overlapping_set(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("race");
    let (_a, mut a) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let (_b, b) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let lot = support::lot_id("race");
    create_lot(&mut a, &lot, vec![level("l1", &[(pb::SpotType::Regular, 3)])]).await;
    let base = quarter_ahead(clock.as_ref(), 24);
    let started = std::time::Instant::now();
    let report =
        scenario::overlapping_reserves(&[a.clone(), b.clone()], &lot, "l1-r1", base, 200, &support::rid("race")).await;
    report.verify().unwrap_or_else(|e| panic!("{e}: {report:?}"));
    assert_eq!(report.winners.len(), 20);
    assert_eq!(report.refused.values().sum::<usize>(), 180);
    eprintln!("200 racing reserves on {}: {:?}", backend.store.backend(), started.elapsed());

    // What the store keeps agrees: twenty live holds on the spot, pairwise disjoint.
    let stored = support::all_reservations(&backend.store, &root).await;
    assert_eq!(stored.len(), 20);
    // The other spots are untouched: a type-level request gets one of them.
    let other = reserve(&mut a, reserve_req(&lot, "", base, base + 3_600_000, "AB123")).await.expect("reserve");
    assert_ne!(other.spot_id, "l1-r1");
}

async fn type_level_requests_take_distinct_spots(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("type");
    let (_a, mut a) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let (_b, b) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let lot = support::lot_id("type");
    create_lot(
        &mut a,
        &lot,
        vec![level("l1", &[(pb::SpotType::Ev, 4), (pb::SpotType::Regular, 2)]), level("l2", &[(pb::SpotType::Ev, 4)])],
    )
    .await;
    let start = quarter_ahead(clock.as_ref(), 5);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let mut req = reserve_req(&lot, "", start, start + 2 * 3_600_000, &format!("EV{i}"));
        req.r#type = pb::SpotType::Ev as i32;
        tasks.spawn(async move { reserve(&mut client, req).await });
    }
    let (mut spots, mut refused) = (HashSet::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(r) => {
                assert_eq!(r.r#type, pb::SpotType::Ev as i32);
                assert!(spots.insert(r.spot_id.clone()), "spot {} given twice", r.spot_id);
            }
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{}", s.message());
                refused += 1;
            }
        }
    }
    assert_eq!((spots.len(), refused), (8, 32), "every EV spot once, the rest refused");
    let search = a
        .search_availability(pb::SearchAvailabilityRequest {
            lot_id: lot.clone(),
            r#type: pb::SpotType::Ev as i32,
            start_time: Some(meshwork_common::fields::timestamp(start)),
            duration: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner();
    assert_eq!((search.free_count, search.total_count), (0, 8));
}

async fn one_request_id_answers_one_reservation(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("idem");
    let (_a, mut a) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let (_b, b) = support::quiet_replica(&backend.store, &root, clock.clone()).await;
    let lot = support::lot_id("idem");
    create_lot(&mut a, &lot, vec![level("l1", &[(pb::SpotType::Regular, 5)])]).await;
    let start = quarter_ahead(clock.as_ref(), 2);
    let req = reserve_req(&lot, "", start, start + 3_600_000, "ID123");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let req = req.clone();
        tasks.spawn(async move { reserve(&mut client, req).await });
    }
    let mut ids = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        ids.insert(joined.expect("task").expect("every duplicate answers").reservation_id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(support::all_reservations(&backend.store, &root).await.len(), 1);
    let again = reserve(&mut a, req.clone()).await.expect("a later repeat answers too");
    assert!(ids.contains(&again.reservation_id));
    let other = pb::ReserveRequest { plate: "OTHER1".into(), ..req };
    assert_eq!(reserve(&mut a, other).await.unwrap_err().code(), Code::AlreadyExists);
}

on_every_backend!(
    two_hundred_racing_reserves_hold_once_per_overlapping_set,
    type_level_requests_take_distinct_spots,
    one_request_id_answers_one_reservation
);
