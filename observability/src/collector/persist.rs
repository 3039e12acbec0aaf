//! Keeps the trace store in the embedded store (or any [`meshwork_storage::Store`]) so that
//! traces survive a restart: the spans of each trace in each received export are written as one
//! record (an OTLP `ResourceSpans` holding just them) under `traces/rec/<trace id><record id>`
//! (binary ids; the record id is the span id of its first span) with a time-to-live of the
//! store's maximum age; the records of traces evicted for size are deleted (the
//! [`TraceStore`] remembers each trace's record ids), and on start everything under the prefix
//! is loaded back. Writes happen on a background task in batches; a full queue drops records
//! from the persistent copy (never from the live view) and counts them.
//!
//! Spans persisted one per key by earlier versions (`traces/span/<hex>/<hex>`) are not loaded;
//! they expire by their time-to-live.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshwork_storage::{Direction, DynStore, KeyRange, Mutation, StoreError};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, message};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::store::{Evicted, RecordId, TraceId, TraceStore};

/// Prefix of persisted records: `traces/rec/` + 16-byte trace id + 8-byte record id (binary).
pub const PREFIX: &str = "traces/rec/";

/// Prefix of the spans persisted one per key by earlier versions (hex ids). They are no longer
/// read and expire by their time-to-live.
pub const LEGACY_PREFIX: &str = "traces/span/";

/// Returns the key of one persisted record.
pub fn key(trace: &TraceId, record: &RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX.len() + 24);
    k.extend_from_slice(PREFIX.as_bytes());
    k.extend_from_slice(trace);
    k.extend_from_slice(record);
    k
}

/// Returns the (trace id, record id) a record key names.
fn parse_key(key: &[u8]) -> Option<(TraceId, RecordId)> {
    let rest = key.strip_prefix(PREFIX.as_bytes())?;
    if rest.len() != 24 {
        return None;
    }
    Some((rest[..16].try_into().ok()?, rest[16..].try_into().ok()?))
}

/// One persisted record: the spans of one trace from one scope of one export, encoded as an
/// OTLP `ResourceSpans` holding just them.
pub struct Record {
    pub trace_id: TraceId,
    /// The span id of the record's first span.
    pub id: RecordId,
    pub value: Vec<u8>,
}

/// Returns the (trace id, span id) of a span the store accepts, `None` for malformed ids
/// (the same rule as [`TraceStore::ingest`]).
fn ids(span: &Span) -> Option<(TraceId, RecordId)> {
    let trace: TraceId = span.trace_id.as_slice().try_into().ok()?;
    let id: RecordId = span.span_id.as_slice().try_into().ok()?;
    (trace != [0; 16]).then_some((trace, id))
}

/// Groups the spans of an export into records, encoded straight from the export (no copy of
/// the spans or the resource).
pub fn records(resource_spans: &[ResourceSpans]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut groups: HashMap<TraceId, (RecordId, Vec<&Span>)> = HashMap::new();
    let mut order: Vec<TraceId> = Vec::new();
    for rs in resource_spans {
        for scope in &rs.scope_spans {
            for span in &scope.spans {
                let Some((trace, id)) = ids(span) else { continue };
                groups
                    .entry(trace)
                    .or_insert_with(|| {
                        order.push(trace);
                        (id, Vec::new())
                    })
                    .1
                    .push(span);
            }
            for trace in order.drain(..) {
                let Some((id, spans)) = groups.remove(&trace) else { continue };
                // ResourceSpans { resource = 1, scope_spans = 2 }; ScopeSpans { scope = 1, spans = 2 }.
                let scope_len = scope.scope.as_ref().map_or(0, |s| message::encoded_len(1, s))
                    + spans.iter().map(|s| message::encoded_len(2, *s)).sum::<usize>();
                let mut value = Vec::with_capacity(
                    rs.resource.as_ref().map_or(0, |r| message::encoded_len(1, r)) + 1 + 10 + scope_len,
                );
                if let Some(resource) = &rs.resource {
                    message::encode(1, resource, &mut value);
                }
                encode_key(2, WireType::LengthDelimited, &mut value);
                encode_varint(scope_len as u64, &mut value);
                if let Some(s) = &scope.scope {
                    message::encode(1, s, &mut value);
                }
                for span in spans {
                    message::encode(2, span, &mut value);
                }
                out.push(Record { trace_id: trace, id, value });
            }
        }
    }
    out
}

/// Loads every persisted record into `traces`; returns how many spans were read. Values that
/// do not decode are skipped (and counted in the log), never fatal.
pub async fn load(store: &DynStore, traces: &TraceStore) -> Result<usize, StoreError> {
    let mut range = KeyRange::prefix(PREFIX);
    let mut read = 0;
    loop {
        let page = store.scan(range.clone(), 0, Direction::Forward).await?;
        let mut batch = Vec::with_capacity(page.entries.len());
        let mut ids = Vec::with_capacity(page.entries.len());
        for entry in &page.entries {
            let Some(id) = parse_key(&entry.key) else { continue };
            match ResourceSpans::decode(entry.value.as_slice()) {
                Ok(rs) => {
                    read += rs.scope_spans.iter().map(|s| s.spans.len()).sum::<usize>();
                    batch.push(rs);
                    ids.push(id);
                }
                Err(e) => tracing::warn!(error = %e, "skipping an undecodable persisted trace record"),
            }
        }
        traces.ingest_evicting(batch, &ids);
        match page.next {
            Some(next) => range.start = std::ops::Bound::Included(next),
            None => return Ok(read),
        }
    }
}

enum Job {
    Save(Vec<Record>),
    Delete(Vec<Evicted>),
}

/// The sending side of the background writer.
#[derive(Clone)]
pub struct Persister {
    tx: mpsc::Sender<Job>,
    dropped: Arc<AtomicU64>,
}

impl Persister {
    /// Queues records for writing (dropped and counted when the queue is full).
    pub fn save(&self, records: Vec<Record>) {
        let n = records.len();
        if n > 0 && self.tx.try_send(Job::Save(records)).is_err() {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Queues the deletion of evicted traces.
    pub fn delete(&self, evicted: Vec<Evicted>) {
        if !evicted.is_empty() && self.tx.try_send(Job::Delete(evicted)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns how many records (or deletions) the full queue has dropped.
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
                    Job::Save(records) => mutations.extend(
                        records.into_iter().map(|r| Mutation::put_with_ttl(key(&r.trace_id, &r.id), r.value, ttl)),
                    ),
                    Job::Delete(evicted) => {
                        for (trace, records) in evicted {
                            mutations.extend(records.iter().map(|r| Mutation::delete(key(&trace, r))));
                        }
                    }
                }
            }
            let mut mutations = dedup_keys(mutations);
            while !mutations.is_empty() {
                let rest = mutations.split_off(mutations.len().min(max_ops));
                let chunk = std::mem::replace(&mut mutations, rest);
                let n = chunk.len();
                if let Err(e) = store.write(Vec::new(), chunk).await {
                    tracing::warn!(error = %e, records = n, "could not persist traces");
                }
            }
        }
    });
    (Persister { tx, dropped: Arc::new(AtomicU64::new(0)) }, task)
}

/// Keeps the last mutation of each key (a write may name a key once).
fn dedup_keys(mutations: Vec<Mutation>) -> Vec<Mutation> {
    let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(mutations.len());
    for (i, m) in mutations.iter().enumerate() {
        last.insert(m.key(), i);
    }
    if last.len() == mutations.len() {
        return mutations;
    }
    let keep: Vec<bool> = mutations.iter().enumerate().map(|(i, m)| last.get(m.key()) == Some(&i)).collect();
    mutations.into_iter().zip(keep).filter(|(_, k)| *k).map(|(m, _)| m).collect()
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
                let records = records(&export);
                let ids: Vec<_> = records.iter().map(|r| (r.trace_id, r.id)).collect();
                persister.save(records);
                let (_, evicted) = traces.ingest_evicting(export, &ids);
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

    #[tokio::test]
    async fn one_record_per_trace_and_export_and_legacy_keys_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
        store.write(Vec::new(), vec![Mutation::put(format!("{LEGACY_PREFIX}00/00"), b"junk".to_vec())]).await.unwrap();
        let limits = StoreLimits::default();
        let traces = TraceStore::new(limits);
        let (persister, task) = spawn(store.clone(), limits.max_age);
        // Two exports (two processes): trace 1 has two spans in the first and one in the second,
        // trace 2 one span; a span with a malformed id is neither stored nor persisted.
        let mut bad = span(3, 1, None, "bad", 0, 1, vec![]);
        bad.span_id.truncate(2);
        let exports = [
            vec![batch(
                "gw",
                vec![
                    span(1, 1, None, "a", 10, 90, vec![]),
                    span(2, 1, None, "c", 5, 6, vec![]),
                    span(1, 2, Some(1), "b", 20, 80, vec![]),
                    bad,
                ],
            )],
            vec![batch("svc", vec![span(1, 3, Some(2), "d", 30, 70, vec![])])],
        ];
        let mut written = 0;
        for export in exports {
            let records = records(&export);
            written += records.len();
            let ids: Vec<_> = records.iter().map(|r| (r.trace_id, r.id)).collect();
            persister.save(records);
            let (_, evicted) = traces.ingest_evicting(export, &ids);
            assert!(evicted.is_empty());
        }
        assert_eq!(written, 3);
        drop(persister);
        task.await.unwrap();
        let page = store.scan(KeyRange::prefix(PREFIX), 0, Direction::Forward).await.unwrap();
        assert_eq!(page.entries.len(), 3);
        assert!(page.entries.iter().all(|e| e.key.len() == PREFIX.len() + 24));

        let reloaded = TraceStore::new(limits);
        assert_eq!(load(&store, &reloaded).await.unwrap(), 4);
        assert_eq!(reloaded.trace(&[1; 16]).unwrap(), traces.trace(&[1; 16]).unwrap());
        assert_eq!(reloaded.trace(&[2; 16]).unwrap(), traces.trace(&[2; 16]).unwrap());
        assert_eq!(reloaded.span_count(), 4);
    }
}
