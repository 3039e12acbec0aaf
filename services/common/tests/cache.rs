//! The watch-coherent read cache against real stores (memory, embedded fjall, a 3-member etcd
//! cluster): another writer's change and deletion are seen within a bound (far below the TTL),
//! in both modes (drop or refresh on change); after a watch that missed changes fails and
//! restarts, no stale value is served; a service reads its own write at once, but a late local
//! insert never masks a newer change (seen, or missed before a restart); a slow read that races
//! a change does not cache the old value; reads bypass the cache while the watch is down; a
//! value that does not decode is an INTERNAL error and is not cached; the TTL still bounds
//! staleness when an event is lost without an error; every lookup is counted by outcome.

mod flaky;
mod support;

use std::time::{Duration, Instant};

use meshwork_common::{ServiceError, ServiceResult, WatchedCache};
use meshwork_storage::{DynStore, Mutation};
use meshwork_telemetry::metrics::CACHE_REQUESTS;
use support::Backend;

/// How long another writer's change may take to show (the watch's delay, not the TTL).
const BOUND: Duration = Duration::from_secs(3);

/// A TTL no test outlives: anything seen within a test was seen through the watch.
const FOREVER: Duration = Duration::from_secs(3600);

fn text(bytes: &[u8]) -> ServiceResult<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| ServiceError::Internal(format!("not UTF-8: {e}")))
}

/// A cache name of its own, so that its metrics are this test's alone.
fn name(tag: &str) -> &'static str {
    Box::leak(support::unique(tag).into_boxed_str())
}

struct Fixture {
    cache: WatchedCache<String>,
    /// The store the cache reads (maybe wrapped).
    store: DynStore,
    prefix: String,
    watch: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start(store: DynStore, tag: &str, refresh: bool) -> Fixture {
        let prefix = format!("{}/items/", support::unique(tag));
        let cache = WatchedCache::builder(name(tag), store.clone(), prefix.clone())
            .ttl(FOREVER)
            .negative_ttl(FOREVER)
            .refresh_on_change(refresh)
            .retry_delay(Duration::from_millis(20))
            .build(text);
        let watch = tokio::spawn(cache.watch_task());
        tokio::time::timeout(BOUND, cache.wait_for_watch(0)).await.expect("the watch starts");
        Fixture { cache, store, prefix, watch }
    }

    fn key(&self, id: &str) -> Vec<u8> {
        format!("{}{id}", self.prefix).into_bytes()
    }

    /// Writes as another replica would: straight to the store. Returns the revision.
    async fn put(&self, id: &str, value: &str) -> u64 {
        self.store.write(vec![], vec![Mutation::put(self.key(id), value)]).await.unwrap()
    }

    async fn delete(&self, id: &str) -> u64 {
        self.store.write(vec![], vec![Mutation::delete(self.key(id))]).await.unwrap()
    }

    async fn get(&self, id: &str) -> Option<String> {
        self.cache.get(id).await.unwrap().map(|v| (*v).clone())
    }

    /// Waits until `id` reads as `want`; returns how long that took.
    async fn until(&self, id: &str, want: Option<&str>) -> Duration {
        let start = Instant::now();
        loop {
            if self.get(id).await.as_deref() == want {
                return start.elapsed();
            }
            assert!(start.elapsed() < BOUND, "{id} never became {want:?} (still {:?})", self.get(id).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the watch has applied every change up to `revision`.
    async fn seen(&self, revision: u64) {
        let deadline = Instant::now() + BOUND;
        while self.cache.seen_revision() < revision {
            assert!(Instant::now() < deadline, "revision {revision} was never seen");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn count(&self, result: &str) -> u64 {
        CACHE_REQUESTS.with_label_values(&[self.cache.name(), result]).get()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

async fn another_writers_changes_are_seen_within_a_bound(backend: Backend) {
    for refresh in [false, true] {
        let f = Fixture::start(backend.store.clone(), "cache-coherent", refresh).await;
        // An absence and a value, both cached (with TTLs no test outlives).
        let first = f.put("old", "v1").await;
        // With no change in flight, the first reads fill the cache.
        f.seen(first).await;
        assert_eq!(f.get("new").await, None);
        assert_eq!(f.get("old").await.as_deref(), Some("v1"));
        let hits = f.count("hit");
        assert_eq!(f.get("old").await.as_deref(), Some("v1"));
        assert_eq!(f.count("hit"), hits + 1, "a second read is served from the cache");

        let created = f.put("new", "fresh").await;
        let changed = f.put("old", "v2").await;
        let seen_create = f.until("new", Some("fresh")).await;
        let seen_change = f.until("old", Some("v2")).await;
        let deleted = f.delete("old").await;
        let seen_delete = f.until("old", None).await;
        assert!(created < changed && changed < deleted);
        println!(
            "{} refresh={refresh}: seen in {seen_create:?} (create), {seen_change:?} (change), {seen_delete:?} (del)",
            backend.store.backend()
        );
        // With no change after the delete, the answers are cached again.
        f.seen(deleted).await;
        f.get("old").await;
        f.get("new").await;
        let hits = f.count("hit") + f.count("negative_hit");
        assert_eq!(f.get("old").await, None);
        assert_eq!(f.get("new").await.as_deref(), Some("fresh"));
        assert_eq!(f.count("hit") + f.count("negative_hit"), hits + 2);
    }
}

async fn no_stale_value_after_a_watch_restart(backend: Backend) {
    let (store, control) = flaky::wrap(backend.store.clone());
    let f = Fixture::start(store, "cache-restart", false).await;
    f.put("changed", "v1").await;
    let setup = f.put("deleted", "here").await;
    // No change in flight: the reads below fill the cache.
    f.seen(setup).await;
    assert_eq!(f.get("changed").await.as_deref(), Some("v1"));
    assert_eq!(f.get("deleted").await.as_deref(), Some("here"));
    assert_eq!(f.get("created").await, None);

    // The watch misses three changes...
    control.swallow_events(true);
    f.put("changed", "v2").await;
    f.delete("deleted").await;
    let last = f.put("created", "new").await;
    let deadline = Instant::now() + BOUND;
    while control.swallowed() < 3 {
        assert!(Instant::now() < deadline, "the watch never got the changes it was to miss");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // ...and the next change, which it does see, proves it has gone past them.
    control.swallow_events(false);
    let marker = f.put("marker", "m").await;
    assert!(marker > last);
    f.seen(marker).await;
    // The missed changes left stale entries (what a restart must not keep).
    assert_eq!(f.get("changed").await.as_deref(), Some("v1"));
    assert_eq!(f.get("deleted").await.as_deref(), Some("here"));
    assert_eq!(f.get("created").await, None);

    // The watch fails; the next attempt to re-open it fails too.
    let starts = f.cache.watch_starts();
    control.fail_watch_opens(1);
    control.break_watches();
    let deadline = Instant::now() + BOUND;
    while f.cache.is_live() {
        assert!(Instant::now() < deadline, "the cache never saw its watch fail");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // From the failure on, reads go to the store, then through the new watch.
    let check = || async {
        assert_eq!(f.get("changed").await.as_deref(), Some("v2"));
        assert_eq!(f.get("deleted").await, None);
        assert_eq!(f.get("created").await.as_deref(), Some("new"));
    };
    check().await;
    tokio::time::timeout(BOUND, f.cache.wait_for_watch(starts)).await.expect("the watch restarts");
    assert_eq!(f.cache.watch_starts(), starts + 1);
    check().await;
    // Cached again, and still coherent.
    let hits = f.count("hit");
    check().await;
    assert!(f.count("hit") >= hits + 2);
    f.put("changed", "v3").await;
    f.until("changed", Some("v3")).await;
}

async fn a_slow_read_racing_a_change_does_not_cache_the_old_value(backend: Backend) {
    for refresh in [false, true] {
        let (store, control) = flaky::wrap(backend.store.clone());
        let f = Fixture::start(store, "cache-race", refresh).await;
        let first = f.put("k", "old").await;
        // Past the first write, so that only the read below sees "old".
        f.seen(first).await;
        f.cache.invalidate("k");
        // A read gets "old" from the store and is held before it fills the cache...
        let release = control.hold_next_get(&f.key("k"));
        let cache = f.cache.clone();
        let slow = tokio::spawn(async move { cache.get("k").await.unwrap().map(|v| (*v).clone()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...while another writer changes the key and the watch applies the change.
        let changed = f.put("k", "new").await;
        f.seen(changed).await;
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().as_deref(), Some("old"), "the slow read returns what it read");
        // But it did not put "old" in the cache.
        assert_eq!(f.get("k").await.as_deref(), Some("new"));
        assert_eq!(f.get("k").await.as_deref(), Some("new"));
    }
}

async fn a_local_write_is_read_at_once_and_never_masks_a_newer_change(backend: Backend) {
    for refresh in [false, true] {
        let (store, control) = flaky::wrap(backend.store.clone());
        let f = Fixture::start(store, "cache-local", refresh).await;
        assert_eq!(f.get("k").await, None);
        // This replica writes: its next read is a hit, whatever the watch has seen yet.
        let mine = f.put("k", "mine").await;
        f.cache.insert("k", "mine".to_string(), mine);
        let (hits, misses) = (f.count("hit"), f.count("miss"));
        assert_eq!(f.get("k").await.as_deref(), Some("mine"));
        assert_eq!((f.count("hit"), f.count("miss")), (hits + 1, misses));
        // The write's own event does not drop it.
        f.seen(mine).await;
        assert_eq!(f.get("k").await.as_deref(), Some("mine"));
        assert_eq!(f.count("hit"), hits + 2);

        // A newer change by another writer wins over a late local insert of an older write.
        let theirs = f.put("k", "theirs").await;
        f.seen(theirs).await;
        f.cache.insert("k", "mine".to_string(), mine);
        assert_eq!(f.get("k").await.as_deref(), Some("theirs"));

        // A change the watch missed before it restarted: a local write older than the restart
        // is not trusted either.
        control.swallow_events(true);
        let missed = f.put("k", "missed").await;
        let deadline = Instant::now() + BOUND;
        while control.swallowed() < 1 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        control.swallow_events(false);
        let starts = f.cache.watch_starts();
        control.break_watches();
        tokio::time::timeout(BOUND, f.cache.wait_for_watch(starts)).await.expect("the watch restarts");
        f.cache.insert("k", "theirs".to_string(), theirs);
        assert_eq!(f.get("k").await.as_deref(), Some("missed"));
        let last = f.put("k", "last").await;
        assert!(last > missed);
        f.cache.insert("k", "last".to_string(), last);
        let hits = f.count("hit");
        assert_eq!(f.get("k").await.as_deref(), Some("last"));
        assert_eq!(f.count("hit"), hits + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_bypass_the_cache_while_the_watch_is_down() {
    let (store, control) = flaky::wrap(support::memory().store);
    control.fail_watch_opens(usize::MAX);
    let prefix = format!("{}/items/", support::unique("cache-bypass"));
    let cache = WatchedCache::builder(name("cache-bypass"), store.clone(), prefix.clone())
        .ttl(FOREVER)
        .retry_delay(Duration::from_millis(10))
        .build(text);
    let watch = tokio::spawn(cache.watch_task());
    let count = |result: &str| CACHE_REQUESTS.with_label_values(&[cache.name(), result]).get();
    let put = |value: &'static str| {
        let (store, key) = (store.clone(), format!("{prefix}k"));
        async move { store.write(vec![], vec![Mutation::put(key, value)]).await.unwrap() }
    };

    put("a").await;
    assert_eq!(cache.get("k").await.unwrap().as_deref().map(String::as_str), Some("a"));
    put("b").await;
    // Nothing was cached: the change shows at once, with no watch running.
    assert_eq!(cache.get("k").await.unwrap().as_deref().map(String::as_str), Some("b"));
    assert_eq!(count("bypass"), 2);
    assert_eq!(count("hit") + count("miss"), 0);
    assert!(!cache.is_live());

    control.fail_watch_opens(0);
    tokio::time::timeout(BOUND, cache.wait_for_watch(0)).await.expect("the watch starts");
    assert_eq!(cache.get("k").await.unwrap().as_deref().map(String::as_str), Some("b"));
    assert_eq!(cache.get("k").await.unwrap().as_deref().map(String::as_str), Some("b"));
    assert_eq!(cache.get("none").await.unwrap(), None);
    assert_eq!(cache.get("none").await.unwrap(), None);
    assert_eq!((count("miss"), count("hit"), count("negative_hit")), (2, 1, 1));

    // A cache whose watch task has stopped serves nothing from memory.
    watch.abort();
    let _ = watch.await;
    assert!(!cache.is_live());
    put("c").await;
    assert_eq!(cache.get("k").await.unwrap().as_deref().map(String::as_str), Some("c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_does_not_decode_is_an_internal_error_and_not_cached() {
    for refresh in [false, true] {
        let f = Fixture::start(support::memory().store, "cache-corrupt", refresh).await;
        f.store.write(vec![], vec![Mutation::put(f.key("bad"), vec![0xff, 0xfe])]).await.unwrap();
        for _ in 0..2 {
            match f.cache.get("bad").await {
                Err(ServiceError::Internal(m)) => assert!(m.contains("not UTF-8"), "{m}"),
                other => panic!("expected INTERNAL, got {other:?}"),
            }
        }
        let revision = f.put("bad", "mended").await;
        f.seen(revision).await;
        assert_eq!(f.get("bad").await.as_deref(), Some("mended"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ttl_bounds_staleness_when_an_event_is_lost_without_an_error() {
    let (store, control) = flaky::wrap(support::memory().store);
    let prefix = format!("{}/items/", support::unique("cache-ttl"));
    let cache = WatchedCache::builder(name("cache-ttl"), store.clone(), prefix.clone())
        .ttl(Duration::from_millis(300))
        .negative_ttl(Duration::from_millis(300))
        .build(text);
    let watch = tokio::spawn(cache.watch_task());
    cache.wait_for_watch(0).await;
    let key = format!("{prefix}k");
    store.write(vec![], vec![Mutation::put(key.clone(), "v1")]).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref().map(String::as_str), Some("v1"));
    control.swallow_events(true);
    store.write(vec![], vec![Mutation::put(key, "v2")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cache.get("k").await.unwrap().as_deref().map(String::as_str), Some("v2"));
    watch.abort();
}

use meshwork_test_support::on_every_backend;

on_every_backend!(
    another_writers_changes_are_seen_within_a_bound,
    no_stale_value_after_a_watch_restart,
    a_slow_read_racing_a_change_does_not_cache_the_old_value,
    a_local_write_is_read_at_once_and_never_masks_a_newer_change,
);
