//! The read caches of the home timeline, each kept coherent by the Store's watch in the way
//! of the kit's `WatchedCache` (which caches single keys; these cache what several keys under
//! one entity's prefix add up to: a post with its counter shards, an author's newest ids, the
//! celebrities a user follows, and the set of pulled authors):
//!
//! - [`NewestCache`]: author -> its newest [`NEWEST_KEPT`] post ids, for the pulls of
//!   celebrities' posts; dropped on any change under `timeline/by-author/<author>/`, and by
//!   this replica right after it writes a pulled post.
//! - [`FollowedCelebsCache`]: user -> the celebrities it follows, for the current celebrity
//!   set (recomputed when the set differs); dropped on any change under
//!   `timeline/following/<user>/`, and by this replica right after its own Follow and Unfollow.
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

use std::hash::{Hash, Hasher};
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

/// A map from a key to what the Store holds for it, kept coherent by the watch of a prefix:
/// every change under the prefix drops the entry of the key it belongs to (`key_of`), and the
/// fill guard (a change counter per stripe of keys) keeps a read that raced a change from
/// filling the map. Bypassed while its watch is not running. See the module docs.
pub struct WatchedMap<K, V> {
    entries: moka::sync::Cache<K, V>,
    /// Changes applied per stripe of keys (the fill guard).
    stripes: Box<[Mutex<u64>]>,
    live: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    prefix: Vec<u8>,
    key_of: fn(&[u8]) -> Option<K>,
}

impl<K, V> std::fmt::Debug for WatchedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedMap")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K, V> Invalidate for WatchedMap<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn changed(&self, key: &[u8]) {
        if let Some(k) = (self.key_of)(key) {
            self.invalidate(&k);
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

impl<K, V> WatchedMap<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A map of at most `capacity` entries over the keys under `prefix`, each kept at most `ttl`.
    pub fn new(prefix: Vec<u8>, key_of: fn(&[u8]) -> Option<K>, capacity: u64, ttl: Duration) -> Self {
        WatchedMap {
            entries: moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            live: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            prefix,
            key_of,
        }
    }

    fn stripe(&self, key: &K) -> &Mutex<u64> {
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        &self.stripes[(h.finish() >> 56) as usize % STRIPES]
    }

    /// Returns the task that keeps the map coherent (one per map).
    pub fn watch_task(self: &Arc<Self>, store: DynStore) -> impl Future<Output = ()> + Send + 'static {
        let cache: Arc<dyn Invalidate> = self.clone();
        follow(store, self.prefix.clone(), cache)
    }

    /// Returns true while the watch runs (reads may be served from the map).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Returns (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Drops what the map knows of `key`; a read in flight does not fill it afterwards.
    pub fn invalidate(&self, key: &K) {
        let mut guard = lock(self.stripe(key));
        *guard += 1;
        self.entries.invalidate(key);
    }

    /// Returns the value of every key, in the order given: cached ones from the map, the
    /// others by `load` (each read once, concurrently), which then fill the map.
    pub async fn get_many<Q, F, Fut>(&self, keys: &[Q], load: F) -> ServiceResult<Vec<V>>
    where
        Q: std::borrow::Borrow<K>,
        K: Clone,
        F: Fn(K) -> Fut,
        Fut: Future<Output = ServiceResult<V>>,
    {
        let live = self.is_live();
        let mut found: Vec<Option<V>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let hit = if live { self.entries.get(key.borrow()) } else { None };
            if hit.is_none() {
                missing.push(i);
            }
            found.push(hit);
        }
        self.hits.fetch_add((keys.len() - missing.len()) as u64, Ordering::Relaxed);
        self.misses.fetch_add(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let before: Vec<u64> = missing.iter().map(|i| *lock(self.stripe(keys[*i].borrow()))).collect();
            let loaded = futures::future::try_join_all(missing.iter().map(|i| load(keys[*i].borrow().clone()))).await?;
            for ((i, seen), value) in missing.iter().zip(before).zip(loaded) {
                let key = keys[*i].borrow();
                let guard = lock(self.stripe(key));
                // No change of this stripe while it was read: the value is current as far as
                // the watch knows (`live` re-checked under the lock a reset takes).
                if *guard == seen && self.live.load(Ordering::Acquire) {
                    self.entries.insert(key.clone(), value.clone());
                }
                drop(guard);
                found[*i] = Some(value);
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Returns the value of `key`: cached, or from `load` (which then fills the map).
    pub async fn get<F, Fut>(&self, key: &K, load: F) -> ServiceResult<V>
    where
        K: Clone,
        F: Fn(K) -> Fut,
        Fut: Future<Output = ServiceResult<V>>,
    {
        let mut values = self.get_many(std::slice::from_ref(key), load).await?;
        Ok(values.pop().expect("get_many answers one value per key"))
    }
}

/// Post id -> the post as the wire has it (record, like and repost counts), or its absence.
pub type PostCache = WatchedMap<u64, Option<Arc<pb::Post>>>;

/// Returns the post cache (changes under `timeline/posts/<id>`: the record, a counter shard).
pub fn post_cache() -> PostCache {
    WatchedMap::new(b"timeline/posts/".to_vec(), keys::post_id_of_key, POST_CAPACITY, POST_TTL)
}

/// An author's newest post ids (newest first), and whether they are all the author has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    pub ids: Vec<u64>,
    pub complete: bool,
}

/// How many of an author's newest post ids [`NewestCache`] keeps.
pub const NEWEST_KEPT: usize = 64;

/// Author -> [`Newest`]: the pulls of celebrities' posts at read time (changes under
/// `timeline/by-author/<author>/`).
pub type NewestCache = WatchedMap<String, Arc<Newest>>;

/// Returns the cache of authors' newest post ids.
pub fn newest_cache() -> NewestCache {
    WatchedMap::new(b"timeline/by-author/".to_vec(), |key| segment_after(key, b"timeline/by-author/"), 50_000, POST_TTL)
}

/// User -> (the celebrity set it was computed for, the celebrities of it the user follows)
/// (changes under `timeline/following/<user>/`).
pub type FollowedCelebsCache = WatchedMap<String, Arc<(Arc<Vec<String>>, Vec<String>)>>;

/// Returns the cache of the celebrities each user follows.
pub fn followed_celebs_cache() -> FollowedCelebsCache {
    WatchedMap::new(
        b"timeline/following/".to_vec(),
        |key| segment_after(key, b"timeline/following/"),
        100_000,
        POST_TTL,
    )
}

/// The path segment right after `prefix` in `key`.
fn segment_after(key: &[u8], prefix: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(prefix)?;
    let end = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// The authors whose posts are pulled at read time (`timeline/celebs/`): one entry, which any
/// change there drops; the next read scans again.
pub type CelebCache = WatchedMap<(), Arc<Vec<String>>>;

/// Returns the cache of the celebrity set.
pub fn celeb_cache() -> CelebCache {
    WatchedMap::new(keys::celebs_prefix(), |_| Some(()), 1, POST_TTL)
}
