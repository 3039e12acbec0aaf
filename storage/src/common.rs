//! Pieces shared by the backends: request validation against [`Limits`], scan-range helpers,
//! and the watch machinery of the in-process backends (a broadcast feed of committed
//! revisions plus a replayable history, stitched together without gaps or duplicates).

use std::collections::{HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::{Condition, KeyRange, Limits, Mutation, Result, StoreError, WatchEvent};

/// Largest page a scan returns; `limit` 0 or anything larger is clamped to this.
pub const MAX_SCAN_LIMIT: usize = 10_000;

/// Returns the effective page size for a requested scan `limit`.
pub(crate) fn scan_limit(limit: usize) -> usize {
    if limit == 0 { MAX_SCAN_LIMIT } else { limit.min(MAX_SCAN_LIMIT) }
}

/// Checks a write against `limits` and the request rules shared by every backend. Returns the
/// number of key and value bytes in the write.
pub(crate) fn validate_write(limits: &Limits, conditions: &[Condition], mutations: &[Mutation]) -> Result<usize> {
    let ops = conditions.len() + mutations.len();
    if ops > limits.max_ops_per_write {
        return Err(StoreError::LimitExceeded {
            what: "operations (conditions + mutations) in one write",
            limit: limits.max_ops_per_write,
            actual: ops,
        });
    }
    let mut bytes = 0usize;
    let check_key = |key: &[u8]| -> Result<()> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        if key.len() > limits.max_key_bytes {
            return Err(StoreError::LimitExceeded {
                what: "key size in bytes",
                limit: limits.max_key_bytes,
                actual: key.len(),
            });
        }
        Ok(())
    };
    for c in conditions {
        check_key(c.key())?;
        bytes += c.key().len();
        if let Condition::ValueEquals(_, v) = c {
            bytes += v.len();
        }
    }
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(mutations.len());
    for m in mutations {
        check_key(m.key())?;
        if !seen.insert(m.key()) {
            return Err(StoreError::Invalid(format!(
                "key {:?} is changed twice in one write",
                String::from_utf8_lossy(m.key())
            )));
        }
        bytes += m.key().len();
        if let Mutation::Put { value, ttl, .. } = m {
            bytes += value.len();
            if ttl.is_some_and(|t| t.is_zero()) {
                return Err(StoreError::Invalid(format!(
                    "put of key {:?} has a zero time-to-live",
                    String::from_utf8_lossy(m.key())
                )));
            }
        }
    }
    if bytes > limits.max_write_bytes {
        return Err(StoreError::LimitExceeded {
            what: "write size in bytes (keys + values)",
            limit: limits.max_write_bytes,
            actual: bytes,
        });
    }
    Ok(bytes)
}

/// Returns true when no key can lie inside `range` (so range iterators, which panic on
/// inverted bounds, must not be built).
pub(crate) fn range_is_empty(range: &KeyRange) -> bool {
    match (&range.start, &range.end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

/// Returns the key range as borrowed bounds.
pub(crate) fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (as_ref_bound(&range.start), as_ref_bound(&range.end))
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The changes of one committed revision, as broadcast to watchers.
#[derive(Debug, Clone)]
pub(crate) struct RevEvents {
    pub revision: u64,
    pub events: Vec<WatchEvent>,
}

/// One read of a backend's change history.
pub(crate) struct HistoryChunk {
    /// Revisions in ascending order (only those that changed something).
    pub batches: Vec<Arc<RevEvents>>,
    /// Every revision up to this one has been covered by this read.
    pub through: u64,
    /// True when the read reached the newest committed revision.
    pub complete: bool,
}

/// A replayable record of recent revisions.
pub(crate) trait History: Send + Sync + 'static {
    /// Returns up to `max` revisions `>= from`, or [`StoreError::Compacted`] when `from` is
    /// older than the retained history.
    fn read(&self, from: u64, max: usize) -> Result<HistoryChunk>;
    /// Returns the newest committed revision.
    fn current(&self) -> u64;
}

const REPLAY_CHUNK: usize = 1_000;

struct WatchState {
    prefix: Vec<u8>,
    rx: broadcast::Receiver<Arc<RevEvents>>,
    history: Arc<dyn History>,
    pending: VecDeque<WatchEvent>,
    /// Every revision <= last has been delivered (or skipped as not matching).
    last: u64,
    replay_from: Option<u64>,
    done: bool,
    blocking_reads: bool,
}

impl WatchState {
    fn take(&mut self, batch: &RevEvents) {
        if batch.revision <= self.last {
            return;
        }
        self.last = batch.revision;
        for ev in &batch.events {
            if ev.key.starts_with(&self.prefix) {
                self.pending.push_back(ev.clone());
            }
        }
    }
}

/// Builds a watch stream: replays `history` from `from` (if given), then follows `rx`,
/// which must have been subscribed *before* this call. Revisions already delivered are
/// skipped, so the switch from replay to live has neither gap nor duplicate; a lagging
/// receiver falls back to the history. With `blocking_reads`, history reads run on the
/// blocking pool (disk-backed histories).
pub(crate) fn watch_stream(
    prefix: Vec<u8>,
    from: Option<u64>,
    rx: broadcast::Receiver<Arc<RevEvents>>,
    history: Arc<dyn History>,
    blocking_reads: bool,
) -> BoxStream<'static, Result<WatchEvent>> {
    let (last, replay_from) = match from {
        Some(from) => {
            let from = from.max(1);
            (from - 1, Some(from))
        }
        None => (history.current(), None),
    };
    let state =
        WatchState { prefix, rx, history, pending: VecDeque::new(), last, replay_from, done: false, blocking_reads };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            if let Some(from) = st.replay_from {
                let chunk = if st.blocking_reads {
                    let h = st.history.clone();
                    match tokio::task::spawn_blocking(move || h.read(from, REPLAY_CHUNK)).await {
                        Ok(r) => r,
                        Err(e) => Err(StoreError::Backend(format!("watch history read failed: {e}"))),
                    }
                } else {
                    st.history.read(from, REPLAY_CHUNK)
                };
                match chunk {
                    Ok(chunk) => {
                        for b in &chunk.batches {
                            st.take(b);
                        }
                        st.last = st.last.max(chunk.through);
                        st.replay_from = if chunk.complete { None } else { Some(chunk.through + 1) };
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
                continue;
            }
            match st.rx.recv().await {
                Ok(batch) => st.take(&batch),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "watcher lagged behind the feed; replaying from history");
                    st.replay_from = Some(st.last + 1);
                }
                Err(broadcast::error::RecvError::Closed) => st.done = true,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ranges() {
        assert!(range_is_empty(&KeyRange::between("b", "a")));
        assert!(range_is_empty(&KeyRange::between("a", "a")));
        assert!(!range_is_empty(&KeyRange::between("a", "b")));
        assert!(!range_is_empty(&KeyRange::prefix("")));
    }

    #[test]
    fn validation() {
        let limits = Limits { max_ops_per_write: 2, max_write_bytes: 10, max_key_bytes: 4 };
        assert!(validate_write(&limits, &[], &[Mutation::put("a", "b")]).is_ok());
        assert!(matches!(
            validate_write(&limits, &[], &[Mutation::put("a", "b"), Mutation::delete("a")]),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(validate_write(&limits, &[], &[Mutation::put("", "b")]), Err(StoreError::Invalid(_))));
        assert!(matches!(
            validate_write(&limits, &[], &[Mutation::put("abcde", "b")]),
            Err(StoreError::LimitExceeded { .. })
        ));
        assert!(matches!(
            validate_write(&limits, &[], &[Mutation::put("a", "0123456789")]),
            Err(StoreError::LimitExceeded { .. })
        ));
        assert!(matches!(
            validate_write(
                &limits,
                &[Condition::Absent(b"x".to_vec())],
                &[Mutation::put("a", "b"), Mutation::put("c", "d")]
            ),
            Err(StoreError::LimitExceeded { .. })
        ));
    }
}
