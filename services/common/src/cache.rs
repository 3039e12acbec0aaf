//! A read cache of one key prefix of the Store, kept coherent by the Store's watch: the
//! hot-path cache every service puts in front of point reads (the URL shortener's links first).
//!
//! [`WatchedCache`] answers [`WatchedCache::get`] from a bounded moka cache holding both values
//! and "no such key" (negative entries), each with a time-to-live as a safety net. Its
//! background task ([`WatchedCache::watch_task`], given to `HostedService::builder(..).task(..)`)
//! follows `store.watch(prefix)` and drops (or, with [`WatchedCacheBuilder::refresh_on_change`],
//! replaces) the entry of every key that changes, so another replica's write is seen within the
//! watch's delay rather than the TTL.
//!
//! What keeps it from serving a stale value:
//! - A read that missed fills the cache only if no change of a key in its stripe (1 of 256, by
//!   hash) was applied while it read the Store; otherwise an old value read just before a
//!   change could land after the change's invalidation and stay until its TTL.
//! - Entries remember the version they hold, so a late event never replaces a newer value.
//! - While the watch is not running (before it started, after an error until it is back),
//!   reads bypass the cache and go to the Store. When it fails, the cache is cleared and the
//!   watch restarts after a delay, from the Store's current revision; it is cleared again when
//!   the new watch is up, since changes in between were never seen.
//! - After its own write, a service hands the value and the write's revision to
//!   [`WatchedCache::insert`] (or calls [`WatchedCache::invalidate`] when it has no revision),
//!   so that it reads its own write at once, without waiting for the watch. The value is kept
//!   only when the watch vouches that nothing newer happened to the key.
//!
//! Every lookup is counted in `meshwork_cache_requests_total{cache,result}` with the result
//! `hit`, `negative_hit`, `miss` or `bypass` (the watch was down).

use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_storage::{DynStore, EventKind, WatchEvent};
use meshwork_telemetry::metrics::CACHE_REQUESTS;
use moka::Expiry;
use moka::sync::Cache;
use prometheus::IntCounter;

use crate::error::ServiceResult;
use crate::record::Record;

/// Stripes of the fill guard (see the module docs).
const STRIPES: usize = 256;

/// The fill guard of one stripe of keys (see the module docs).
#[derive(Default)]
struct Stripe {
    /// Changes applied to its keys (by the watch, local writes and resets).
    changes: u64,
    /// No change of its keys after this revision has been applied: the newest change the watch
    /// applied to them, or the revision the current watch started after.
    revision: u64,
}

/// Turns a stored value into the cached type.
type Decoder<V> = Arc<dyn Fn(&[u8]) -> ServiceResult<V> + Send + Sync>;

/// What the cache knows about one key.
struct Slot<V> {
    /// The decoded value, or `None` when the key is absent.
    value: Option<Arc<V>>,
    /// The store version this reflects: the key's version for a value read from the store,
    /// the event's revision for a change seen by the watch, 0 for an absence read.
    version: u64,
}

impl<V> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Slot { value: self.value.clone(), version: self.version }
    }
}

/// Gives values and absences their own time-to-live.
struct SlotExpiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl SlotExpiry {
    fn of<V>(&self, slot: &Slot<V>) -> Option<Duration> {
        Some(if slot.value.is_some() { self.ttl } else { self.negative_ttl })
    }
}

impl<V> Expiry<Vec<u8>, Slot<V>> for SlotExpiry {
    fn expire_after_create(&self, _key: &Vec<u8>, slot: &Slot<V>, _created_at: Instant) -> Option<Duration> {
        self.of(slot)
    }

    fn expire_after_update(
        &self,
        _key: &Vec<u8>,
        slot: &Slot<V>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.of(slot)
    }
}

/// The lookup outcomes, as counted.
struct Outcomes {
    hit: IntCounter,
    negative_hit: IntCounter,
    miss: IntCounter,
    bypass: IntCounter,
}

struct Inner<V> {
    name: &'static str,
    store: DynStore,
    prefix: Vec<u8>,
    /// Id (the key without the prefix) -> what is known of it.
    entries: Cache<Vec<u8>, Slot<V>>,
    /// The fill guards (see the module docs).
    stripes: Box<[Mutex<Stripe>]>,
    hasher: std::collections::hash_map::RandomState,
    /// True while a watch is running (entries may be used and filled).
    live: AtomicBool,
    /// How many times a watch was established.
    starts: tokio::sync::watch::Sender<u64>,
    /// The revision of the last change applied.
    seen: AtomicU64,
    decode: Decoder<V>,
    refresh: bool,
    retry_delay: Duration,
    outcomes: Outcomes,
}

/// A watch-coherent read cache over one key prefix of the Store (see the module docs). Cheap to
/// clone: clones share the cache.
pub struct WatchedCache<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for WatchedCache<V> {
    fn clone(&self) -> Self {
        WatchedCache { inner: self.inner.clone() }
    }
}

impl<V> std::fmt::Debug for WatchedCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedCache")
            .field("name", &self.inner.name)
            .field("prefix", &String::from_utf8_lossy(&self.inner.prefix))
            .field("live", &self.inner.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Configures a [`WatchedCache`] of `V`.
pub struct WatchedCacheBuilder<V> {
    name: &'static str,
    store: DynStore,
    prefix: Vec<u8>,
    capacity: u64,
    ttl: Duration,
    negative_ttl: Duration,
    refresh: bool,
    retry_delay: Duration,
    value: PhantomData<fn() -> V>,
}

impl<V> std::fmt::Debug for WatchedCacheBuilder<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedCacheBuilder")
            .field("name", &self.name)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static> WatchedCacheBuilder<V> {
    /// Sets the most entries (values and absences) held; 10,000 by default.
    pub fn capacity(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self
    }

    /// Sets how long a value is kept without a change being seen; 5 minutes by default. Only
    /// a safety net: changes are seen through the watch.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how long an absence is kept; 2 seconds by default.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// With `true`, a change seen by the watch stores the new value (or the absence) instead
    /// of dropping the entry, so keys are cached as soon as they are written, at the cost of
    /// decoding every value written under the prefix. Off by default.
    pub fn refresh_on_change(mut self, refresh: bool) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets how long the watch task waits before re-opening a failed watch; 500 ms by default.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Returns the cache, decoding stored values with `decode` (whose error is returned by
    /// [`WatchedCache::get`]; a value that fails to decode is never cached).
    pub fn build<F>(self, decode: F) -> WatchedCache<V>
    where
        F: Fn(&[u8]) -> ServiceResult<V> + Send + Sync + 'static,
    {
        let entries = Cache::builder()
            .max_capacity(self.capacity)
            .expire_after(SlotExpiry { ttl: self.ttl, negative_ttl: self.negative_ttl })
            .build();
        let outcome = |result: &str| CACHE_REQUESTS.with_label_values(&[self.name, result]);
        let outcomes = Outcomes {
            hit: outcome("hit"),
            negative_hit: outcome("negative_hit"),
            miss: outcome("miss"),
            bypass: outcome("bypass"),
        };
        WatchedCache {
            inner: Arc::new(Inner {
                name: self.name,
                store: self.store,
                prefix: self.prefix,
                entries,
                stripes: (0..STRIPES).map(|_| Mutex::new(Stripe::default())).collect(),
                hasher: std::collections::hash_map::RandomState::new(),
                live: AtomicBool::new(false),
                starts: tokio::sync::watch::Sender::new(0),
                seen: AtomicU64::new(0),
                decode: Arc::new(decode),
                refresh: self.refresh,
                retry_delay: self.retry_delay,
                outcomes,
            }),
        }
    }

    /// Returns a cache of [`Record`]s, decoded with [`Record::decode`].
    pub fn build_records(self) -> WatchedCache<V>
    where
        V: Record,
    {
        self.build(|bytes| Ok(V::decode(bytes)?))
    }
}

impl<V: Send + Sync + 'static> WatchedCache<V> {
    /// Starts configuring a cache of the keys under `prefix` in `store`; `name` is its
    /// `cache` label in metrics (`urlshortener_links`).
    pub fn builder(name: &'static str, store: DynStore, prefix: impl Into<Vec<u8>>) -> WatchedCacheBuilder<V> {
        WatchedCacheBuilder {
            name,
            store,
            prefix: prefix.into(),
            capacity: 10_000,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(2),
            refresh: false,
            retry_delay: Duration::from_millis(500),
            value: PhantomData,
        }
    }

    /// Returns the value stored under `prefix + id` (decoded), or `None` when there is none:
    /// from the cache when it knows, else from the Store (filling the cache).
    pub async fn get(&self, id: impl AsRef<[u8]>) -> ServiceResult<Option<Arc<V>>> {
        let inner = &*self.inner;
        let id = id.as_ref();
        if !inner.live.load(Ordering::Acquire) {
            inner.outcomes.bypass.inc();
            return Ok(inner.read(id).await?.value);
        }
        if let Some(slot) = inner.entries.get(id) {
            match &slot.value {
                Some(_) => inner.outcomes.hit.inc(),
                None => inner.outcomes.negative_hit.inc(),
            }
            return Ok(slot.value);
        }
        inner.outcomes.miss.inc();
        let stripe = inner.stripe(id);
        let before = inner.lock(stripe).changes;
        let slot = inner.read(id).await?;
        {
            let guard = inner.lock(stripe);
            // Unchanged stripe: no change of this key was applied while it was read, so the
            // value is current as far as the watch knows. `live` is re-checked under the lock,
            // which a failing watch takes (after clearing `live`) to bump every stripe.
            if guard.changes == before && inner.live.load(Ordering::Acquire) {
                inner.entries.insert(id.to_vec(), slot.clone());
            }
        }
        Ok(slot.value)
    }

    /// Records that this service wrote `value` under `prefix + id` at `revision` (what
    /// `Store::write` returned), so that its next read is served from the cache without
    /// waiting for the watch. The value is kept only if the watch can vouch that nothing newer
    /// happened to the key: it is running, and has applied no change of the key's stripe after
    /// `revision`, nor started after it. Otherwise what the cache knows of the key is dropped
    /// (unless newer than `revision`). Either way, a read in flight does not fill the cache.
    pub fn insert(&self, id: impl AsRef<[u8]>, value: V, revision: u64) {
        let inner = &*self.inner;
        let id = id.as_ref();
        let mut guard = inner.lock(inner.stripe(id));
        guard.changes += 1;
        if inner.entries.get(id).is_some_and(|slot| slot.version >= revision) {
            return;
        }
        if inner.live.load(Ordering::Acquire) && revision >= guard.revision {
            inner.entries.insert(id.to_vec(), Slot { value: Some(Arc::new(value)), version: revision });
        } else {
            inner.entries.invalidate(id);
        }
    }

    /// Drops what the cache knows of `prefix + id`. A service calls it after writing the key
    /// when it has no revision for [`WatchedCache::insert`] (a write inside `transact`), so that
    /// its next read sees the write without waiting for the watch; a read already in flight does
    /// not fill the cache with what it read before.
    pub fn invalidate(&self, id: impl AsRef<[u8]>) {
        let inner = &*self.inner;
        let id = id.as_ref();
        inner.lock(inner.stripe(id)).changes += 1;
        inner.entries.invalidate(id);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.inner.reset(0);
    }

    /// Returns the task that follows the Store's watch and keeps the cache coherent, for
    /// `HostedService::builder(..).task(..)`. It runs until aborted, re-opening the watch after
    /// errors; without it running, every read goes to the Store. One task per cache.
    pub fn watch_task(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move { inner.follow().await }
    }

    /// Returns true while the watch is running (reads may be served from the cache).
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Returns how many times the watch task has opened the watch (1 after it started, one
    /// more after each restart).
    pub fn watch_starts(&self) -> u64 {
        *self.inner.starts.borrow()
    }

    /// Waits until the watch has been opened more than `starts` times (`0`: until it first is).
    pub async fn wait_for_watch(&self, starts: u64) {
        let mut rx = self.inner.starts.subscribe();
        // The sender lives in `inner`, which `self` holds: the wait cannot fail.
        let _ = rx.wait_for(|n| *n > starts).await;
    }

    /// Returns the revision of the last change the watch applied (0 before the first): every
    /// change up to it is reflected in what [`WatchedCache::get`] returns.
    pub fn seen_revision(&self) -> u64 {
        self.inner.seen.load(Ordering::Acquire)
    }

    /// Returns the metric name of the cache.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }
}

impl<V: Send + Sync + 'static> Inner<V> {
    fn stripe(&self, id: &[u8]) -> &Mutex<Stripe> {
        &self.stripes[(self.hasher.hash_one(id) % STRIPES as u64) as usize]
    }

    fn lock<'a>(&self, stripe: &'a Mutex<Stripe>) -> MutexGuard<'a, Stripe> {
        // Two counters cannot be left half-updated: a poisoned lock is still usable.
        stripe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `prefix + id` from the store.
    async fn read(&self, id: &[u8]) -> ServiceResult<Slot<V>> {
        let mut key = Vec::with_capacity(self.prefix.len() + id.len());
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(id);
        Ok(match self.store.get(&key).await? {
            Some(stored) => Slot { value: Some(Arc::new((self.decode)(&stored.value)?)), version: stored.version },
            None => Slot { value: None, version: 0 },
        })
    }

    /// Bumps every stripe (so that no read in flight fills the cache), raises every stripe's
    /// revision to at least `floor` (local writes older than it are not trusted) and drops every
    /// entry.
    fn reset(&self, floor: u64) {
        for stripe in self.stripes.iter() {
            let mut guard = self.lock(stripe);
            guard.changes += 1;
            guard.revision = guard.revision.max(floor);
        }
        self.entries.invalidate_all();
    }

    /// Applies one change seen by the watch.
    fn apply(&self, event: WatchEvent) {
        let Some(id) = event.key.strip_prefix(self.prefix.as_slice()) else {
            return;
        };
        // Decoded before taking the lock; a value that does not decode is dropped, and the
        // next read reports the error.
        let replacement = match (self.refresh, event.kind) {
            (false, _) => None,
            (true, EventKind::Delete) => Some(Slot { value: None, version: event.revision }),
            (true, EventKind::Put) => match (self.decode)(&event.value) {
                Ok(value) => Some(Slot { value: Some(Arc::new(value)), version: event.revision }),
                Err(e) => {
                    tracing::warn!(cache = self.name, error = %e, "cannot decode a changed value; dropping its entry");
                    None
                }
            },
        };
        {
            let mut guard = self.lock(self.stripe(id));
            guard.changes += 1;
            guard.revision = guard.revision.max(event.revision);
            // An entry at this version or later already reflects the change.
            if self.entries.get(id).is_none_or(|slot| slot.version < event.revision) {
                match replacement {
                    Some(slot) => self.entries.insert(id.to_vec(), slot),
                    None => self.entries.invalidate(id),
                }
            }
        }
        self.seen.fetch_max(event.revision, Ordering::Release);
    }

    /// Opens a watch of every change after the store's current revision, and returns that
    /// revision with it.
    async fn open(&self) -> ServiceResult<(u64, BoxStream<'static, meshwork_storage::Result<WatchEvent>>)> {
        let after = self.store.current_revision().await?;
        Ok((after, self.store.watch(&self.prefix, Some(after + 1)).await?))
    }

    /// Follows the watch forever, re-opening it after errors.
    async fn follow(self: Arc<Self>) {
        let prefix = String::from_utf8_lossy(&self.prefix).into_owned();
        let _stopped = NotLiveOnDrop(&self.live);
        loop {
            match self.open().await {
                Ok((after, mut events)) => {
                    // Changes made while no watch ran were never seen.
                    self.reset(after);
                    self.live.store(true, Ordering::Release);
                    self.starts.send_modify(|n| *n += 1);
                    tracing::debug!(cache = self.name, prefix = %prefix, "cache watch started");
                    loop {
                        match events.next().await {
                            Some(Ok(event)) => self.apply(event),
                            Some(Err(e)) => {
                                tracing::warn!(
                                    cache = self.name,
                                    prefix = %prefix,
                                    error = %e,
                                    "cache watch failed; clearing the cache and restarting"
                                );
                                break;
                            }
                            None => {
                                tracing::warn!(
                                    cache = self.name,
                                    prefix = %prefix,
                                    "cache watch ended; clearing the cache and restarting"
                                );
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(cache = self.name, prefix = %prefix, error = %e, "cannot watch; retrying"),
            }
            // From here on changes may be missed: stop serving and filling, then forget.
            self.live.store(false, Ordering::Release);
            self.reset(0);
            tokio::time::sleep(self.retry_delay).await;
        }
    }
}

/// Marks the cache not live when the watch task ends or is aborted, so that a cache whose
/// watch no longer runs stops serving entries.
struct NotLiveOnDrop<'a>(&'a AtomicBool);

impl Drop for NotLiveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
