//! Keeps the trace store in the embedded store (or any [`meshwork_storage::Store`]) so that
//! traces survive a restart: every received span is written under
//! `traces/span/<trace id>/<span id>` (an OTLP `ResourceSpans` holding just that span) with a
//! time-to-live of the store's maximum age, spans of traces evicted for size are deleted, and on
//! start everything under the prefix is loaded back. Writes happen on a background task in
//! batches; a full queue drops spans from the persistent copy (never from the live view) and
//! counts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshwork_storage::{Direction, DynStore, KeyRange, Mutation, StoreError};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::jaeger::hex;
use super::store::{Evicted, TraceStore};

/// Prefix of persisted spans.
pub const PREFIX: &str = "traces/span/";

/// Returns the key of one persisted span.
pub fn key(trace: &[u8], span: &[u8]) -> Vec<u8> {
    format!("{PREFIX}{}/{}", hex(trace), hex(span)).into_bytes()
}

/// Loads every persisted span into `traces`; returns how many spans were read. Values that do
/// not decode are skipped (and counted in the log), never fatal.
pub async fn load(store: &DynStore, traces: &TraceStore) -> Result<usize, StoreError> {
    let mut range = KeyRange::prefix(PREFIX);
    let mut read = 0;
    loop {
        let page = store.scan(range.clone(), 0, Direction::Forward).await?;
        let mut batch = Vec::with_capacity(page.entries.len());
        for entry in &page.entries {
            match ResourceSpans::decode(entry.value.as_slice()) {
                Ok(rs) => batch.push(rs),
                Err(e) => tracing::warn!(error = %e, "skipping an undecodable persisted span"),
            }
        }
        read += batch.len();
        traces.ingest(batch);
        match page.next {
            Some(next) => range.start = std::ops::Bound::Included(next),
            None => return Ok(read),
        }
    }
}

enum Job {
    Save(Vec<ResourceSpans>),
    Delete(Vec<Evicted>),
}

/// The sending side of the background writer.
#[derive(Clone)]
pub struct Persister {
    tx: mpsc::Sender<Job>,
    dropped: Arc<AtomicU64>,
}

impl Persister {
    /// Queues spans for writing (dropped and counted when the queue is full).
    pub fn save(&self, spans: Vec<ResourceSpans>) {
        let n: usize = spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum();
        if self.tx.try_send(Job::Save(spans)).is_err() {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Queues the deletion of evicted traces.
    pub fn delete(&self, evicted: Vec<Evicted>) {
        if !evicted.is_empty() && self.tx.try_send(Job::Delete(evicted)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns how many spans (or deletions) the full queue has dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer on `store`; it ends when every [`Persister`] is dropped.
pub fn spawn(store: DynStore, ttl: Duration) -> (Persister, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Job>(1024);
    let task = tokio::spawn(async move {
        let max_ops = store.limits().max_ops_per_write.clamp(1, 500);
        while let Some(job) = rx.recv().await {
            let mut jobs = vec![job];
            while jobs.len() < 64 {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let mut mutations = Vec::new();
            for job in jobs {
                match job {
                    Job::Save(batch) => mutations.extend(batch.into_iter().flat_map(|rs| one_per_span(rs, ttl))),
                    Job::Delete(evicted) => {
                        for (trace, spans) in evicted {
                            mutations.extend(spans.iter().map(|span| Mutation::delete(key(&trace, span))));
                        }
                    }
                }
            }
            for chunk in dedup_keys(mutations).chunks(max_ops) {
                if let Err(e) = store.write(Vec::new(), chunk.to_vec()).await {
                    tracing::warn!(error = %e, spans = chunk.len(), "could not persist spans");
                }
            }
        }
    });
    (Persister { tx, dropped: Arc::new(AtomicU64::new(0)) }, task)
}

/// Splits an export into one put per span, each a `ResourceSpans` of that span alone.
fn one_per_span(rs: ResourceSpans, ttl: Duration) -> Vec<Mutation> {
    let mut out = Vec::new();
    for scope in rs.scope_spans {
        for span in scope.spans {
            let k = key(&span.trace_id, &span.span_id);
            let single = ResourceSpans {
                resource: rs.resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope: scope.scope.clone(),
                    spans: vec![span],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            };
            out.push(Mutation::put_with_ttl(k, single.encode_to_vec(), ttl));
        }
    }
    out
}

/// Keeps the last mutation of each key (a write may name a key once).
fn dedup_keys(mutations: Vec<Mutation>) -> Vec<Mutation> {
    let mut last: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    for (i, m) in mutations.iter().enumerate() {
        last.insert(m.key().to_vec(), i);
    }
    mutations.into_iter().enumerate().filter(|(i, m)| last.get(m.key()) == Some(i)).map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::store::StoreLimits;
    use crate::collector::store::tests::{batch, span};

    #[tokio::test]
    async fn spans_survive_a_restart_and_evictions_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
        let limits = StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600) };
        {
            let traces = TraceStore::new(limits);
            let (persister, task) = spawn(store.clone(), limits.max_age);
            for t in 1..=4u8 {
                let export = vec![batch("svc", vec![span(t, 1, None, "op", 10, 20, vec![])])];
                persister.save(export.clone());
                let (_, evicted) = traces.ingest_evicting(export);
                persister.delete(evicted);
            }
            drop(persister);
            task.await.unwrap();
            assert_eq!(traces.span_count(), 3);
        }
        // Trace 1 was evicted for size: deleted from the store as well.
        let reloaded = TraceStore::new(limits);
        assert_eq!(load(&store, &reloaded).await.unwrap(), 3);
        assert!(reloaded.trace(&[1; 16]).is_none());
        for t in 2..=4u8 {
            let trace = reloaded.trace(&[t; 16]).expect("persisted trace");
            assert_eq!(trace.spans[0].process_service, "svc");
        }
    }
}
