//! Click analytics that do not slow redirects: `Resolve` only bumps three counters in memory (the
//! code's total, its UTC day, its referrer host); the kit's [`BatchedCounters`] flushes them
//! every interval and on shutdown, so counts survive a restart. Clicks buffered in the last
//! interval before a crash (kill -9) are lost: a click is not an acknowledged write.

use std::sync::Arc;

use meshwork_common::counter::{BatchedCounters, Flushed};
use meshwork_common::{ServiceResult, utc_date};
use meshwork_storage::DynStore;

use crate::keys;

/// One click counter of one code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClickCounter {
    pub code: Arc<str>,
    pub of: Counted,
}

/// What a click counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Counted {
    /// Every click.
    Total,
    /// Clicks on one UTC day, in days since the Unix epoch (formatted only when flushed).
    Day(i64),
    /// Clicks from one referrer host (already normalised).
    Referrer(Box<str>),
}

impl ClickCounter {
    /// Returns the store key of the counter.
    fn key(&self) -> Vec<u8> {
        match &self.of {
            Counted::Total => keys::clicks_total(&self.code),
            Counted::Day(day) => keys::clicks_day(&self.code, &utc_date(day * 86_400_000)),
            Counted::Referrer(host) => keys::clicks_referrer(&self.code, host),
        }
    }
}

/// Counts clicks in memory and flushes them to the store.
#[derive(Debug, Clone)]
pub struct ClickRecorder {
    counters: BatchedCounters<ClickCounter>,
}

impl ClickRecorder {
    /// Returns a recorder writing to `store`.
    pub fn new(store: DynStore) -> Self {
        ClickRecorder { counters: BatchedCounters::new("urlshortener_clicks", store, ClickCounter::key) }
    }

    /// Returns the counters (for the flush task and the shutdown hook).
    pub fn counters(&self) -> &BatchedCounters<ClickCounter> {
        &self.counters
    }

    /// Counts one click of `code` at `unix_ms` from `referrer` (already normalised).
    pub fn record(&self, code: &str, unix_ms: i64, referrer: &str) {
        let code: Arc<str> = code.into();
        let day = unix_ms.div_euclid(86_400_000);
        self.counters.add(ClickCounter { code: code.clone(), of: Counted::Total }, 1);
        self.counters.add(ClickCounter { code: code.clone(), of: Counted::Day(day) }, 1);
        self.counters.add(ClickCounter { code, of: Counted::Referrer(referrer.into()) }, 1);
    }

    /// Returns how many counters have unflushed clicks.
    pub fn pending_counters(&self) -> usize {
        self.counters.pending()
    }

    /// Writes every buffered click to the store.
    pub async fn flush(&self) -> ServiceResult<Flushed> {
        self.counters.flush().await
    }

    /// Writes the buffered clicks of one code (before reading its stats).
    pub async fn flush_code(&self, code: &str) -> ServiceResult<Flushed> {
        let code: Arc<str> = code.into();
        self.counters.flush_where(move |c| c.code == code).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_map_to_their_keys() {
        let code: Arc<str> = "abc".into();
        let of = |of| ClickCounter { code: code.clone(), of }.key();
        assert_eq!(of(Counted::Total), keys::clicks_total("abc"));
        assert_eq!(of(Counted::Day(20_454)), keys::clicks_day("abc", "2026-01-01"));
        assert_eq!(of(Counted::Referrer("x.com".into())), keys::clicks_referrer("abc", "x.com"));
    }
}
