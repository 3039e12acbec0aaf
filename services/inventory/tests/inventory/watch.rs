//! WatchStock: a sku prefix's changes in order, with the log's sequence; a client that
//! reconnects with `from_sequence = last + 1` gets exactly the rest (no gap, no repeat), and
//! LOW_STOCK appears when a change takes the sku's available stock below its threshold.

use std::time::Duration;

use meshwork_proto::pb::inventory::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Streaming;

use crate::support::{self, Client, line, receive, reserve};

async fn next(events: &mut Streaming<pb::StockEvent>) -> pb::StockEvent {
    tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event within 10 s")
        .expect("stream ok")
        .expect("stream open")
}

async fn watch(client: &mut Client, prefix: &str, from: u64) -> Streaming<pb::StockEvent> {
    client
        .watch_stock(pb::WatchStockRequest { sku_prefix: prefix.into(), from_sequence: from })
        .await
        .expect("watch")
        .into_inner()
}

fn summary(e: &pb::StockEvent) -> (i32, String, i64) {
    (e.kind, e.sku.clone(), e.delta)
}

async fn the_stream_resumes_without_gaps_or_repeats(backend: Backend) {
    let (_server, mut client) = support::start(&backend.store, "watch").await;
    let base = support::sku("WAT");
    let (a, b, other) = (format!("{base}-A"), format!("{base}-B"), support::sku("OTHER"));
    client
        .set_low_stock_threshold(pb::SetLowStockThresholdRequest { sku: a.clone(), threshold: 5 })
        .await
        .expect("threshold");

    let mut events = watch(&mut client, &base, 0).await;
    receive(&mut client, &a, "w1", 10).await;
    receive(&mut client, &other, "w1", 10).await;
    let held = reserve(&mut client, vec![line(&a, 6)], None).await.expect("reserve");

    let first = next(&mut events).await;
    let second = next(&mut events).await;
    use pb::StockEventKind as K;
    assert_eq!(summary(&first), (K::Adjusted as i32, a.clone(), 10));
    assert_eq!(summary(&second), (K::Reserved as i32, a.clone(), 6));
    assert_eq!(second.reservation_id, held.reservation_id);
    assert_eq!(second.level.as_ref().map(|l| (l.on_hand, l.reserved, l.available)), Some((10, 6, 4)));
    assert!(second.sequence > first.sequence);
    // The client goes away mid-stream; changes go on.
    drop(events);
    receive(&mut client, &b, "w2", 3).await;
    client
        .release_reservation(pb::ReleaseReservationRequest {
            reservation_id: held.reservation_id.clone(),
            reason: String::new(),
        })
        .await
        .expect("release");

    let mut resumed = watch(&mut client, &base, second.sequence + 1).await;
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.push(next(&mut resumed).await);
    }
    let kinds: Vec<(i32, String, i64)> = rest.iter().map(summary).collect();
    assert_eq!(
        kinds,
        vec![
            (K::LowStock as i32, a.clone(), 0),
            (K::Adjusted as i32, b.clone(), 3),
            (K::Released as i32, a.clone(), -6)
        ]
    );
    assert_eq!(rest[0].sequence, second.sequence + 1, "LOW_STOCK is committed with the reservation that crossed");
    assert_eq!((rest[0].total_available, rest[0].threshold), (4, 5));

    // Replaying from the first event gives the same events with the same sequences.
    let mut replay = watch(&mut client, &base, first.sequence).await;
    let mut all = Vec::new();
    for _ in 0..5 {
        all.push(next(&mut replay).await);
    }
    let expected: Vec<pb::StockEvent> = [first, second].into_iter().chain(rest).collect();
    assert_eq!(all, expected);
    assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence));
}

on_every_backend!(the_stream_resumes_without_gaps_or_repeats);
