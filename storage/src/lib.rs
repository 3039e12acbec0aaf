//! The meshwork key-value layer. Every service codes against [`Store`]; the backends
//! (`memory`, `embedded` = fjall, `etcd`) differ only in scale, and all of them pass the same
//! conformance suite (`tests/conformance.rs`).
//!
//! Model: keys and values are bytes. Every committed write gets a store-wide, strictly
//! increasing *revision*; a key's [`Versioned::version`] is the revision of the write that last
//! changed it (etcd's `mod_revision`), so a deleted and re-created key never repeats a version.
//! [`Store::write`] applies a batch of mutations atomically when all its conditions hold, and
//! fails with [`StoreError::Conflict`] otherwise. [`transact`] builds read-modify-write on top.

#![forbid(unsafe_code)]

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;

mod common;
mod scan;
mod txn;
mod url;

pub use common::MAX_SCAN_LIMIT;
pub use scan::{SCAN_PAGE, scan_all, scan_stream};
pub use txn::{RetryPolicy, Txn, transact, transact_with};
pub use url::{StoreUrl, open};

/// A value together with the revision of the write that last changed its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    /// Revision of the last write to this key (never 0 for a stored key).
    pub version: u64,
}

/// One key-value pair returned by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: u64,
}

/// Scan order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Forward,
    Reverse,
}

/// A half-open or closed range of keys, by byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Returns the range of every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let prefix = prefix.into();
        let end = match prefix_end(&prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        KeyRange { start: Bound::Included(prefix), end }
    }

    /// Returns `[start, end)`.
    pub fn between(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange { start: Bound::Included(start.into()), end: Bound::Excluded(end.into()) }
    }

    /// Returns true when `key` lies inside the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }
}

/// Returns the smallest key greater than every key with this prefix, or `None` when the
/// prefix is empty or all 0xff (no upper bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A page of a scan. `next` is the key to continue from (pass it as the new inclusive start
/// for a forward scan, or the new inclusive end for a reverse scan); `None` when the range is
/// exhausted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub next: Option<Vec<u8>>,
}

/// A condition checked atomically before a write is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key does not exist (or has expired).
    Absent(Vec<u8>),
    /// The key exists and its version is exactly this.
    Version(Vec<u8>, u64),
    /// The key exists and holds exactly this value.
    ValueEquals(Vec<u8>, Vec<u8>),
}

impl Condition {
    /// Returns the key the condition is about.
    pub fn key(&self) -> &[u8] {
        match self {
            Condition::Absent(k) | Condition::Version(k, _) | Condition::ValueEquals(k, _) => k,
        }
    }
}

/// A change applied by a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Stores `value` under `key`; with a TTL the key disappears after that long.
    Put { key: Vec<u8>, value: Vec<u8>, ttl: Option<Duration> },
    /// Removes `key` (a no-op when absent).
    Delete { key: Vec<u8> },
}

impl Mutation {
    /// Returns a put without expiry.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Mutation::Put { key: key.into(), value: value.into(), ttl: None }
    }

    /// Returns a put that expires after `ttl`.
    pub fn put_with_ttl(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, ttl: Duration) -> Self {
        Mutation::Put { key: key.into(), value: value.into(), ttl: Some(ttl) }
    }

    /// Returns a delete.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Mutation::Delete { key: key.into() }
    }

    /// Returns the key the mutation changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Mutation::Put { key, .. } | Mutation::Delete { key } => key,
        }
    }
}

/// What a watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: Vec<u8>,
    /// The new value for a put; empty for a delete.
    pub value: Vec<u8>,
    /// The revision of the write that made this change.
    pub revision: u64,
}

/// Limits a backend enforces; writes over them fail with [`StoreError::LimitExceeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most conditions + mutations in one write.
    pub max_ops_per_write: usize,
    /// Largest total size in bytes of one write's keys and values.
    pub max_write_bytes: usize,
    /// Largest key in bytes.
    pub max_key_bytes: usize,
}

/// Errors of the storage layer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A write condition did not hold; nothing was written.
    #[error("conflict: condition on key {key:?} did not hold")]
    Conflict { key: String },
    /// The request is over a backend limit; nothing was written.
    #[error("{what} is {actual}, over the limit of {limit}")]
    LimitExceeded { what: &'static str, limit: usize, actual: usize },
    /// The request itself is malformed (empty key, a key written twice in one write...).
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// The backend cannot be reached or timed out; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The requested watch revision has been compacted away.
    #[error("revision {0} has been compacted")]
    Compacted(u64),
    /// The backend failed in a way that retrying will not fix (I/O error, corruption).
    #[error("store failure: {0}")]
    Backend(String),
}

impl StoreError {
    /// Returns a conflict error naming `key` (lossily shown as UTF-8).
    pub fn conflict(key: &[u8]) -> Self {
        StoreError::Conflict { key: String::from_utf8_lossy(key).into_owned() }
    }

    /// Returns true for errors a caller may retry (conflicts and unavailability).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::Unavailable(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage contract every service codes against.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Returns a short name of the backend (`memory`, `embedded`, `etcd`).
    fn backend(&self) -> &'static str;

    /// Returns the limits this backend enforces.
    fn limits(&self) -> Limits;

    /// Returns the value and version of `key`, or `None` when absent or expired.
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>>;

    /// Returns up to `limit` entries of `range` in `direction` order (limit 0 = backend
    /// maximum, [`MAX_SCAN_LIMIT`] for every backend; larger limits are clamped to it), plus
    /// where to continue.
    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page>;

    /// Applies `mutations` atomically if every condition holds and returns the new revision;
    /// otherwise writes nothing and fails with [`StoreError::Conflict`]. A key may appear at
    /// most once among the mutations. An `Ok` means the write is durable. A write without
    /// mutations only checks its conditions and returns the current revision.
    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64>;

    /// Returns every change under `prefix` with revision >= `from` (or only new changes when
    /// `from` is `None`), once each and in revision order.
    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>>;

    /// Makes every acknowledged write durable and releases background work (called on
    /// shutdown; the store stays usable).
    async fn flush(&self) -> Result<()>;

    /// Returns the store's current revision: a watch from the next one misses no change made
    /// after this call (read-then-watch without a gap). A write with neither conditions nor
    /// mutations, which every backend answers with the current revision.
    async fn current_revision(&self) -> Result<u64> {
        self.write(Vec::new(), Vec::new()).await
    }
}

/// A shared handle to any backend.
pub type DynStore = Arc<dyn Store>;

pub mod embedded;
pub mod etcd;
pub mod memory;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traced;
