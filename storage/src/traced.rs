//! A [`Store`] wrapper that records one INTERNAL span per storage operation (backend,
//! operation, key prefix, sizes; never keys in full or values), so traces show where a call
//! spends its time. Spans are at DEBUG level under the `meshwork::storage` target: free when
//! neither logs nor trace export ask for them.

use futures::stream::BoxStream;
use tracing::Instrument;

use crate::{Condition, Direction, DynStore, KeyRange, Limits, Mutation, Page, Result, Store, Versioned, WatchEvent};

/// Wraps a backend with storage spans.
pub struct TracedStore {
    inner: DynStore,
}

impl TracedStore {
    /// Returns `inner` with storage spans.
    pub fn new(inner: DynStore) -> Self {
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

macro_rules! storage_span {
    ($self:ident, $op:literal, $prefix:expr) => {
        tracing::debug_span!(
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
        let span = storage_span!(self, "get", key_prefix(key));
        self.inner.get(key).instrument(span).await
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        let prefix = match &range.start {
            std::ops::Bound::Included(k) | std::ops::Bound::Excluded(k) => key_prefix(k),
            std::ops::Bound::Unbounded => String::new(),
        };
        let span = storage_span!(self, "scan", prefix);
        self.inner.scan(range, limit, direction).instrument(span).await
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        let first = mutations.first().map(|m| m.key()).or_else(|| conditions.first().map(|c| c.key()));
        let span = storage_span!(self, "write", first.map(key_prefix).unwrap_or_default());
        self.inner.write(conditions, mutations).instrument(span).await
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        self.inner.watch(prefix, from).await
    }

    async fn flush(&self) -> Result<()> {
        let span = storage_span!(self, "flush", "");
        self.inner.flush().instrument(span).await
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
}
