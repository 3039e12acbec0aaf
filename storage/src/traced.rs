//! A [`Store`] wrapper that records one INTERNAL span per storage operation (backend,
//! operation, key prefix; never keys in full or values), so traces show where a call spends its
//! time (only inside a traced call: background work makes no spans), and the latency and
//! failures of each operation as Prometheus metrics. Spans are at
//! INFO level under the `meshwork::storage` target, built only inside a sampled span. (Not
//! DEBUG: a DEBUG span target enabled for export raises the process's maximum level, and with it
//! `log`'s, so every `log::debug!` of Pingora and h2 would go through the tracing bridge.)

use std::future::Future;
use std::sync::LazyLock;
use std::time::Instant;

use futures::stream::BoxStream;
use meshwork_telemetry::metrics::{counter, histogram};
use prometheus::{HistogramVec, IntCounterVec};
use tracing::Instrument;

use crate::{
    Condition, Direction, DynStore, KeyRange, Limits, Mutation, Page, Result, Store, StoreError, Versioned, WatchEvent,
};

/// `meshwork_storage_operation_duration_seconds{backend,operation}`, in the default registry.
pub static STORAGE_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram("meshwork_storage_operation_duration_seconds", "storage operation latency", &["backend", "operation"])
});

/// `meshwork_storage_errors_total{backend,operation}`, in the default registry.
pub static STORAGE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("meshwork_storage_errors_total", "storage operations that failed", &["backend", "operation"])
});

/// `meshwork_storage_conflicts_total{backend,prefix}`: conditional writes refused because a
/// condition no longer held, by the key prefix (two segments) of the key that changed, so that
/// contention shows where it is (`payments/events/`, `catalog/checkouts/`).
pub static STORAGE_CONFLICTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("meshwork_storage_conflicts_total", "writes refused by a conflict, by key prefix", &["backend", "prefix"])
});

/// Wraps a backend with storage spans.
pub struct TracedStore {
    inner: DynStore,
}

/// Whether the current task runs inside a sampled span: the OpenTelemetry context, which a
/// service's SERVER span is attached as while its call runs (and which the tracing layer
/// activates when one of its spans is entered). Background tasks run with an empty context.
fn in_sampled_span() -> bool {
    use opentelemetry::trace::TraceContextExt;
    opentelemetry::Context::current().span().span_context().is_sampled()
}

impl TracedStore {
    /// Returns `inner` with storage spans and metrics.
    pub fn new(inner: DynStore) -> Self {
        // Error counters start at zero, so that dashboards show a series before the first failure.
        for operation in ["get", "scan", "write", "flush"] {
            STORAGE_ERRORS.with_label_values(&[inner.backend(), operation]);
        }
        TracedStore { inner }
    }
}

/// Returns the first two `/`-separated segments of a key (`urlshortener/link/`), the part of a
/// key that names what it is without naming which one.
pub fn key_prefix(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    let mut end = 0;
    for (i, _) in text.match_indices('/').take(2) {
        end = i + 1;
    }
    if end == 0 { text.chars().take(32).collect() } else { text[..end].to_string() }
}

impl TracedStore {
    /// Runs one operation inside `span`, recording its latency and failure.
    async fn measured<T>(
        &self,
        operation: &'static str,
        span: impl FnOnce() -> tracing::Span,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        // Only operations inside a sampled call get a span (built only then): background work
        // (click flushes, watches, the trace collector's own writes) would otherwise make root
        // traces of one span each, the collector's writes would trace themselves, and an
        // unsampled call would pay for spans nobody exports.
        let span = if in_sampled_span() { span() } else { tracing::Span::none() };
        let result = op.instrument(span).await;
        let labels = [self.inner.backend(), operation];
        STORAGE_DURATION.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            STORAGE_ERRORS.with_label_values(&labels).inc();
        }
        result
    }
}

macro_rules! storage_span {
    ($self:ident, $op:literal, $prefix:expr) => {
        tracing::info_span!(
            target: "meshwork::storage",
            "storage",
            otel.name = concat!("storage.", $op),
            otel.kind = "internal",
            db.system = $self.inner.backend(),
            db.operation = $op,
            meshwork.key_prefix = %$prefix,
        )
    };
}

#[async_trait::async_trait]
impl Store for TracedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        self.measured("get", || storage_span!(self, "get", key_prefix(key)), self.inner.get(key)).await
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        let prefix = match &range.start {
            std::ops::Bound::Included(k) | std::ops::Bound::Excluded(k) => key_prefix(k),
            std::ops::Bound::Unbounded => String::new(),
        };
        self.measured("scan", || storage_span!(self, "scan", prefix), self.inner.scan(range, limit, direction)).await
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        // The key prefix is only worked out when the span is built (a sampled call).
        let first = mutations.first().map(|m| m.key()).or_else(|| conditions.first().map(|c| c.key()));
        let prefix = if in_sampled_span() { first.map(key_prefix).unwrap_or_default() } else { String::new() };
        let result = self
            .measured("write", || storage_span!(self, "write", prefix), self.inner.write(conditions, mutations))
            .await;
        if let Err(StoreError::Conflict { key }) = &result {
            STORAGE_CONFLICTS.with_label_values(&[self.inner.backend(), &key_prefix(key.as_bytes())]).inc();
        }
        result
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        self.inner.watch(prefix, from).await
    }

    async fn flush(&self) -> Result<()> {
        self.measured("flush", || storage_span!(self, "flush", ""), self.inner.flush()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefixes_name_the_entity_not_the_key() {
        assert_eq!(key_prefix(b"urlshortener/link/abc1234"), "urlshortener/link/");
        assert_eq!(key_prefix(b"urlshortener/counter"), "urlshortener/");
        assert_eq!(key_prefix(b"plain"), "plain");
    }

    #[tokio::test]
    async fn conflicts_are_counted_by_the_prefix_of_the_key_that_changed() {
        let store = TracedStore::new(std::sync::Arc::new(crate::memory::MemoryStore::new()));
        let counted = || STORAGE_CONFLICTS.with_label_values(&["memory", "tracedtest/head/"]).get();
        let before = counted();
        let key = b"tracedtest/head/x".to_vec();
        store
            .write(vec![Condition::Absent(key.clone())], vec![Mutation::put(key.clone(), b"1".to_vec())])
            .await
            .unwrap();
        let lost = store.write(vec![Condition::Absent(key.clone())], vec![Mutation::put(key, b"2".to_vec())]).await;
        assert!(matches!(lost, Err(StoreError::Conflict { .. })), "{lost:?}");
        assert_eq!(counted(), before + 1);
    }
}
