//! The storage conformance suite: the same cases run against every backend (`memory`,
//! `embedded` in a temporary directory, `etcd` on a real 3-member cluster started from the
//! `etcd` binary), plus backend-specific durability and failover tests.
//!
//! The etcd tests share one cluster per test binary (each case uses its own key prefix); the
//! member-kill test starts its own. Without `etcd` on PATH the etcd tests fail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use meshwork_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use meshwork_storage::etcd::EtcdStore;
use meshwork_storage::memory::MemoryStore;
use meshwork_storage::testing::EtcdCluster;
use meshwork_storage::{
    Condition, Direction, DynStore, EventKind, KeyRange, Mutation, RetryPolicy, StoreError, WatchEvent, transact_with,
};

/// Per-backend knobs of the shared cases.
#[derive(Clone, Copy)]
struct Ctx {
    /// How late after its TTL a key may still be readable.
    ttl_slack: Duration,
    /// Etcd's minimum lease makes short TTLs longer.
    min_ttl: Duration,
}

fn memory_ctx() -> Ctx {
    Ctx { ttl_slack: Duration::from_secs(1), min_ttl: Duration::ZERO }
}

fn etcd_ctx() -> Ctx {
    Ctx { ttl_slack: Duration::from_secs(6), min_ttl: Duration::from_secs(2) }
}

// ---------------------------------------------------------------------------------------
// Backends.

async fn etcd_store() -> DynStore {
    let endpoints = tokio::task::spawn_blocking(|| EtcdCluster::shared().endpoints()).await.unwrap();
    Arc::new(EtcdStore::connect(endpoints).await.expect("connect to etcd"))
}

async fn embedded_store() -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.expect("open embedded store");
    (Arc::new(store), dir)
}

fn k(prefix: &str, rest: impl std::fmt::Display) -> Vec<u8> {
    format!("{prefix}{rest}").into_bytes()
}

async fn next_event(
    stream: &mut futures::stream::BoxStream<'static, meshwork_storage::Result<WatchEvent>>,
    wait: Duration,
) -> WatchEvent {
    match tokio::time::timeout(wait, stream.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {wait:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The shared cases.

mod cases {
    use super::*;

    /// 32 tasks x 200 read-modify-write increments of one key reach exactly 6400.
    pub async fn rmw_counter(store: DynStore, p: &str, _ctx: Ctx) {
        let key = k(p, "counter");
        let policy = RetryPolicy {
            max_attempts: 100_000,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(200),
        };
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let store = store.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    let key = key.clone();
                    transact_with::<(), StoreError, _>(&store, policy, move |tx| {
                        let key = key.clone();
                        Box::pin(async move {
                            let cur = match tx.get(&key).await? {
                                Some(v) => String::from_utf8(v.value).unwrap().parse::<u64>().unwrap(),
                                None => 0,
                            };
                            tx.put(key, (cur + 1).to_string());
                            Ok(())
                        })
                    })
                    .await
                    .expect("increment");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let got = store.get(&key).await.unwrap().expect("counter exists");
        assert_eq!(String::from_utf8(got.value).unwrap(), "6400");
    }

    /// 64 concurrent create-if-absent writes of one key: exactly one wins.
    pub async fn create_race(store: DynStore, p: &str, _ctx: Ctx) {
        let key = k(p, "unique");
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let r = store
                    .write(vec![Condition::Absent(key.clone())], vec![Mutation::put(key.clone(), format!("w{i}"))])
                    .await;
                (i, r)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r {
                Ok(rev) => winners.push((i, rev)),
                Err(StoreError::Conflict { key: ck }) => assert_eq!(ck.as_bytes(), key.as_slice()),
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
        let got = store.get(&key).await.unwrap().unwrap();
        assert_eq!(got.value, format!("w{}", winners[0].0).into_bytes());
        assert_eq!(got.version, winners[0].1);
    }

    /// 10,000 keys come back in order, page by page, both ways; bounds are honoured.
    pub async fn order_and_paging(store: DynStore, p: &str, _ctx: Ctx) {
        let n = 10_000;
        let batch = store.limits().max_ops_per_write.min(1_000);
        let keys: Vec<Vec<u8>> = (0..n).map(|i| k(p, format!("k{i:05}"))).collect();
        // Write in shuffled-ish order so ordering comes from the store, not the writes.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| (i * 7919) % n);
        for chunk in order.chunks(batch) {
            let muts = chunk.iter().map(|&i| Mutation::put(keys[i].clone(), format!("v{i}"))).collect();
            store.write(vec![], muts).await.unwrap();
        }
        for (direction, page) in [(Direction::Forward, 1_000), (Direction::Reverse, 777), (Direction::Forward, 0)] {
            let mut range = KeyRange::prefix(p.as_bytes().to_vec());
            let mut seen = Vec::new();
            let mut pages = 0;
            loop {
                let got = store.scan(range.clone(), page, direction).await.unwrap();
                pages += 1;
                assert!(page == 0 || got.entries.len() <= page);
                for e in &got.entries {
                    let i: usize = std::str::from_utf8(&e.key[p.len() + 1..]).unwrap().parse().unwrap();
                    assert_eq!(e.value, format!("v{i}").into_bytes());
                    assert!(e.version > 0);
                }
                seen.extend(got.entries.into_iter().map(|e| e.key));
                match got.next {
                    Some(next) => match direction {
                        Direction::Forward => range.start = std::ops::Bound::Included(next),
                        Direction::Reverse => range.end = std::ops::Bound::Included(next),
                    },
                    None => break,
                }
                assert!(pages < 100, "paging does not terminate");
            }
            let mut expected = keys.clone();
            if direction == Direction::Reverse {
                expected.reverse();
            }
            assert_eq!(seen.len(), expected.len(), "{direction:?} page {page}");
            assert!(seen == expected, "{direction:?} scan order differs");
        }
        // Bounds: [k00010, k00020) and (k00010, k00020].
        let r = KeyRange::between(k(p, "k00010"), k(p, "k00020"));
        let got = store.scan(r, 0, Direction::Forward).await.unwrap();
        assert_eq!(got.entries.len(), 10);
        assert_eq!(got.entries[0].key, k(p, "k00010"));
        assert_eq!(got.next, None);
        let r = KeyRange {
            start: std::ops::Bound::Excluded(k(p, "k00010")),
            end: std::ops::Bound::Included(k(p, "k00020")),
        };
        let got = store.scan(r, 5, Direction::Reverse).await.unwrap();
        let names: Vec<_> = got.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(names, (16..=20).rev().map(|i| k(p, format!("k{i:05}"))).collect::<Vec<_>>());
        assert_eq!(got.next, Some(k(p, "k00015")));
        // Empty and inverted ranges.
        let got = store.scan(KeyRange::between(k(p, "z"), k(p, "a")), 0, Direction::Forward).await.unwrap();
        assert!(got.entries.is_empty() && got.next.is_none());
    }

    /// Absent / Version / ValueEquals conditions; a failed write writes nothing and names
    /// the failing key.
    pub async fn conditions(store: DynStore, p: &str, _ctx: Ctx) {
        let (a, b, c) = (k(p, "a"), k(p, "b"), k(p, "c"));
        let r1 = store.write(vec![Condition::Absent(a.clone())], vec![Mutation::put(a.clone(), "1")]).await.unwrap();
        let got = store.get(&a).await.unwrap().unwrap();
        assert_eq!((got.value.as_slice(), got.version), (&b"1"[..], r1));
        // Absent fails on an existing key.
        let e = store.write(vec![Condition::Absent(a.clone())], vec![Mutation::put(c.clone(), "x")]).await;
        assert_eq!(e, Err(StoreError::conflict(&a)));
        assert_eq!(store.get(&c).await.unwrap(), None, "a failed write writes nothing");
        // Version.
        let r2 = store
            .write(
                vec![Condition::Version(a.clone(), r1)],
                vec![Mutation::put(a.clone(), "2"), Mutation::put(b.clone(), "b")],
            )
            .await
            .unwrap();
        assert!(r2 > r1);
        let e = store.write(vec![Condition::Version(a.clone(), r1)], vec![Mutation::put(c.clone(), "x")]).await;
        assert_eq!(e, Err(StoreError::conflict(&a)));
        let e = store.write(vec![Condition::Version(c.clone(), r1)], vec![Mutation::put(c.clone(), "x")]).await;
        assert_eq!(e, Err(StoreError::conflict(&c)), "Version on an absent key fails");
        let e = store.write(vec![Condition::Version(c.clone(), 0)], vec![Mutation::put(c.clone(), "x")]).await;
        assert_eq!(e, Err(StoreError::conflict(&c)), "no key has version 0");
        assert_eq!(store.get(&b).await.unwrap().unwrap().version, r2, "one write, one revision");
        // ValueEquals; the second condition fails and is the one named.
        let e = store
            .write(
                vec![
                    Condition::ValueEquals(a.clone(), b"2".to_vec()),
                    Condition::ValueEquals(b.clone(), b"nope".to_vec()),
                ],
                vec![Mutation::put(c.clone(), "x")],
            )
            .await;
        assert_eq!(e, Err(StoreError::conflict(&b)));
        let e = store.write(vec![Condition::ValueEquals(c.clone(), vec![])], vec![Mutation::put(c.clone(), "x")]).await;
        assert_eq!(e, Err(StoreError::conflict(&c)), "ValueEquals on an absent key fails");
        let r3 = store
            .write(
                vec![Condition::ValueEquals(a.clone(), b"2".to_vec()), Condition::Absent(c.clone())],
                vec![Mutation::delete(a.clone()), Mutation::put(c.clone(), "c")],
            )
            .await
            .unwrap();
        assert!(r3 > r2);
        assert_eq!(store.get(&a).await.unwrap(), None);
        assert_eq!(store.get(&c).await.unwrap().unwrap().version, r3);
        // A deleted and re-created key never repeats a version.
        let r4 = store.write(vec![Condition::Absent(a.clone())], vec![Mutation::put(a.clone(), "1")]).await.unwrap();
        assert!(r4 > r3 && r4 != r1);
        // Conditions only: checked, nothing written, current revision returned.
        let r5 = store.write(vec![Condition::Version(a.clone(), r4)], vec![]).await.unwrap();
        assert!(r5 >= r4);
        assert_eq!(store.write(vec![Condition::Version(a.clone(), r1)], vec![]).await, Err(StoreError::conflict(&a)));
    }

    /// Malformed writes are rejected and write nothing.
    pub async fn invalid_writes(store: DynStore, p: &str, _ctx: Ctx) {
        let (a, b) = (k(p, "a"), k(p, "b"));
        let e = store
            .write(
                vec![],
                vec![Mutation::put(a.clone(), "1"), Mutation::put(b.clone(), "2"), Mutation::delete(a.clone())],
            )
            .await;
        assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
        let e = store.write(vec![], vec![Mutation::put(a.clone(), "1"), Mutation::put(Vec::new(), "2")]).await;
        assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
        let e = store.write(vec![], vec![Mutation::put_with_ttl(a.clone(), "1", Duration::ZERO)]).await;
        assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
        assert_eq!(store.get(&a).await.unwrap(), None);
        assert_eq!(store.get(&b).await.unwrap(), None);
    }

    /// A key with a TTL disappears (from get, scan and conditions) and watchers see a delete.
    pub async fn ttl_expiry(store: DynStore, p: &str, ctx: Ctx) {
        let (short, keep) = (k(p, "short"), k(p, "keep"));
        let ttl = Duration::from_millis(1_000);
        let mut watch = store.watch(p.as_bytes(), None).await.unwrap();
        let written = Instant::now();
        let rev = store
            .write(vec![], vec![Mutation::put_with_ttl(short.clone(), "s", ttl), Mutation::put(keep.clone(), "k")])
            .await
            .unwrap();
        assert_eq!(store.get(&short).await.unwrap().unwrap().version, rev);
        for _ in 0..2 {
            let ev = next_event(&mut watch, Duration::from_secs(5)).await;
            assert_eq!((ev.kind, ev.revision), (EventKind::Put, rev));
        }
        let deadline = written + ttl.max(ctx.min_ttl) + ctx.ttl_slack;
        loop {
            if store.get(&short).await.unwrap().is_none() {
                break;
            }
            assert!(Instant::now() < deadline, "key still present {:?} after a {ttl:?} TTL", written.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(written.elapsed() >= ttl.max(ctx.min_ttl) - Duration::from_millis(50), "expired too early");
        let page = store.scan(KeyRange::prefix(p.as_bytes().to_vec()), 0, Direction::Forward).await.unwrap();
        assert_eq!(page.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), vec![keep.clone()]);
        let ev = next_event(&mut watch, ctx.ttl_slack + Duration::from_secs(2)).await;
        assert_eq!((ev.kind, ev.key.as_slice()), (EventKind::Delete, short.as_slice()));
        assert!(ev.revision > rev);
        store.write(vec![Condition::Absent(short.clone())], vec![Mutation::put(short.clone(), "again")]).await.unwrap();
        assert_eq!(store.get(&keep).await.unwrap().unwrap().value, b"k");
        // Overwriting without a TTL removes the expiry.
        let r = store.write(vec![], vec![Mutation::put_with_ttl(keep.clone(), "t", ttl)]).await.unwrap();
        store
            .write(vec![Condition::Version(keep.clone(), r)], vec![Mutation::put(keep.clone(), "forever")])
            .await
            .unwrap();
        tokio::time::sleep(ttl.max(ctx.min_ttl) + Duration::from_millis(600)).await;
        assert_eq!(store.get(&keep).await.unwrap().unwrap().value, b"forever");
    }

    /// Watch delivers every change under the prefix once, in order; replay from a revision
    /// returns the same history and then continues live.
    pub async fn watch_order_and_replay(store: DynStore, p: &str, _ctx: Ctx) {
        let other = format!("{}-other/", p.trim_end_matches('/'));
        let mut live = store.watch(p.as_bytes(), None).await.unwrap();
        let mut expected: Vec<(EventKind, Vec<u8>, Vec<u8>, u64)> = Vec::new();
        for i in 0..10 {
            let key = k(p, format!("w{}", i % 3));
            let rev = store.write(vec![], vec![Mutation::put(key.clone(), format!("{i}"))]).await.unwrap();
            expected.push((EventKind::Put, key, format!("{i}").into_bytes(), rev));
            store.write(vec![], vec![Mutation::put(k(&other, i), "x")]).await.unwrap();
        }
        let rev =
            store.write(vec![], vec![Mutation::delete(k(p, "w0")), Mutation::put(k(p, "w9"), "nine")]).await.unwrap();
        expected.push((EventKind::Delete, k(p, "w0"), vec![], rev));
        expected.push((EventKind::Put, k(p, "w9"), b"nine".to_vec(), rev));
        // A failed write and a delete of an absent key change nothing.
        let _ = store.write(vec![Condition::Absent(k(p, "w1"))], vec![Mutation::put(k(p, "w1"), "no")]).await;
        store.write(vec![], vec![Mutation::delete(k(p, "never"))]).await.unwrap();

        let check = |got: &WatchEvent, want: &(EventKind, Vec<u8>, Vec<u8>, u64)| {
            assert_eq!((got.kind, &got.key, &got.value, got.revision), (want.0, &want.1, &want.2, want.3));
        };
        for want in &expected {
            check(&next_event(&mut live, Duration::from_secs(5)).await, want);
        }
        let first = expected[0].3;
        let mut replay = store.watch(p.as_bytes(), Some(first)).await.unwrap();
        for want in &expected {
            check(&next_event(&mut replay, Duration::from_secs(5)).await, want);
        }
        // Replay from the middle, then live.
        let mut mid = store.watch(p.as_bytes(), Some(expected[5].3)).await.unwrap();
        let rev = store.write(vec![], vec![Mutation::put(k(p, "late"), "l")]).await.unwrap();
        let late = (EventKind::Put, k(p, "late"), b"l".to_vec(), rev);
        for want in expected[5..].iter().chain(std::iter::once(&late)) {
            check(&next_event(&mut mid, Duration::from_secs(5)).await, want);
        }
        check(&next_event(&mut live, Duration::from_secs(5)).await, &late);
        check(&next_event(&mut replay, Duration::from_secs(5)).await, &late);
        // Nothing more (no duplicates).
        for s in [&mut live, &mut replay, &mut mid] {
            assert!(
                tokio::time::timeout(Duration::from_millis(300), s.next()).await.is_err(),
                "unexpected extra event"
            );
        }
    }

    /// Watchers started before, during and after concurrent writes each see every change
    /// exactly once and in revision order.
    pub async fn watch_under_concurrency(store: DynStore, p: &str, _ctx: Ctx) {
        let start = store.write(vec![], vec![Mutation::put(k(p, "start"), "s")]).await.unwrap();
        let mut early = store.watch(p.as_bytes(), Some(start + 1)).await.unwrap();
        let mut writers = Vec::new();
        for t in 0..4 {
            let store = store.clone();
            let p = p.to_string();
            writers.push(tokio::spawn(async move {
                for i in 0..50 {
                    store.write(vec![], vec![Mutation::put(k(&p, format!("t{t}/{i}")), format!("{i}"))]).await.unwrap();
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut during = store.watch(p.as_bytes(), Some(start + 1)).await.unwrap();
        for w in writers {
            w.await.unwrap();
        }
        let mut after = store.watch(p.as_bytes(), Some(start + 1)).await.unwrap();
        for s in [&mut early, &mut during, &mut after] {
            let mut seen = HashSet::new();
            let mut last_rev = 0;
            let mut next_index: HashMap<u8, usize> = HashMap::new();
            for _ in 0..200 {
                let ev = next_event(s, Duration::from_secs(10)).await;
                assert!(ev.revision > last_rev, "revisions must increase: {} then {}", last_rev, ev.revision);
                last_rev = ev.revision;
                assert!(seen.insert(ev.key.clone()), "duplicate event for {:?}", String::from_utf8_lossy(&ev.key));
                // Each writer's keys arrive in its own write order.
                let rest = &ev.key[p.len() + 1..];
                let (t, i) = std::str::from_utf8(rest).unwrap().split_once('/').unwrap();
                let t: u8 = t.parse().unwrap();
                let i: usize = i.parse().unwrap();
                let n = next_index.entry(t).or_default();
                assert_eq!(i, *n);
                *n += 1;
            }
            assert!(tokio::time::timeout(Duration::from_millis(200), s.next()).await.is_err(), "extra event");
        }
    }

    /// Writes over a limit fail with LimitExceeded and write nothing.
    pub async fn limits(store: DynStore, p: &str, _ctx: Ctx) {
        let limits = store.limits();
        let first = k(p, "first");
        let too_many: Vec<Mutation> = (0..=limits.max_ops_per_write)
            .map(|i| Mutation::put(if i == 0 { first.clone() } else { k(p, i) }, "v"))
            .collect();
        let e = store.write(vec![], too_many).await;
        assert!(matches!(e, Err(StoreError::LimitExceeded { .. })), "{e:?}");
        // Exactly at the op limit is fine.
        let ok: Vec<Mutation> =
            (0..limits.max_ops_per_write).map(|i| Mutation::put(k(p, format!("ok{i}")), "v")).collect();
        store.write(vec![], ok).await.unwrap();
        let e = store.write(vec![], vec![Mutation::put(first.clone(), vec![7u8; limits.max_write_bytes + 1])]).await;
        match &e {
            Err(StoreError::LimitExceeded { limit, actual, .. }) => assert!(actual > limit),
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        assert!(e.unwrap_err().to_string().contains("over the limit"));
        let e = store.write(vec![], vec![Mutation::put(vec![b'x'; limits.max_key_bytes + 1], "v")]).await;
        assert!(matches!(e, Err(StoreError::LimitExceeded { .. })), "{e:?}");
        assert_eq!(store.get(&first).await.unwrap(), None, "a rejected write writes nothing");
        assert_eq!(store.get(&k(p, 1)).await.unwrap(), None);
        // Just under the byte limit works (and is readable back).
        let big = vec![3u8; limits.max_write_bytes - first.len() - 64 * 1024];
        store.write(vec![], vec![Mutation::put(first.clone(), big.clone())]).await.unwrap();
        assert_eq!(store.get(&first).await.unwrap().unwrap().value.len(), big.len());
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let store: meshwork_storage::DynStore = std::sync::Arc::new(super::MemoryStore::new());
                    super::cases::$case(store, concat!("mem/", stringify!($case), "/"), super::memory_ctx()).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _dir) = super::embedded_store().await;
                    super::cases::$case(store, concat!("emb/", stringify!($case), "/"), super::memory_ctx()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let store = super::etcd_store().await;
                    super::cases::$case(store, concat!("etcd/", stringify!($case), "/"), super::etcd_ctx()).await;
                }
            )*
        }
    };
}

conformance!(
    rmw_counter,
    create_race,
    order_and_paging,
    conditions,
    invalid_writes,
    ttl_expiry,
    watch_order_and_replay,
    watch_under_concurrency,
    limits,
);

// ---------------------------------------------------------------------------------------
// Backend-specific tests.

#[tokio::test]
async fn memory_watch_from_trimmed_history_is_compacted() {
    let store = MemoryStore::with_history(5);
    for i in 0..20 {
        meshwork_storage::Store::write(&store, vec![], vec![Mutation::put(format!("k{i}"), "v")]).await.unwrap();
    }
    let e = meshwork_storage::Store::watch(&store, b"k", Some(3)).await.unwrap().next().await;
    assert!(matches!(e, Some(Err(StoreError::Compacted(3)))), "{e:?}");
    let mut ok = meshwork_storage::Store::watch(&store, b"k", Some(16)).await.unwrap();
    assert_eq!(next_event(&mut ok, Duration::from_secs(1)).await.revision, 16);
}

#[tokio::test]
async fn embedded_reopen_keeps_data_revision_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let (rev, ttl_rev) = {
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        let r1 = store.write(vec![], vec![Mutation::put("a", "1"), Mutation::put("b", "2")]).await.unwrap();
        let r2 = store.write(vec![], vec![Mutation::put_with_ttl("t", "x", Duration::from_secs(2))]).await.unwrap();
        store.flush().await.unwrap();
        assert!(r2 > r1);
        (r1, r2)
    };
    // Dropping closed the directory: reopening must work right away.
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    assert_eq!(store.get(b"a").await.unwrap().unwrap().version, rev);
    assert_eq!(store.get(b"b").await.unwrap().unwrap().value, b"2");
    let r3 = store.write(vec![Condition::Version(b"a".to_vec(), rev)], vec![Mutation::put("a", "3")]).await.unwrap();
    assert!(r3 > ttl_rev, "revision keeps increasing across reopen: {r3} <= {ttl_rev}");
    // History survived: replay from the first revision.
    let mut w = store.watch(b"", Some(rev)).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut w, Duration::from_secs(2)).await);
    }
    assert_eq!(got.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![rev, rev, ttl_rev, r3]);
    // The TTL key expires after reopen as well (the sweep deletes it).
    let ev = next_event(&mut w, Duration::from_secs(5)).await;
    assert_eq!((ev.kind, ev.key.as_slice()), (EventKind::Delete, &b"t"[..]));
    assert_eq!(store.get(b"t").await.unwrap(), None);
}

#[tokio::test]
async fn embedded_watch_from_trimmed_changelog_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions { history_revisions: 10, ..EmbeddedOptions::default() };
    let store: DynStore = Arc::new(EmbeddedStore::open_with(dir.path(), opts).await.unwrap());
    for i in 0..30 {
        store.write(vec![], vec![Mutation::put(format!("k{i}"), "v")]).await.unwrap();
    }
    let e = store.watch(b"k", Some(5)).await.unwrap().next().await;
    assert!(matches!(e, Some(Err(StoreError::Compacted(5)))), "{e:?}");
    let mut ok = store.watch(b"k", Some(25)).await.unwrap();
    assert_eq!(next_event(&mut ok, Duration::from_secs(1)).await.revision, 25);
}

#[tokio::test]
async fn embedded_without_history_watches_live_only_and_drops_an_old_changelog() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Written with the default history first: 20 revisions in the changelog.
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        for i in 0..20 {
            store.write(vec![], vec![Mutation::put(format!("k{i}"), "v")]).await.unwrap();
        }
        let mut replay = store.watch(b"k", Some(3)).await.unwrap();
        assert_eq!(next_event(&mut replay, Duration::from_secs(1)).await.revision, 3);
    }
    // The trace store's options.
    let opts = EmbeddedOptions {
        history_revisions: 0,
        fsync: false,
        journal_compression: false,
        ..EmbeddedOptions::default()
    };
    let store: DynStore = Arc::new(EmbeddedStore::open_with(dir.path(), opts.clone()).await.unwrap());
    // Reopened without history: no past revision can be replayed, old or new.
    for from in [3, 20] {
        let e = store.watch(b"k", Some(from)).await.unwrap().next().await;
        assert!(matches!(e, Some(Err(StoreError::Compacted(f))) if f == from), "from {from}: {e:?}");
    }
    let mut live = store.watch(b"k", None).await.unwrap();
    let rev = store.write(vec![], vec![Mutation::put("k20", "new")]).await.unwrap();
    assert_eq!(rev, 21);
    // A value over the journal's 4 KiB compression threshold, uncompressed in the journal.
    let large: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let ev = next_event(&mut live, Duration::from_secs(5)).await;
    assert_eq!(
        (ev.kind, ev.key.as_slice(), ev.value.as_slice(), ev.revision),
        (EventKind::Put, &b"k20"[..], &b"new"[..], 21)
    );
    let e = store.watch(b"k", Some(21)).await.unwrap().next().await;
    assert!(matches!(e, Some(Err(StoreError::Compacted(21)))), "{e:?}");
    store.write(vec![], vec![Mutation::put("large", large.clone())]).await.unwrap();
    // Data and revisions are kept as usual, also across a reopen without fsync (read back from
    // the journal).
    drop(live);
    drop(store);
    let store: DynStore = Arc::new(EmbeddedStore::open_with(dir.path(), opts).await.unwrap());
    assert_eq!(store.get(b"k0").await.unwrap().unwrap().value, b"v");
    assert_eq!(store.get(b"k20").await.unwrap().unwrap().version, 21);
    assert_eq!(store.get(b"large").await.unwrap().unwrap().value, large);
}

const CHILD_ENV: &str = "MESHWORK_STORAGE_CHILD_DIR";

/// Not a test on its own: with MESHWORK_STORAGE_CHILD_DIR set, this is the child process of
/// `embedded_kill9_loses_no_acknowledged_write`, writing keys forever and printing each
/// acknowledged one.
#[test]
fn embedded_kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store: DynStore = Arc::new(EmbeddedStore::open(std::path::Path::new(&dir)).await.unwrap());
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let key = format!("kill/{t}/{i:08}");
                    let value = format!("value-{t}-{i}");
                    let muts = if i % 4 == 0 {
                        // Some multi-key writes too.
                        vec![
                            Mutation::put(key.clone(), value.clone()),
                            Mutation::put(format!("{key}/extra"), value.clone()),
                        ]
                    } else {
                        vec![Mutation::put(key.clone(), value.clone())]
                    };
                    let rev = store.write(vec![Condition::Absent(key.clone().into_bytes())], muts).await.unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {key} {value} {rev}").unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "embedded_kill9_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut killed = false;
        let started = Instant::now();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(rest) = line.strip_prefix("ack ") else { continue };
            let mut parts = rest.split(' ');
            let (key, value, rev) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            acks.push((key.to_string(), value.to_string(), rev.parse::<u64>().unwrap()));
            if !killed && (acks.len() >= 3_000 || started.elapsed() > Duration::from_secs(60)) {
                // SIGKILL mid-write; lines already in the pipe are still acknowledged writes.
                child.kill().unwrap();
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        (acks, killed, status)
    });
    let (acks, killed, status) = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    assert!(killed, "the child stopped on its own ({status}) after {} acks", acks.len());
    assert!(acks.len() >= 3_000, "only {} acks", acks.len());
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let mut max_rev = 0;
    for (key, value, rev) in &acks {
        let got = store.get(key.as_bytes()).await.unwrap().unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(got.value, value.as_bytes(), "{key}");
        assert_eq!(got.version, *rev, "{key}");
        max_rev = max_rev.max(*rev);
    }
    // Still writable, and revisions continue past every acknowledged one.
    let r = store.write(vec![], vec![Mutation::put("after-crash", "ok")]).await.unwrap();
    assert!(r > max_rev);
    assert_eq!(store.get(b"after-crash").await.unwrap().unwrap().value, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_member_killed_mid_run_loses_no_acknowledged_write() {
    let mut cluster =
        tokio::task::spawn_blocking(|| EtcdCluster::start(3)).await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    let endpoints = cluster.endpoints();
    let store: DynStore = Arc::new(EtcdStore::connect(endpoints.clone()).await.unwrap());
    let acked = Arc::new(std::sync::Mutex::new(BTreeMap::<String, String>::new()));
    let unavailable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        let acked = acked.clone();
        let unavailable = unavailable.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                let key = format!("failover/{t}/{i:05}");
                let value = format!("v{t}-{i}");
                let mut uncertain = false;
                let started = Instant::now();
                loop {
                    let r = store
                        .write(
                            vec![Condition::Absent(key.clone().into_bytes())],
                            vec![Mutation::put(key.clone(), value.clone())],
                        )
                        .await;
                    match r {
                        Ok(_) => break,
                        // Only an earlier attempt with an unknown outcome can make the key exist.
                        Err(StoreError::Conflict { .. }) if uncertain => break,
                        Err(StoreError::Conflict { .. }) => panic!("false conflict on {key}"),
                        Err(StoreError::Unavailable(msg)) => {
                            unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            uncertain = true;
                            assert!(
                                started.elapsed() < Duration::from_secs(60),
                                "{key} unavailable for a minute: {msg}"
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => panic!("{key}: {e}"),
                    }
                }
                acked.lock().unwrap().insert(key, value);
            }
        }));
    }
    // Kill the member the store is using (the first endpoint) once the run is under way.
    loop {
        if acked.lock().unwrap().len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::block_in_place(|| cluster.kill(0));
    let killed_at = acked.lock().unwrap().len();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await.expect("run completes").unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 8 * 300);
    assert!(killed_at < acked.len(), "the kill happened mid-run");
    eprintln!(
        "member killed after {killed_at} acks; {} unavailable retries",
        unavailable.load(std::sync::atomic::Ordering::Relaxed)
    );
    // Every acknowledged key is readable, through the old store and a fresh one.
    let fresh: DynStore = Arc::new(EtcdStore::connect(endpoints[1..].to_vec()).await.unwrap());
    for s in [&store, &fresh] {
        let page = s.scan(KeyRange::prefix("failover/"), 0, Direction::Forward).await.unwrap();
        let got: BTreeMap<String, String> = page
            .entries
            .into_iter()
            .map(|e| (String::from_utf8(e.key).unwrap(), String::from_utf8(e.value).unwrap()))
            .collect();
        assert_eq!(got, acked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_unreachable_cluster_is_unavailable_not_a_hang() {
    // Ports nobody listens on.
    let ports: Vec<u16> = (0..2).map(|_| meshwork_storage::testing::free_port()).collect();
    let eps: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let started = Instant::now();
    let r = EtcdStore::connect(eps).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{:?}", r.err());
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_urls_open_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = tokio::task::spawn_blocking(|| EtcdCluster::shared().endpoints()).await.unwrap();
    let urls = [
        "memory:".to_string(),
        format!("embedded:{}", dir.path().display()),
        format!("etcd://{}", endpoints.join(",")),
    ];
    for (url, name) in urls.iter().zip(["memory", "embedded", "etcd"]) {
        let store = meshwork_storage::open(&url.parse().unwrap()).await.unwrap();
        assert_eq!(store.backend(), name);
        let r = store.write(vec![], vec![Mutation::put("url/probe", url.as_str())]).await.unwrap();
        assert_eq!(store.get(b"url/probe").await.unwrap().unwrap().version, r);
    }
}
