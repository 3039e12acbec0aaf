//! Click analytics that do not slow redirects: `Resolve` only bumps counters in memory; a
//! background task flushes them every interval as read-modify-write increments of the counter
//! keys (safe with any number of replicas on one store). A failed flush keeps the counts for
//! the next one; shutdown flushes what is left, so counts survive a restart. Clicks buffered in
//! the last interval before a crash (kill -9) are lost: a click is not an acknowledged write.

use std::collections::HashMap;
use std::sync::Mutex;

use meshwork_common::{ServiceResult, utc_date};
use meshwork_storage::{DynStore, StoreError, transact};

use crate::keys;

/// Counter keys per transaction: each costs one condition and one mutation, and etcd allows
/// 128 operations per transaction.
const KEYS_PER_TXN: usize = 48;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Pending {
    total: u64,
    /// Days since the Unix epoch (UTC) -> clicks; formatted as dates only when flushed.
    days: HashMap<i64, u64>,
    referrers: HashMap<String, u64>,
}

impl Pending {
    /// Returns the (counter key, increment) pairs of this code.
    fn increments(&self, code: &str) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::with_capacity(1 + self.days.len() + self.referrers.len());
        out.push((keys::clicks_total(code), self.total));
        out.extend(self.days.iter().map(|(d, n)| (keys::clicks_day(code, &utc_date(d * 86_400_000)), *n)));
        out.extend(self.referrers.iter().map(|(r, n)| (keys::clicks_referrer(code, r), *n)));
        out
    }
}

/// A counter key and the amount to add to it.
type Increment = (Vec<u8>, u64);

#[derive(Default)]
struct Buffers {
    /// Clicks not yet written, by code.
    pending: HashMap<String, Pending>,
    /// Increments whose write failed, retried first at the next flush.
    retry: Vec<Increment>,
}

/// Buffers clicks in memory and flushes them to the store.
pub struct ClickRecorder {
    store: DynStore,
    buffers: Mutex<Buffers>,
}

impl ClickRecorder {
    /// Returns a recorder writing to `store`.
    pub fn new(store: DynStore) -> Self {
        ClickRecorder { store, buffers: Mutex::new(Buffers::default()) }
    }

    fn buffers(&self) -> std::sync::MutexGuard<'_, Buffers> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.buffers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one click of `code` at `unix_ms` from `referrer` (already normalised). This is
    /// on the Resolve hot path: no allocation once a code, day and referrer have been seen.
    pub fn record(&self, code: &str, unix_ms: i64, referrer: &str) {
        let day = unix_ms.div_euclid(86_400_000);
        let mut buffers = self.buffers();
        let entry = match buffers.pending.get_mut(code) {
            Some(entry) => entry,
            None => buffers.pending.entry(code.to_string()).or_default(),
        };
        entry.total += 1;
        *entry.days.entry(day).or_default() += 1;
        match entry.referrers.get_mut(referrer) {
            Some(n) => *n += 1,
            None => {
                entry.referrers.insert(referrer.to_string(), 1);
            }
        }
    }

    /// Returns how many codes have unflushed clicks.
    pub fn pending_codes(&self) -> usize {
        self.buffers().pending.len()
    }

    /// Writes every buffered click to the store. Increments that could not be written stay
    /// buffered for the next flush and the first error is returned.
    pub async fn flush(&self) -> ServiceResult<()> {
        let (pending, mut increments) = {
            let mut buffers = self.buffers();
            (std::mem::take(&mut buffers.pending), std::mem::take(&mut buffers.retry))
        };
        for (code, p) in &pending {
            increments.extend(p.increments(code));
        }
        self.apply(increments).await
    }

    /// Writes the buffered clicks of one code (before reading its stats).
    pub async fn flush_code(&self, code: &str) -> ServiceResult<()> {
        let taken = self.buffers().pending.remove(code);
        match taken {
            Some(p) => self.apply(p.increments(code)).await,
            None => Ok(()),
        }
    }

    /// Adds increments to their counters, in transactions of at most [`KEYS_PER_TXN`] keys.
    /// Chunks that committed are done; the rest go to the retry buffer, so no click is counted
    /// twice or dropped while the process lives.
    async fn apply(&self, increments: Vec<Increment>) -> ServiceResult<()> {
        let mut chunks = increments.chunks(KEYS_PER_TXN).map(<[Increment]>::to_vec).collect::<Vec<_>>().into_iter();
        while let Some(chunk) = chunks.next() {
            if let Err(e) = self.apply_chunk(&chunk).await {
                tracing::warn!(error = %e, "click flush failed; keeping counts for the next flush");
                let mut buffers = self.buffers();
                buffers.retry.extend(chunk);
                buffers.retry.extend(chunks.flatten());
                return Err(e.into());
            }
        }
        Ok(())
    }

    async fn apply_chunk(&self, chunk: &[Increment]) -> Result<(), StoreError> {
        transact(&self.store, |tx| {
            Box::pin(async move {
                for (key, delta) in chunk {
                    let current = tx.get(key).await?.map(|v| keys::decode_counter(&v.value)).unwrap_or(0);
                    tx.put(key.clone(), (current + delta).to_be_bytes().to_vec());
                }
                Ok::<_, StoreError>(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_lists_one_increment_per_counter() {
        let mut p = Pending { total: 3, ..Default::default() };
        p.days.insert(20_454, 3);
        p.referrers.insert("x.com".into(), 2);
        p.referrers.insert("y.com".into(), 1);
        let incs = p.increments("abc");
        assert_eq!(incs.len(), 4);
        assert_eq!(incs[0], (keys::clicks_total("abc"), 3));
        assert!(incs.contains(&(keys::clicks_referrer("abc", "y.com"), 1)));
        assert!(incs.contains(&(keys::clicks_day("abc", "2026-01-01"), 3)));
    }
}
