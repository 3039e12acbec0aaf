//! Batched counters against real stores (memory, embedded fjall, a 3-member etcd cluster): the
//! totals are exact under concurrent increments on two replicas with flushes racing; many
//! counters go in as few transactions as the backend allows (64 per etcd transaction, under its
//! 128-operation limit); the periodic flush task and the shutdown hook of a hosted service keep
//! every increment across a restart of an embedded store; a failed flush keeps its deltas; a
//! corrupt count holds back only itself; a caller that gives up on a flush loses nothing and
//! counts nothing twice.

mod flaky;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meshwork_common::counter::{BatchedCounters, Flushed, decode_count};
use meshwork_common::{HostedService, ServiceError};
use meshwork_storage::embedded::EmbeddedStore;
use meshwork_storage::{DynStore, KeyRange, Mutation, scan_all};
use support::Backend;

/// Counters keyed by a small number, stored under `<prefix>/<n>`.
fn counters(store: &DynStore, prefix: &str) -> BatchedCounters<u32> {
    let prefix = prefix.to_string();
    BatchedCounters::new("test", store.clone(), move |n: &u32| format!("{prefix}/{n:05}").into_bytes())
}

/// Returns every stored count under `prefix`, by counter.
async fn stored(store: &DynStore, prefix: &str) -> HashMap<u32, u64> {
    let entries = scan_all(store, KeyRange::prefix(format!("{prefix}/")), Default::default()).await.unwrap();
    entries
        .iter()
        .map(|e| {
            let key = String::from_utf8(e.key.clone()).unwrap();
            let n = key.rsplit('/').next().unwrap().parse().unwrap();
            (n, decode_count(&e.value).unwrap())
        })
        .collect()
}

async fn totals_are_exact_with_concurrent_increments_and_racing_flushes(backend: Backend) {
    const KEYS: u32 = 20;
    const TASKS: u32 = 8;
    const ROUNDS: u32 = 250;
    let prefix = support::unique("ctr-race");
    // Two replicas on one store.
    let replicas = [counters(&backend.store, &prefix), counters(&backend.store, &prefix)];
    let stop = Arc::new(AtomicBool::new(false));
    let mut flushers = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        // Two flushers per replica, racing each other and the other replica's.
        for _ in 0..2 {
            let (replica, stop) = (replica.clone(), stop.clone());
            flushers.push(tokio::spawn(async move {
                let mut flushes = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(3 + i as u64)).await;
                    replica.flush().await.unwrap();
                    flushes += 1;
                }
                flushes
            }));
        }
    }
    let mut adders = Vec::new();
    for t in 0..TASKS {
        let replica = replicas[(t % 2) as usize].clone();
        adders.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                for key in 0..KEYS {
                    replica.add(key, u64::from(1 + (key + t) % 3));
                }
                if round % 25 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for a in adders {
        a.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let mut flushes = 0;
    for f in flushers {
        flushes += f.await.unwrap();
    }
    for replica in &replicas {
        replica.flush().await.unwrap();
        assert_eq!(replica.pending(), 0);
    }
    let want: HashMap<u32, u64> =
        (0..KEYS).map(|key| (key, (0..TASKS).map(|t| u64::from(ROUNDS * (1 + (key + t) % 3))).sum())).collect();
    assert_eq!(stored(&backend.store, &prefix).await, want, "after {flushes} racing flushes");
    assert!(flushes > 0);
}

async fn many_counters_go_in_as_few_transactions_as_the_backend_allows(backend: Backend) {
    let prefix = support::unique("ctr-many");
    let c = counters(&backend.store, &prefix);
    for key in 0..1000 {
        c.add(key, u64::from(key) + 1);
    }
    c.add(7, 1);
    let done = c.flush().await.unwrap();
    // Each counter costs a condition and a put: etcd's 128 operations hold 64 counters.
    let per_write = backend.store.limits().max_ops_per_write / 2;
    assert_eq!(done, Flushed { counters: 1000, writes: 1000usize.div_ceil(per_write) });
    if backend.store.backend() == "etcd" {
        assert_eq!(done.writes, 16);
    }
    let got = stored(&backend.store, &prefix).await;
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|(key, n)| *n == u64::from(*key) + 1 + u64::from(*key == 7)));
    // A second round adds to what is stored.
    c.add(7, 10);
    assert_eq!(c.flush().await.unwrap(), Flushed { counters: 1, writes: 1 });
    assert_eq!(c.stored(&7).await.unwrap(), 19);
}

async fn a_failed_flush_keeps_its_deltas(backend: Backend) {
    let (store, control) = flaky::wrap(backend.store.clone());
    let prefix = support::unique("ctr-fail");
    let c = counters(&store, &prefix);
    for key in 0..200 {
        c.add(key, 2);
    }
    control.fail_writes(true);
    match c.flush().await {
        Err(ServiceError::Unavailable(_)) => {}
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    assert_eq!(c.pending(), 200);
    // More increments meanwhile, some to the same counters.
    for key in 100..300 {
        c.add(key, 1);
    }
    control.fail_writes(false);
    assert_eq!(c.flush().await.unwrap().counters, 300);
    let got = stored(&store, &prefix).await;
    assert_eq!(got.len(), 300);
    assert!(
        got.iter().all(|(key, n)| *n
            == if *key < 100 {
                2
            } else if *key < 200 {
                3
            } else {
                1
            }),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_count_holds_back_only_itself() {
    let store = support::memory().store;
    let c = counters(&store, "corrupt");
    store.write(vec![], vec![Mutation::put("corrupt/00003", "three")]).await.unwrap();
    for key in 0..10 {
        c.add(key, 1);
    }
    match c.flush().await {
        Err(ServiceError::Internal(m)) => assert!(m.contains("corrupt counter"), "{m}"),
        other => panic!("expected INTERNAL, got {other:?}"),
    }
    // The nine others are stored; the corrupt one keeps its delta.
    let got = stored_lenient(&store, "corrupt").await;
    assert_eq!(got.len(), 9);
    assert_eq!(c.pending(), 1);
    // Once mended, it is written.
    store.write(vec![], vec![Mutation::put("corrupt/00003", 5u64.to_be_bytes().to_vec())]).await.unwrap();
    c.add(3, 1);
    assert_eq!(c.flush().await.unwrap(), Flushed { counters: 1, writes: 1 });
    assert_eq!(c.stored(&3).await.unwrap(), 7);
}

/// [`stored`] without the counters that do not decode.
async fn stored_lenient(store: &DynStore, prefix: &str) -> HashMap<u32, u64> {
    let entries = scan_all(store, KeyRange::prefix(format!("{prefix}/")), Default::default()).await.unwrap();
    entries
        .iter()
        .filter_map(|e| {
            let key = String::from_utf8(e.key.clone()).unwrap();
            Some((key.rsplit('/').next()?.parse().ok()?, decode_count(&e.value).ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_on_a_flush_loses_nothing() {
    let (store, control) = flaky::wrap(support::memory().store);
    let c = counters(&store, "cancel");
    for key in 0..5 {
        c.add(key, 10);
    }
    control.open_writes(false);
    // The caller gives up while the write waits at the gate.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), c.flush()).await;
    assert!(gave_up.is_err());
    assert_eq!(control.writes_waiting(), 1);
    c.add(0, 1);
    control.open_writes(true);
    // The next flush runs after the abandoned one, which still commits its deltas.
    c.flush().await.unwrap();
    let got = stored(&store, "cancel").await;
    assert_eq!(got, HashMap::from([(0, 11), (1, 10), (2, 10), (3, 10), (4, 10)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn increments_survive_a_restart_through_the_flush_task_and_the_shutdown_hook() {
    let dir = tempfile::tempdir().unwrap();
    const KEYS: u32 = 300;
    let mut want: HashMap<u32, u64> = HashMap::new();
    for generation in 0..3u64 {
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        let c = counters(&store, "restart");
        let hosted = HostedService::builder("counters")
            .task(c.flush_task(Duration::from_millis(2)))
            .on_shutdown(c.shutdown_hook())
            .build();
        // Increments from several tasks while the flush task runs.
        let mut adders = Vec::new();
        for t in 0..4u64 {
            let c = c.clone();
            adders.push(tokio::spawn(async move {
                for round in 0..50 {
                    for key in 0..KEYS {
                        c.add(key, 1 + t);
                    }
                    if round % 5 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
        for a in adders {
            a.await.unwrap();
        }
        for key in 0..KEYS {
            *want.entry(key).or_default() += 50 * (1 + 2 + 3 + 4);
        }
        // The server stops: the flush task is aborted (maybe mid-flush), then the hook runs.
        for hook in hosted.on_shutdown {
            hook().await;
        }
        assert_eq!(c.pending(), 0, "generation {generation}");
        store.flush().await.unwrap();
        drop(c);
        drop(store);
        // The store is reopened: what was flushed is on disk.
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        assert_eq!(stored(&store, "restart").await, want, "generation {generation}");
    }
}

use meshwork_test_support::on_every_backend;

on_every_backend!(
    totals_are_exact_with_concurrent_increments_and_racing_flushes,
    many_counters_go_in_as_few_transactions_as_the_backend_allows,
    a_failed_flush_keeps_its_deltas,
);
