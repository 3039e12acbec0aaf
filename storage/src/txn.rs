//! Read-modify-write on top of [`Store::write`], in the pattern of etcd's STM: reads record
//! the version they saw, writes are buffered, and the commit is one conditional write that
//! holds only if nothing read has changed since. Conflicts retry with jittered backoff.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use rand::Rng;

use crate::{Condition, DynStore, Mutation, Result, StoreError, Versioned};

/// A read-modify-write transaction: reads go to the store and are remembered, writes are
/// buffered until [`Txn::commit`]. Cloning gives another handle to the same transaction (so
/// that a [`transact`] body can own one while the helper keeps one to commit).
#[derive(Clone)]
pub struct Txn {
    store: DynStore,
    state: Arc<Mutex<TxState>>,
}

#[derive(Default)]
struct TxState {
    /// Key -> version seen (`None` = seen absent).
    reads: BTreeMap<Vec<u8>, Option<u64>>,
    writes: BTreeMap<Vec<u8>, Mutation>,
    extra: Vec<Condition>,
    /// Set when a read saw the snapshot go stale; the attempt must be retried.
    stale: bool,
    /// Guards kept until the commit is done (see [`Txn::hold`]), by tag.
    held: Vec<(Vec<u8>, Box<dyn std::any::Any + Send>)>,
}

impl Txn {
    /// Starts a transaction on `store`.
    pub fn new(store: DynStore) -> Self {
        Txn { store, state: Arc::new(Mutex::new(TxState::default())) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TxState> {
        // The lock is never held across an await or a user callback, so poisoning can only
        // come from a panic in this module's own bookkeeping; the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the value of `key` as this transaction sees it (its own buffered writes first).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        if let Some(m) = self.state().writes.get(key) {
            return Ok(match m {
                Mutation::Put { value, .. } => Some(Versioned { value: value.clone(), version: 0 }),
                Mutation::Delete { .. } => None,
            });
        }
        let got = self.store.get(key).await?;
        let seen_now = got.as_ref().map(|v| v.version);
        let mut state = self.state();
        match state.reads.get(key) {
            // A second read of the same key must agree with the first, or the snapshot is
            // already stale: fail fast so the transaction retries.
            Some(seen) if *seen != seen_now => {
                state.stale = true;
                return Err(StoreError::conflict(key));
            }
            _ => {}
        }
        state.reads.insert(key.to_vec(), seen_now);
        Ok(got)
    }

    /// Buffers a put of `value` under `key`.
    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let key = key.into();
        self.state().writes.insert(key.clone(), Mutation::Put { key, value: value.into(), ttl: None });
    }

    /// Buffers a put that expires after `ttl`.
    pub fn put_with_ttl(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, ttl: Duration) {
        let key = key.into();
        self.state().writes.insert(key.clone(), Mutation::Put { key, value: value.into(), ttl: Some(ttl) });
    }

    /// Buffers a delete of `key`.
    pub fn delete(&self, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.state().writes.insert(key.clone(), Mutation::Delete { key });
    }

    /// Adds a condition beyond the recorded reads (e.g. a key this transaction did not read
    /// must still be absent).
    pub fn require(&self, condition: Condition) {
        self.state().extra.push(condition);
    }

    /// Keeps `guard` (a lock guard) until this transaction's commit is done or the
    /// transaction is dropped, so that what the lock protects stays locked through the commit.
    /// `tag` names the lock for [`Txn::holds`]. Used to queue, inside one process, writers that
    /// would otherwise conflict on one key (an event log's head) and retry.
    pub fn hold(&self, tag: &[u8], guard: Box<dyn std::any::Any + Send>) {
        self.state().held.push((tag.to_vec(), guard));
    }

    /// Returns true when this transaction holds a guard tagged `tag`.
    pub fn holds(&self, tag: &[u8]) -> bool {
        self.state().held.iter().any(|(t, _)| t == tag)
    }

    /// Returns true when a read found the snapshot stale (the attempt must be retried).
    pub fn is_stale(&self) -> bool {
        self.state().stale
    }

    /// Commits: one conditional write whose conditions are every read's version.
    /// Returns the new revision, or 0 when there was nothing to check or write.
    pub async fn commit(&self) -> Result<u64> {
        let (conditions, mutations) = {
            let mut state = self.state();
            let mut conditions: Vec<Condition> = std::mem::take(&mut state.reads)
                .into_iter()
                .map(|(key, seen)| match seen {
                    Some(version) => Condition::Version(key, version),
                    None => Condition::Absent(key),
                })
                .collect();
            conditions.append(&mut state.extra);
            let mutations: Vec<Mutation> = std::mem::take(&mut state.writes).into_values().collect();
            (conditions, mutations)
        };
        let result = if mutations.is_empty() && conditions.is_empty() {
            Ok(0)
        } else {
            self.store.write(conditions, mutations).await
        };
        // The write is done: let the next writer in (dropped outside the state's lock).
        let held = std::mem::take(&mut self.state().held);
        drop(held);
        result
    }
}

/// How [`transact_with`] retries conflicts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 64,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(100),
        }
    }
}

/// Runs `body` as a read-modify-write transaction with the default [`RetryPolicy`].
///
/// `body` gets a handle to a fresh [`Txn`] each attempt and returns a boxed future (so that it
/// may borrow from its caller and stay `Send`):
/// `transact(&store, |tx| Box::pin(async move { let v = tx.get(k).await?; tx.put(k, v2); Ok(()) }))`.
/// It reads through the [`Txn`] and buffers writes; when it returns `Ok`, the writes are
/// committed as one conditional write. A conflict (at a read or at commit) reruns `body` from
/// scratch after a jittered exponential backoff. An error of `body` itself aborts without
/// writing anything. After the last attempt the conflict is returned.
pub async fn transact<'env, T, E, F>(store: &DynStore, body: F) -> std::result::Result<T, E>
where
    E: From<StoreError>,
    F: FnMut(Txn) -> BoxFuture<'env, std::result::Result<T, E>>,
{
    transact_with(store, RetryPolicy::default(), body).await
}

/// [`transact`] with an explicit retry policy.
pub async fn transact_with<'env, T, E, F>(
    store: &DynStore,
    policy: RetryPolicy,
    mut body: F,
) -> std::result::Result<T, E>
where
    E: From<StoreError>,
    F: FnMut(Txn) -> BoxFuture<'env, std::result::Result<T, E>>,
{
    let mut backoff = policy.initial_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = Txn::new(store.clone());
        let outcome = body(tx.clone()).await;
        let conflict = match outcome {
            Ok(value) => match tx.commit().await {
                Ok(_) => return Ok(value),
                Err(e @ StoreError::Conflict { .. }) => e,
                Err(e) => return Err(e.into()),
            },
            // A read that saw a stale snapshot surfaced inside `body` as E: retry it.
            Err(_) if tx.is_stale() => StoreError::conflict(b"(stale read)"),
            Err(e) => return Err(e),
        };
        // Release any held guard before backing off.
        drop(tx);
        if attempt >= policy.max_attempts {
            return Err(conflict.into());
        }
        let jitter = rand::rng().random_range(0..=backoff.as_micros() as u64);
        tokio::time::sleep(backoff / 2 + Duration::from_micros(jitter / 2)).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}
