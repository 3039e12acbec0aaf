//! The concurrency test of the core mechanism, on every backend (memory, embedded fjall, the
//! 3-member etcd cluster): two replicas on one store take many concurrent RecordInteraction
//! calls, a third of them duplicates of earlier request_ids (retries, some racing the first
//! call). Every interaction is learned exactly once: the model's counts equal what was sent
//! once per request_id, on both replicas, a replica started afterwards converges to the same
//! model, and a full rebuild from the log equals the incremental model.

mod support;

use std::time::Duration;

use futures::future::join_all;
use meshwork_proto::pb::recommendation::v1 as pb;
use meshwork_test_support::backends::{self, Backend};
use meshwork_test_support::on_every_backend;
use support::*;

async fn concurrent_interactions_count_once_and_replicas_converge(backend: Backend) {
    let store = backend.store.clone();
    let a = Replica::start(store.clone()).await;
    let b = Replica::start(store.clone()).await;
    let items: Vec<String> = (0..6).map(|n| sku(&format!("cc{n}"))).collect();
    let kinds = [
        pb::InteractionKind::View,
        pb::InteractionKind::Cart,
        pb::InteractionKind::Purchase,
        pb::InteractionKind::Rating,
    ];
    // 120 distinct interactions over 8 users and 6 items; each request sent once, a third twice.
    let tag = backends::unique("cc");
    let mut requests = Vec::new();
    for n in 0..120usize {
        let kind = kinds[n % 4];
        let value = if kind == pb::InteractionKind::Rating { 1.0 + (n % 9) as f64 / 2.0 } else { 0.0 };
        let req = interaction(&format!("{tag}-{n}"), &format!("{tag}-user{}", n % 8), &items[(n * 7) % 6], kind, value);
        requests.push(req.clone());
        if n % 3 == 0 {
            requests.push(req);
        }
    }
    let mut expected = std::collections::HashMap::<String, [u64; 4]>::new();
    for (n, req) in requests.iter().enumerate() {
        if n == 0 || requests[..n].iter().all(|r| r.request_id != req.request_id) {
            expected.entry(req.item.clone()).or_default()[(req.kind - 1) as usize] += 1;
        }
    }
    let calls = requests.into_iter().enumerate().map(|(n, req)| {
        let mut client = if n % 2 == 0 { a.client.clone() } else { b.client.clone() };
        async move { client.record_interaction(req).await.map(|r| r.into_inner().sequence) }
    });
    let answers = join_all(calls).await;
    let mut sequences: Vec<u64> = answers.into_iter().map(|r| r.expect("record interaction")).collect();
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(sequences.len(), 120, "duplicates answer the first answer's sequence");

    for replica in [&a, &b] {
        eventually(Duration::from_secs(10), "every interaction learned once", || {
            let ok = replica.live.read(|m| items.iter().all(|i| m.interaction_counts(i) == expected[i]));
            async move { ok }
        })
        .await;
    }
    // A replica started now converges to the same model; a rebuild from the log equals it.
    let c = Replica::start(store.clone()).await;
    let positions = a.live.positions();
    for replica in [&b, &c] {
        eventually(Duration::from_secs(10), "replicas reach the same log positions", || {
            let p = replica.live.positions();
            async move { p == positions }
        })
        .await;
    }
    let model = a.live.snapshot().model;
    for replica in [&b, &c] {
        assert_eq!(replica.live.snapshot().model.differences(&model, 10), Vec::<String>::new());
    }
    let report = c.live.rebuild().await.expect("rebuild");
    assert_eq!(report.differences, Vec::<String>::new());
    let similar = model.similar(&items[0], 10);
    assert!(!similar.is_empty());
}

on_every_backend!(concurrent_interactions_count_once_and_replicas_converge);
