//! Never oversell (the proof, in process): 500 concurrent reservations of one unit
//! against a stock of 100, sent to two replicas on one store, on every backend; and
//! reservations across skus are all or nothing; commit and release move the stock.

use std::sync::Arc;

use meshwork_common::clock::SystemClock;
use meshwork_proto::pb::inventory::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tokio::sync::Semaphore;
use tonic::Code;

use crate::support::{self, line, receive, reserve, stock};

/// Client calls in flight at once; every one of the 500 still races for the same stock.
const IN_FLIGHT: usize = 64;

async fn five_hundred_reserves_sell_exactly_one_hundred(backend: Backend) {
    let root = support::root("oversell");
    let (_a, mut a) = support::replica(&backend.store, &root, Arc::new(SystemClock)).await;
    let (_b, b) = support::replica(&backend.store, &root, Arc::new(SystemClock)).await;
    let sku = support::sku("ONE");
    receive(&mut a, &sku, "w1", 100).await;

    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut calls = Vec::new();
    for i in 0..500 {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (gate, sku) = (gate.clone(), sku.clone());
        calls.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore");
            reserve(&mut client, vec![line(&sku, 1)], None).await
        }));
    }
    let (mut ok, mut short) = (0, 0);
    for call in calls {
        match call.await.expect("task") {
            Ok(r) => {
                assert_eq!(r.state, pb::ReservationState::Held as i32);
                ok += 1;
            }
            Err(s) if s.code() == Code::FailedPrecondition => {
                assert!(s.message().contains(&sku) && s.message().contains("available 0"), "{}", s.message());
                short += 1;
            }
            Err(s) => panic!("unexpected answer {s:?}"),
        }
    }
    assert_eq!((ok, short), (100, 400));
    let level = stock(&mut a, &sku).await;
    assert_eq!((level.on_hand, level.reserved, level.available), (100, 100, 0));
}

async fn reservations_across_skus_are_all_or_nothing(backend: Backend) {
    let (_server, mut client) = support::start(&backend.store, "aon").await;
    let (x, y, z) = (support::sku("X"), support::sku("Y"), support::sku("Z"));
    receive(&mut client, &x, "w1", 10).await;
    receive(&mut client, &y, "w1", 3).await;
    receive(&mut client, &y, "w2", 2).await;
    receive(&mut client, &z, "w1", 1).await;

    // y has 5 in all, z only 1: the first short sku is named and nothing is held.
    let err = reserve(&mut client, vec![line(&x, 4), line(&y, 5), line(&z, 2)], None).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&z) && err.message().contains("requested 2, available 1"), "{}", err.message());
    for sku in [&x, &y, &z] {
        assert_eq!(stock(&mut client, sku).await.reserved, 0, "{sku}");
    }

    // Feasible: y is split across both of its locations, largest first.
    let r = reserve(&mut client, vec![line(&x, 4), line(&y, 5), line(&z, 1)], None).await.expect("reserve");
    let mut y_alloc: Vec<(String, i64)> =
        r.allocations.iter().filter(|a| a.sku == y).map(|a| (a.location.clone(), a.quantity)).collect();
    y_alloc.sort();
    assert_eq!(y_alloc, vec![("w1".to_string(), 3), ("w2".to_string(), 2)]);
    assert_eq!(stock(&mut client, &y).await.available, 0);

    // Commit: on hand and reserved both go down; committing again answers it again.
    let id = r.reservation_id.clone();
    let committed = client
        .commit_reservation(pb::CommitReservationRequest { reservation_id: id.clone() })
        .await
        .expect("commit")
        .into_inner()
        .reservation
        .expect("reservation");
    assert_eq!(committed.state, pb::ReservationState::Committed as i32);
    let xs = stock(&mut client, &x).await;
    assert_eq!((xs.on_hand, xs.reserved, xs.available), (6, 0, 6));
    let again = client.commit_reservation(pb::CommitReservationRequest { reservation_id: id.clone() }).await;
    assert_eq!(again.expect("commit again").into_inner().reservation.map(|r| r.state), Some(committed.state));
    let release = client
        .release_reservation(pb::ReleaseReservationRequest { reservation_id: id, reason: String::new() })
        .await
        .unwrap_err();
    assert_eq!(release.code(), Code::FailedPrecondition);

    // Release gives the stock back; releasing again answers again; commit then is refused.
    let r = reserve(&mut client, vec![line(&x, 6)], None).await.expect("reserve");
    let release = pb::ReleaseReservationRequest { reservation_id: r.reservation_id.clone(), reason: "cart".into() };
    let released = client.release_reservation(release.clone()).await.expect("release").into_inner();
    assert_eq!(released.reservation.map(|r| r.state), Some(pb::ReservationState::Released as i32));
    assert!(client.release_reservation(release).await.is_ok());
    let commit = client.commit_reservation(pb::CommitReservationRequest { reservation_id: r.reservation_id }).await;
    assert_eq!(commit.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(stock(&mut client, &x).await.available, 6);
}

async fn a_request_id_reserves_once(backend: Backend) {
    let (_server, mut client) = support::start(&backend.store, "idem").await;
    let sku = support::sku("IDEM");
    receive(&mut client, &sku, "w1", 5).await;
    let request = pb::ReserveRequest {
        request_id: support::rid("once"),
        lines: vec![line(&sku, 2)],
        ttl: None,
        reference: String::new(),
    };
    let (mut c1, mut c2) = (client.clone(), client.clone());
    let (first, second) = tokio::join!(c1.reserve(request.clone()), c2.reserve(request.clone()));
    let (first, second) = (first.expect("first").into_inner(), second.expect("second").into_inner());
    assert_eq!(first, second);
    assert_eq!(stock(&mut client, &sku).await.reserved, 2);
    let other = pb::ReserveRequest { lines: vec![line(&sku, 1)], ..request };
    assert_eq!(client.reserve(other).await.unwrap_err().code(), Code::AlreadyExists);
}

on_every_backend!(
    five_hundred_reserves_sell_exactly_one_hundred,
    reservations_across_skus_are_all_or_nothing,
    a_request_id_reserves_once
);
