//! Counters that cost nothing on the hot path: increments add up in memory and a flush writes
//! the accumulated deltas to the Store in batches (click analytics, view counts, install
//! counts). Generic over the counter key; the caller says how a key maps to a Store key.
//!
//! [`BatchedCounters::add`] takes one lock of one shard (of several, by the key's hash, so
//! concurrent callers rarely meet). A flush takes every delta out of memory and adds each to
//! its stored count (a big-endian `u64`) by read-modify-write transactions ([`transact`]: safe
//! with any number of replicas on one store), as few of them as the backend allows: each
//! counter costs one condition and one put, so etcd's 128 operations per transaction hold 64
//! counters. A chunk that fails goes back to memory and is written first by the next flush,
//! so an increment that [`BatchedCounters::add`] accepted is never lost while the process lives
//! and never counted twice, except when the Store fails a write whose outcome it cannot tell
//! (a timeout after sending it): that chunk is written again. Increments made since the last
//! flush are lost if the process is killed: give [`BatchedCounters::flush_task`] and
//! [`BatchedCounters::shutdown_hook`] to the service's builder so that they are flushed every
//! interval and when the server stops.
//!
//! Flushes of one counter set run one at a time, and each runs in a task of its own, so a
//! caller that gives up on one (a cancelled request) cannot lose the deltas it had taken. When
//! [`BatchedCounters::flush`] returns `Ok`, every increment made before it was called is stored.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{BoxFuture, try_join_all};
use meshwork_storage::{DynStore, Limits, transact};

use crate::error::{ServiceError, ServiceResult};

/// Maps a counter key to its Store key.
type KeyOf<K> = Arc<dyn Fn(&K) -> Vec<u8> + Send + Sync>;

/// Returns the stored form of a count: 8 bytes, big-endian.
pub fn encode_count(count: u64) -> Vec<u8> {
    count.to_be_bytes().to_vec()
}

/// Reads a stored count; anything but 8 bytes is corrupt (INTERNAL).
pub fn decode_count(value: &[u8]) -> ServiceResult<u64> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| ServiceError::Internal(format!("corrupt counter: {} bytes instead of 8", value.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Counters updated.
    pub counters: usize,
    /// Store transactions committed.
    pub writes: usize,
}

struct Inner<K> {
    name: &'static str,
    store: DynStore,
    key_of: KeyOf<K>,
    shards: Box<[Mutex<HashMap<K, u64>>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Deltas whose write failed, written first by the next flush.
    retry: Mutex<HashMap<K, u64>>,
    /// One flush at a time.
    flushing: tokio::sync::Mutex<()>,
}

/// A set of counters buffered in memory and flushed to the Store in batches (see the module
/// docs). Cheap to clone: clones share the counters.
pub struct BatchedCounters<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for BatchedCounters<K> {
    fn clone(&self) -> Self {
        BatchedCounters { inner: self.inner.clone() }
    }
}

impl<K> std::fmt::Debug for BatchedCounters<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedCounters").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

/// Locks a map of deltas; plain numbers stay usable after a panic elsewhere.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `delta` to `key` in `map`.
fn merge<K: Hash + Eq>(map: &mut HashMap<K, u64>, key: K, delta: u64) {
    let n = map.entry(key).or_insert(0);
    *n = n.saturating_add(delta);
}

impl<K> BatchedCounters<K>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// Returns counters kept in `store`, each under the key `key_of` gives it; `name` appears
    /// in logs.
    pub fn new(name: &'static str, store: DynStore, key_of: impl Fn(&K) -> Vec<u8> + Send + Sync + 'static) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(4);
        let shards = (cores * 4).next_power_of_two().clamp(4, 64);
        BatchedCounters {
            inner: Arc::new(Inner {
                name,
                store,
                key_of: Arc::new(key_of),
                shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: std::collections::hash_map::RandomState::new(),
                retry: Mutex::new(HashMap::new()),
                flushing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Adds `delta` to the counter `key`, in memory.
    pub fn add(&self, key: K, delta: u64) {
        if delta == 0 {
            return;
        }
        let shard = (self.inner.hasher.hash_one(&key) as usize) % self.inner.shards.len();
        merge(&mut lock(&self.inner.shards[shard]), key, delta);
    }

    /// Returns how many counters have deltas not yet stored.
    pub fn pending(&self) -> usize {
        let mut keys: usize = self.inner.shards.iter().map(|s| lock(s).len()).sum();
        keys += lock(&self.inner.retry).len();
        keys
    }

    /// Returns the stored count of `key` (without its deltas not yet flushed).
    pub async fn stored(&self, key: &K) -> ServiceResult<u64> {
        match self.inner.store.get(&(self.inner.key_of)(key)).await? {
            Some(v) => decode_count(&v.value),
            None => Ok(0),
        }
    }

    /// Writes every delta to the Store. What could not be written stays in memory for the next
    /// flush, and the first error is returned.
    pub async fn flush(&self) -> ServiceResult<Flushed> {
        self.flush_where(|_| true).await
    }

    /// Writes the deltas of the counters `select` picks (those of one link before reading its
    /// stats), after any flush already running.
    pub async fn flush_where(&self, select: impl Fn(&K) -> bool + Send + 'static) -> ServiceResult<Flushed> {
        let inner = self.inner.clone();
        // In a task of its own: a caller dropping this future must not drop taken deltas.
        match tokio::spawn(async move { inner.flush(select).await }).await {
            Ok(result) => result,
            Err(e) => Err(ServiceError::Internal(format!("{} counter flush stopped: {e}", self.inner.name))),
        }
    }

    /// Returns the task that flushes every `interval`, for `HostedService::builder(..).task(..)`.
    /// Aborting it never loses deltas (a flush it started finishes on its own).
    pub fn flush_task(&self, interval: Duration) -> impl Future<Output = ()> + Send + 'static {
        let counters = self.clone();
        async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; there is nothing to flush yet.
            tick.tick().await;
            loop {
                tick.tick().await;
                // A failed flush is logged and its deltas kept for the next tick.
                let _ = counters.flush().await;
            }
        }
    }

    /// Returns the hook that flushes what is left when the server stops, for
    /// `HostedService::builder(..).on_shutdown(..)`.
    pub fn shutdown_hook(&self) -> impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static {
        let counters = self.clone();
        move || {
            Box::pin(async move {
                match counters.flush().await {
                    Ok(done) => {
                        tracing::info!(counters = counters.inner.name, written = done.counters, "counters flushed")
                    }
                    Err(e) => tracing::error!(
                        counters = counters.inner.name,
                        error = %e,
                        unflushed = counters.pending(),
                        "could not flush counters on shutdown; their latest increments are lost"
                    ),
                }
            })
        }
    }
}

impl<K> Inner<K>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    async fn flush(&self, select: impl Fn(&K) -> bool) -> ServiceResult<Flushed> {
        let _one_at_a_time = self.flushing.lock().await;
        let mut taken: HashMap<K, u64> = lock(&self.retry).extract_if(|k, _| select(k)).collect();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            for (key, delta) in shard.extract_if(|k, _| select(k)) {
                merge(&mut taken, key, delta);
            }
        }
        // (counter, its store key, delta)
        let mut pending: Vec<(K, Vec<u8>, u64)> = taken
            .into_iter()
            .map(|(key, delta)| {
                let store_key = (self.key_of)(&key);
                (key, store_key, delta)
            })
            .collect();
        let mut done = Flushed::default();
        let mut first_error = None;
        while !pending.is_empty() {
            let size = chunk_len(&self.store.limits(), &pending);
            let rest = pending.split_off(size);
            let chunk = std::mem::replace(&mut pending, rest);
            match self.write(&chunk).await {
                Ok(()) => {
                    done.counters += chunk.len();
                    done.writes += 1;
                }
                Err(e) if is_retryable(&e) || chunk.len() == 1 => {
                    // The store is in trouble (or this one counter cannot be written): keep
                    // everything not yet written for the next flush.
                    tracing::warn!(
                        counters = self.name,
                        error = %e,
                        unflushed = chunk.len() + pending.len(),
                        "counter flush failed; keeping the deltas for the next flush"
                    );
                    self.requeue(chunk);
                    if is_retryable(&e) {
                        self.requeue(std::mem::take(&mut pending));
                    }
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    // Something in this chunk cannot be written (a corrupt count, a key over a
                    // limit): write its counters one by one so that only the bad one waits.
                    tracing::warn!(
                        counters = self.name,
                        error = %e,
                        "counter chunk refused; writing its counters one by one"
                    );
                    let mut singles = chunk.into_iter().map(|c| vec![c]).collect::<Vec<_>>();
                    while let Some(single) = singles.pop() {
                        match self.write(&single).await {
                            Ok(()) => {
                                done.counters += 1;
                                done.writes += 1;
                            }
                            Err(e) => {
                                tracing::warn!(
                                    counters = self.name,
                                    error = %e,
                                    key = %String::from_utf8_lossy(&single[0].1),
                                    "counter cannot be written; keeping its delta"
                                );
                                self.requeue(single);
                                if is_retryable(&e) {
                                    self.requeue(singles.drain(..).flatten().collect());
                                    self.requeue(std::mem::take(&mut pending));
                                }
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Puts deltas back for the next flush.
    fn requeue(&self, deltas: Vec<(K, Vec<u8>, u64)>) {
        if deltas.is_empty() {
            return;
        }
        let mut retry = lock(&self.retry);
        for (key, _, delta) in deltas {
            merge(&mut retry, key, delta);
        }
    }

    /// Adds each delta to its stored count, in one transaction.
    async fn write(&self, chunk: &[(K, Vec<u8>, u64)]) -> ServiceResult<()> {
        transact(&self.store, |tx| {
            Box::pin(async move {
                let current = try_join_all(chunk.iter().map(|(_, key, _)| tx.get(key))).await?;
                for ((_, key, delta), stored) in chunk.iter().zip(current) {
                    let count = match stored {
                        Some(v) => decode_count(&v.value)?,
                        None => 0,
                    };
                    tx.put(key.clone(), encode_count(count.saturating_add(*delta)));
                }
                Ok::<_, ServiceError>(())
            })
        })
        .await
    }
}

/// Returns true for errors after which the Store may accept the same write later.
fn is_retryable(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Aborted(_) | ServiceError::Unavailable(_) | ServiceError::DeadlineExceeded(_))
}

/// Returns how many of the first counters of `pending` fit one write: each costs a condition
/// and a put (two operations, its key twice and 8 bytes of value). At least one.
fn chunk_len<K>(limits: &Limits, pending: &[(K, Vec<u8>, u64)]) -> usize {
    let max_counters = (limits.max_ops_per_write / 2).max(1);
    let mut bytes = 0usize;
    let mut n = 0;
    for (_, key, _) in pending.iter().take(max_counters) {
        bytes += 2 * key.len() + 8;
        if n > 0 && bytes > limits.max_write_bytes {
            break;
        }
        n += 1;
    }
    n.max(1).min(pending.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_operations_and_bytes() {
        let etcd = Limits { max_ops_per_write: 128, max_write_bytes: 1 << 20, max_key_bytes: 4096 };
        let small: Vec<((), Vec<u8>, u64)> = (0..200).map(|i| ((), format!("k{i:03}").into_bytes(), 1)).collect();
        assert_eq!(chunk_len(&etcd, &small), 64);
        assert_eq!(chunk_len(&etcd, &small[..10]), 10);
        let etcd = Limits { max_write_bytes: 1000, ..etcd };
        // 2 * 100 + 8 = 208 bytes each: four fit in 1000.
        let big: Vec<((), Vec<u8>, u64)> = (0..10).map(|_| ((), vec![b'k'; 100], 1)).collect();
        assert_eq!(chunk_len(&etcd, &big), 4);
        // A counter larger than the limit still goes alone (and its write reports the limit).
        let huge = vec![((), vec![b'k'; 600], 1)];
        assert_eq!(chunk_len(&etcd, &huge), 1);
    }

    #[test]
    fn counts_decode_strictly() {
        assert_eq!(decode_count(&encode_count(42)).unwrap(), 42);
        assert!(matches!(decode_count(b"4"), Err(ServiceError::Internal(_))));
    }
}
