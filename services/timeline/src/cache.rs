//! The read caches of the home timeline, each kept coherent by the Store's watch in the way
//! of the kit's `WatchedCache` (which caches single keys; these cache a post with its counter
//! shards, and the set of pulled authors):
//!
//! - [`PostCache`]: post id -> the post as the wire has it (record, like and repost counts),
//!   or its absence. Every change under `timeline/posts/<id>` (the record, a counter shard)
//!   seen by the watch drops the entry, and this replica drops it itself right after its own
//!   Like, Unlike, Repost and DeletePost commit, so a replica reads its own writes at once.
//!   Another replica's like or delete shows here once the watch delivers it (milliseconds);
//!   the entries' time-to-live ([`POST_TTL`]) bounds that should a watch stall without failing.
//! - [`CelebCache`]: the authors whose posts are pulled at read time (`timeline/celebs/`).
//!   Any change there drops it; the next read scans again.
//!
//! Both bypass the cache while their watch is not running (before it starts, and after a
//! failure until it is back, when they are cleared), and a read that missed fills the cache
//! only if no change of its key was applied while it read the Store (a change counter per
//! stripe of keys, checked under the stripe's lock), so an old value read just before a
//! change cannot land after the change's invalidation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::error::ServiceResult;
use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::DynStore;

use crate::keys;

/// How long a cached post is kept without a change being seen: only a safety net for a watch
/// that stalls without failing; changes are seen through the watch.
pub const POST_TTL: Duration = Duration::from_secs(10);

/// Posts a replica keeps.
const POST_CAPACITY: u64 = 200_000;

/// Stripes of the fill guard.
const STRIPES: usize = 256;

/// How long a failed watch waits before it is opened again.
const RETRY_DELAY: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a cache does with a change its watch saw.
trait Invalidate: Send + Sync + 'static {
    /// Drops what the change at `key` made stale.
    fn changed(&self, key: &[u8]);
    /// Drops everything (the watch stopped or restarted: changes may have been missed).
    fn reset(&self);
    /// Whether reads may use and fill the cache.
    fn live(&self) -> &AtomicBool;
}

/// Follows the watch of `prefix` forever, re-opening it after errors (the cache is not live
/// and is cleared while none runs).
async fn follow(store: DynStore, prefix: Vec<u8>, cache: Arc<dyn Invalidate>) {
    loop {
        let opened = async {
            let after = store.current_revision().await?;
            store.watch(&prefix, Some(after + 1)).await
        }
        .await;
        match opened {
            Ok(mut events) => {
                cache.reset();
                cache.live().store(true, Ordering::Release);
                loop {
                    match events.next().await {
                        Some(Ok(event)) => cache.changed(&event.key),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "timeline cache watch failed; clearing and restarting");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "timeline cache cannot watch; retrying"),
        }
        cache.live().store(false, Ordering::Release);
        cache.reset();
        tokio::time::sleep(RETRY_DELAY).await;
    }
}

/// Post id -> the post (with its counts) or its absence; see the module docs.
pub struct PostCache {
    entries: moka::sync::Cache<u64, Option<Arc<pb::Post>>>,
    /// Changes applied per stripe of ids (the fill guard).
    stripes: Box<[Mutex<u64>]>,
    live: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for PostCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostCache").field("live", &self.live.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Default for PostCache {
    fn default() -> Self {
        PostCache {
            entries: moka::sync::Cache::builder().max_capacity(POST_CAPACITY).time_to_live(POST_TTL).build(),
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            live: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl Invalidate for PostCache {
    fn changed(&self, key: &[u8]) {
        if let Some(id) = keys::post_id_of_key(key) {
            self.invalidate(id);
        }
    }

    fn reset(&self) {
        for stripe in self.stripes.iter() {
            *lock(stripe) += 1;
        }
        self.entries.invalidate_all();
    }

    fn live(&self) -> &AtomicBool {
        &self.live
    }
}

impl PostCache {
    fn stripe(&self, id: u64) -> &Mutex<u64> {
        &self.stripes[(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % STRIPES]
    }

    /// Returns the task that keeps the cache coherent (one per cache).
    pub fn watch_task(self: &Arc<Self>, store: DynStore) -> impl Future<Output = ()> + Send + 'static {
        let cache: Arc<dyn Invalidate> = self.clone();
        follow(store, b"timeline/posts/".to_vec(), cache)
    }

    /// Returns true while the watch runs (reads may be served from the cache).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Returns (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Drops what the cache knows of post `id`; a read in flight does not fill it afterwards.
    pub fn invalidate(&self, id: u64) {
        let mut guard = lock(self.stripe(id));
        *guard += 1;
        self.entries.invalidate(&id);
    }

    /// Returns the posts of `ids` that exist, in the order given: cached ones from the cache,
    /// the others by `load` (each read once, concurrently), which then fill the cache.
    pub async fn get_many<F, Fut>(&self, ids: &[u64], load: F) -> ServiceResult<Vec<pb::Post>>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = ServiceResult<Option<pb::Post>>>,
    {
        let live = self.is_live();
        let mut found: Vec<Option<Option<Arc<pb::Post>>>> = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let hit = if live { self.entries.get(id) } else { None };
            if hit.is_none() {
                missing.push(i);
            }
            found.push(hit);
        }
        self.hits.fetch_add((ids.len() - missing.len()) as u64, Ordering::Relaxed);
        self.misses.fetch_add(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let before: Vec<u64> = missing.iter().map(|i| *lock(self.stripe(ids[*i]))).collect();
            let loaded = futures::future::try_join_all(missing.iter().map(|i| load(ids[*i]))).await?;
            for ((i, seen), post) in missing.iter().zip(before).zip(loaded) {
                let (id, post) = (ids[*i], post.map(Arc::new));
                let guard = lock(self.stripe(id));
                // No change of this stripe while it was read: the value is current as far as
                // the watch knows (`live` re-checked under the lock a reset takes).
                if *guard == seen && self.live.load(Ordering::Acquire) {
                    self.entries.insert(id, post.clone());
                }
                drop(guard);
                found[*i] = Some(post);
            }
        }
        Ok(found.into_iter().flatten().flatten().map(|p| (*p).clone()).collect())
    }
}

/// The authors whose posts are pulled at read time; see the module docs.
#[derive(Debug, Default)]
pub struct CelebCache {
    /// The set as last scanned, and the change count it was scanned at.
    set: Mutex<Option<Arc<Vec<String>>>>,
    changes: Mutex<u64>,
    live: AtomicBool,
}

impl Invalidate for CelebCache {
    fn changed(&self, _key: &[u8]) {
        self.reset();
    }

    fn reset(&self) {
        let mut changes = lock(&self.changes);
        *changes += 1;
        *lock(&self.set) = None;
    }

    fn live(&self) -> &AtomicBool {
        &self.live
    }
}

impl CelebCache {
    /// Returns the task that keeps the set coherent.
    pub fn watch_task(self: &Arc<Self>, store: DynStore) -> impl Future<Output = ()> + Send + 'static {
        let cache: Arc<dyn Invalidate> = self.clone();
        follow(store, keys::celebs_prefix(), cache)
    }

    /// Drops the set (after this replica wrote a marker).
    pub fn invalidate(&self) {
        self.reset();
    }

    /// Returns the set: cached, or from `load` (which then fills the cache).
    pub async fn get<F, Fut>(&self, load: F) -> ServiceResult<Arc<Vec<String>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ServiceResult<Vec<String>>>,
    {
        if self.live.load(Ordering::Acquire)
            && let Some(set) = lock(&self.set).clone()
        {
            return Ok(set);
        }
        let before = *lock(&self.changes);
        let set = Arc::new(load().await?);
        let changes = lock(&self.changes);
        if *changes == before && self.live.load(Ordering::Acquire) {
            *lock(&self.set) = Some(set.clone());
        }
        drop(changes);
        Ok(set)
    }
}
