//! The `memory` backend: a `BTreeMap` under a lock, for tests and throwaway runs. Nothing
//! survives the process.
//!
//! Every write gets the next revision of a global counter. Keys with a time-to-live are
//! absent to reads and conditions once expired; a sweep (a background task when a tokio
//! runtime is present, and opportunistically before each write) removes them in a write of
//! its own so that watchers see a `Delete`. Watch replays from a bounded in-memory history of
//! recent revisions and then follows a broadcast feed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::common::{self, History, HistoryChunk, RevEvents};
use crate::{
    Condition, Direction, Entry, EventKind, KeyRange, Limits, Mutation, Page, Result, Store, StoreError, Versioned,
    WatchEvent,
};

/// Revisions kept for watch replay by [`MemoryStore::new`].
pub const DEFAULT_HISTORY_REVISIONS: usize = 10_000;

/// How often the background sweep removes expired keys.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

const LIMITS: Limits = Limits { max_ops_per_write: 10_000, max_write_bytes: 64 << 20, max_key_bytes: 4096 };

#[derive(Debug, Clone)]
struct Item {
    value: Vec<u8>,
    version: u64,
    expires: Option<Instant>,
}

impl Item {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

#[derive(Default)]
struct State {
    data: BTreeMap<Vec<u8>, Item>,
    /// (expiry, key) of every key with a time-to-live.
    expiry: BTreeSet<(Instant, Vec<u8>)>,
    revision: u64,
    history: VecDeque<Arc<RevEvents>>,
    /// Revisions up to this one are no longer in `history`.
    compacted_through: u64,
}

struct Shared {
    state: RwLock<State>,
    feed: broadcast::Sender<Arc<RevEvents>>,
    history_limit: usize,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way readers
        // could misinterpret worse than the panic itself; keep serving.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits `events` as revision `rev` (already counted in `st.revision`).
    fn publish(&self, st: &mut State, rev: u64, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        let batch = Arc::new(RevEvents { revision: rev, events });
        st.history.push_back(batch.clone());
        while st.history.len() > self.history_limit {
            if let Some(old) = st.history.pop_front() {
                st.compacted_through = old.revision;
            }
        }
        // No receivers is fine.
        let _ = self.feed.send(batch);
    }

    /// Removes expired keys in one revision of their own. Returns true when it wrote.
    fn sweep_locked(&self, st: &mut State, now: Instant) -> bool {
        let mut expired = Vec::new();
        while let Some((at, _)) = st.expiry.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = st.expiry.pop_first() {
                expired.push(key);
            }
        }
        if expired.is_empty() {
            return false;
        }
        st.revision += 1;
        let rev = st.revision;
        let mut events = Vec::with_capacity(expired.len());
        for key in expired {
            if st.data.remove(&key).is_some() {
                events.push(WatchEvent { kind: EventKind::Delete, key, value: Vec::new(), revision: rev });
            }
        }
        self.publish(st, rev, events);
        true
    }

    fn sweep(&self) {
        let now = Instant::now();
        {
            let st = self.read();
            if st.expiry.first().is_none_or(|(at, _)| *at > now) {
                return;
            }
        }
        let mut st = self.write();
        self.sweep_locked(&mut st, now);
    }
}

impl History for Shared {
    fn read(&self, from: u64, max: usize) -> Result<HistoryChunk> {
        let st = self.read();
        if from <= st.compacted_through {
            return Err(StoreError::Compacted(from));
        }
        let start = st.history.partition_point(|b| b.revision < from);
        let batches: Vec<_> = st.history.iter().skip(start).take(max).cloned().collect();
        let complete = start + batches.len() >= st.history.len();
        let through = if complete { st.revision } else { batches.last().map_or(st.revision, |b| b.revision) };
        Ok(HistoryChunk { batches, through, complete })
    }

    fn current(&self) -> u64 {
        self.read().revision
    }
}

/// The in-memory backend (`memory:`).
pub struct MemoryStore {
    shared: Arc<Shared>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

impl MemoryStore {
    /// Returns an empty store keeping [`DEFAULT_HISTORY_REVISIONS`] revisions for watch replay.
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY_REVISIONS)
    }

    /// Returns an empty store keeping the last `revisions` revisions (at least 1) for watch
    /// replay; a watch from an older revision fails with [`StoreError::Compacted`].
    pub fn with_history(revisions: usize) -> Self {
        let (feed, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared { state: RwLock::new(State::default()), feed, history_limit: revisions.max(1) });
        let sweeper =
            tokio::runtime::Handle::try_current().ok().map(|rt| rt.spawn(sweep_loop(Arc::downgrade(&shared))));
        MemoryStore { shared, sweeper }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        if let Some(task) = self.sweeper.take() {
            task.abort();
        }
    }
}

async fn sweep_loop(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        shared.sweep();
    }
}

fn check(st: &State, now: Instant, condition: &Condition) -> bool {
    let live = st.data.get(condition.key()).filter(|i| i.live(now));
    match (condition, live) {
        (Condition::Absent(_), None) => true,
        (Condition::Version(_, v), Some(item)) => item.version == *v,
        (Condition::ValueEquals(_, v), Some(item)) => item.value == *v,
        _ => false,
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let now = Instant::now();
        let st = self.shared.read();
        Ok(st.data.get(key).filter(|i| i.live(now)).map(|i| Versioned { value: i.value.clone(), version: i.version }))
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        if common::range_is_empty(&range) {
            return Ok(Page::default());
        }
        let limit = common::scan_limit(limit);
        let now = Instant::now();
        let st = self.shared.read();
        let iter = st.data.range::<[u8], _>(common::bounds(&range)).filter(|(_, i)| i.live(now));
        let mut entries: Vec<Entry> = match direction {
            Direction::Forward => iter
                .take(limit + 1)
                .map(|(k, i)| Entry { key: k.clone(), value: i.value.clone(), version: i.version })
                .collect(),
            Direction::Reverse => iter
                .rev()
                .take(limit + 1)
                .map(|(k, i)| Entry { key: k.clone(), value: i.value.clone(), version: i.version })
                .collect(),
        };
        let next = if entries.len() > limit { entries.pop().map(|e| e.key) } else { None };
        Ok(Page { entries, next })
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        common::validate_write(&LIMITS, &conditions, &mutations)?;
        let now = Instant::now();
        let mut st = self.shared.write();
        if st.expiry.first().is_some_and(|(at, _)| *at <= now) {
            self.shared.sweep_locked(&mut st, now);
        }
        if let Some(failed) = conditions.iter().find(|c| !check(&st, now, c)) {
            return Err(StoreError::conflict(failed.key()));
        }
        if mutations.is_empty() {
            return Ok(st.revision);
        }
        st.revision += 1;
        let rev = st.revision;
        let mut events = Vec::with_capacity(mutations.len());
        for m in mutations {
            match m {
                Mutation::Put { key, value, ttl } => {
                    let expires = ttl.map(|t| now.checked_add(t).unwrap_or(now + Duration::from_secs(1 << 32)));
                    if let Some(old) = st.data.get(&key).and_then(|i| i.expires) {
                        st.expiry.remove(&(old, key.clone()));
                    }
                    if let Some(at) = expires {
                        st.expiry.insert((at, key.clone()));
                    }
                    st.data.insert(key.clone(), Item { value: value.clone(), version: rev, expires });
                    events.push(WatchEvent { kind: EventKind::Put, key, value, revision: rev });
                }
                Mutation::Delete { key } => {
                    if let Some(old) = st.data.remove(&key) {
                        if let Some(at) = old.expires {
                            st.expiry.remove(&(at, key.clone()));
                        }
                        events.push(WatchEvent { kind: EventKind::Delete, key, value: Vec::new(), revision: rev });
                    }
                }
            }
        }
        self.shared.publish(&mut st, rev, events);
        Ok(rev)
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        let rx = self.shared.feed.subscribe();
        Ok(common::watch_stream(prefix.to_vec(), from, rx, self.shared.clone(), false))
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}
