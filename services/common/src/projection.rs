//! The follow loop of a per-replica projection of one key prefix of the Store (a search index,
//! an in-memory view): read the store's revision, scan every entry under the prefix and build
//! the projection from them, then follow the store's watch of the prefix from the next
//! revision, so no write between the scan and the watch is missed (a write seen by both is
//! applied twice: projections apply a key's latest value, which makes that harmless). Changes
//! are handed over in batches, at most every [`FollowOptions::apply_every`] (or sooner when
//! [`FollowOptions::max_batch`] of them wait), so a write shows within that delay. A watch
//! error (or its end, or a compacted revision) starts over with a fresh projection from a new
//! scan after a pause that doubles while failures follow each other quickly; the projection
//! decides what answers meanwhile (the catalog's and library's search indexes keep the old
//! index answering until the new one is published).
//!
//! What is projected is the [`Projector`]'s business; its `rebuild` and `apply` run on the
//! blocking pool (building an index is CPU work).

use std::time::Duration;

use futures::StreamExt;
use meshwork_storage::{Direction, DynStore, Entry, KeyRange, WatchEvent, scan_all};

/// A projection built from a scan and kept current by the watch (see the module docs).
pub trait Projector: Send + 'static {
    /// Why building or applying failed (then the loop starts over with a fresh projector).
    type Error: std::fmt::Display + Send + 'static;

    /// Builds the projection from every entry under the prefix (on the blocking pool).
    fn rebuild(&mut self, entries: Vec<Entry>) -> Result<(), Self::Error>;

    /// Applies changes seen by the watch, in revision order (on the blocking pool).
    fn apply(&mut self, changes: Vec<WatchEvent>) -> Result<(), Self::Error>;
}

/// Tunables of [`follow`].
#[derive(Debug, Clone, Copy)]
pub struct FollowOptions {
    /// Longest time a seen change waits to be applied.
    pub apply_every: Duration,
    /// Changes that are applied before the next tick.
    pub max_batch: usize,
    /// Pause before a rescan after a failure; doubled while failures follow each other quickly.
    pub retry_pause: Duration,
    /// Longest pause before a rescan.
    pub max_retry_pause: Duration,
    /// A follow that lasted this long was healthy: the next failure pauses briefly again.
    pub healthy: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            apply_every: Duration::from_millis(100),
            max_batch: 2_000,
            retry_pause: Duration::from_millis(200),
            max_retry_pause: Duration::from_secs(5),
            healthy: Duration::from_secs(30),
        }
    }
}

/// Why one follow stopped.
#[derive(Debug, thiserror::Error)]
enum FollowError<E: std::fmt::Display> {
    #[error("store: {0}")]
    Store(#[from] meshwork_storage::StoreError),
    #[error("projection: {0}")]
    Projection(E),
    #[error("projection task: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the store's watch ended")]
    WatchEnded,
}

/// Follows the entries under `prefix` into projectors made by `make` (a fresh one per scan),
/// until the task is aborted; `name` appears in logs.
pub async fn follow<P, F>(name: &'static str, store: DynStore, prefix: Vec<u8>, options: FollowOptions, mut make: F)
where
    P: Projector,
    F: FnMut() -> P + Send,
{
    let mut pause = options.retry_pause;
    loop {
        let started = tokio::time::Instant::now();
        if let Err(e) = follow_once(name, &store, &prefix, &options, make()).await {
            tracing::warn!(projection = name, error = %e, pause_ms = pause.as_millis() as u64, "projection lost the store; rescanning");
        }
        if started.elapsed() >= options.healthy {
            pause = options.retry_pause;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(options.max_retry_pause);
    }
}

/// Runs `f` on `projector` on the blocking pool, handing the projector back.
async fn blocking<P: Projector, T: Send + 'static>(
    mut projector: P,
    input: T,
    f: fn(&mut P, T) -> Result<(), P::Error>,
) -> Result<P, FollowError<P::Error>> {
    let (projector, result) = tokio::task::spawn_blocking(move || {
        let result = f(&mut projector, input);
        (projector, result)
    })
    .await?;
    result.map_err(FollowError::Projection)?;
    Ok(projector)
}

/// One scan, then the watch until it fails.
async fn follow_once<P: Projector>(
    name: &'static str,
    store: &DynStore,
    prefix: &[u8],
    options: &FollowOptions,
    projector: P,
) -> Result<(), FollowError<P::Error>> {
    let revision = store.current_revision().await?;
    let entries = scan_all(store, KeyRange::prefix(prefix), Direction::Forward).await?;
    let scanned = entries.len();
    let mut projector = blocking(projector, entries, P::rebuild).await?;
    tracing::info!(projection = name, entries = scanned, revision, "projection built from a scan");

    let mut changes = store.watch(prefix, Some(revision + 1)).await?;
    let mut pending: Vec<WatchEvent> = Vec::new();
    let mut tick = tokio::time::interval(options.apply_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(change)) => {
                    pending.push(change);
                    if pending.len() >= options.max_batch {
                        projector = blocking(projector, std::mem::take(&mut pending), P::apply).await?;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(FollowError::WatchEnded),
            },
            _ = tick.tick() => {
                if !pending.is_empty() {
                    projector = blocking(projector, std::mem::take(&mut pending), P::apply).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use meshwork_storage::EventKind;
    use meshwork_storage::memory::MemoryStore;

    use super::*;

    /// A projection of the keys into a shared map.
    struct Mirror(Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>);

    impl Projector for Mirror {
        type Error = String;
        fn rebuild(&mut self, entries: Vec<Entry>) -> Result<(), String> {
            let mut m = self.0.lock().map_err(|e| e.to_string())?;
            m.clear();
            m.extend(entries.into_iter().map(|e| (e.key, e.value)));
            Ok(())
        }
        fn apply(&mut self, changes: Vec<WatchEvent>) -> Result<(), String> {
            let mut m = self.0.lock().map_err(|e| e.to_string())?;
            for c in changes {
                match c.kind {
                    EventKind::Put => m.insert(c.key, c.value),
                    EventKind::Delete => m.remove(&c.key),
                };
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_projection_sees_the_scan_and_then_the_watch() {
        let store: DynStore = Arc::new(MemoryStore::new());
        store
            .write(
                vec![],
                vec![meshwork_storage::Mutation::put("p/a", "1"), meshwork_storage::Mutation::put("q/x", "0")],
            )
            .await
            .unwrap();
        let map = Arc::new(Mutex::new(BTreeMap::new()));
        let m = map.clone();
        let task = tokio::spawn(follow("test", store.clone(), b"p/".to_vec(), FollowOptions::default(), move || {
            Mirror(m.clone())
        }));
        store
            .write(vec![], vec![meshwork_storage::Mutation::put("p/b", "2"), meshwork_storage::Mutation::delete("p/a")])
            .await
            .unwrap();
        let want: BTreeMap<Vec<u8>, Vec<u8>> = [(b"p/b".to_vec(), b"2".to_vec())].into();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *map.lock().unwrap() != want {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", map.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
    }
}
