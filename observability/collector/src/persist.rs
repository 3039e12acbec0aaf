//! Keeps the trace store in the embedded store (or any [`meshwork_storage::Store`]) so that
//! traces survive a restart. Each received export is written once, whole, as a segment:
//! `traces/seg/<sequence number>` (8 bytes, big-endian, so that a scan returns them in arrival
//! order) holding the arrival time (8 bytes, big-endian Unix ns) and the export's spans (an
//! OTLP `TracesData`), with a time-to-live of the store's maximum age as a safety net. The
//! [`TraceStore`] counts the stored traces with spans in each segment; a segment is deleted when
//! the last of them is evicted. On start the segments are loaded back in order, and those whose
//! traces no longer fit are deleted. Writes happen on a background task in batches; a full
//! queue drops segments from the persistent copy (never from the live view) and counts them.
//!
//! One write per export instead of one per trace: persisting costs a collector a small share of
//! its CPU per span instead of most of it (see `docs/benchmarks/tracing.md`). Records written by earlier
//! versions (`traces/rec/`, `traces/span/`) are not loaded; they expire by their time-to-live.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use meshwork_storage::{Direction, DynStore, KeyRange, Mutation, StoreError, scan_stream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::otlp::Export;
use super::store::{SegmentId, TraceStore};

/// Prefix of persisted segments: `traces/seg/` + 8-byte big-endian sequence number.
pub const PREFIX: &str = "traces/seg/";

/// Prefixes of what earlier versions persisted. They are no longer read and expire by their
/// time-to-live.
pub const LEGACY_PREFIXES: [&str; 2] = ["traces/rec/", "traces/span/"];

/// Returns the key of segment `id`.
pub fn key(id: SegmentId) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX.len() + 8);
    k.extend_from_slice(PREFIX.as_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Returns the segment id a key names.
fn parse_key(key: &[u8]) -> Option<SegmentId> {
    let rest = key.strip_prefix(PREFIX.as_bytes())?;
    Some(SegmentId::from_be_bytes(rest.try_into().ok()?))
}

/// Returns the stored value of a segment: arrival time, then the export's bytes (an
/// `ExportTraceServiceRequest`, read back as the `TracesData` of the same wire format).
pub fn encode(seen_ns: u64, export: &Export) -> Vec<u8> {
    [&seen_ns.to_be_bytes()[..], &export.encoded].concat()
}

/// Returns the arrival time and export of a stored segment value.
fn decode(value: Vec<u8>) -> Result<(u64, Export), String> {
    let seen = value.first_chunk::<8>().ok_or("shorter than its 8-byte arrival time")?;
    let seen = u64::from_be_bytes(*seen);
    let export = Export::decode(Bytes::from(value).slice(8..)).map_err(|e| e.to_string())?;
    Ok((seen, export))
}

/// What loading found.
pub struct Loaded {
    /// Spans read.
    pub spans: usize,
    /// The next free segment id.
    pub next_segment: SegmentId,
    /// Segments no longer needed (their traces did not fit, or they do not decode).
    pub dead: Vec<SegmentId>,
}

/// Loads every persisted segment into `traces`, in arrival order. Values that do not decode
/// are skipped (and logged) and reported dead, never fatal.
pub async fn load(store: &DynStore, traces: &TraceStore) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded { spans: 0, next_segment: 0, dead: Vec::new() };
    // Page by page: the persisted segments may be far larger than memory wants twice over.
    let mut entries = scan_stream(store.clone(), KeyRange::prefix(PREFIX), Direction::Forward, 0);
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        let Some(id) = parse_key(&entry.key) else { continue };
        loaded.next_segment = loaded.next_segment.max(id + 1);
        // The value is kept as it is (the store's spans are slices of it), not copied.
        match decode(entry.value) {
            Ok((seen, export)) => {
                loaded.spans += export.index.span_count();
                let (_, dead) = traces.ingest_evicting(export.index, Some(id), seen);
                loaded.dead.extend(dead);
            }
            Err(e) => {
                tracing::warn!(error = %e, segment = id, "skipping an undecodable persisted trace segment");
                loaded.dead.push(id);
            }
        }
    }
    Ok(loaded)
}

enum Job {
    Save(SegmentId, Vec<u8>),
    Delete(Vec<SegmentId>),
}

/// The sending side of the background writer.
#[derive(Clone)]
pub struct Persister {
    tx: mpsc::Sender<Job>,
    next_segment: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl Persister {
    /// Returns the id of the next segment.
    pub fn next_segment(&self) -> SegmentId {
        self.next_segment.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a segment for writing (dropped and counted when the queue is full).
    pub fn save(&self, id: SegmentId, value: Vec<u8>) {
        if self.tx.try_send(Job::Save(id, value)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues the deletion of segments no longer needed (a dropped deletion leaves them to
    /// their time-to-live).
    pub fn delete(&self, dead: Vec<SegmentId>) {
        if !dead.is_empty() && self.tx.try_send(Job::Delete(dead)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns how many segments (or deletions) the full queue has dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer on `store`, numbering new segments from `next_segment`; it ends when every
/// [`Persister`] is dropped.
pub fn spawn(store: DynStore, ttl: Duration, next_segment: SegmentId) -> (Persister, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Job>(1024);
    let task = tokio::spawn(async move {
        let limits = store.limits();
        let (max_ops, max_bytes) = (limits.max_ops_per_write.clamp(1, 500), limits.max_write_bytes.max(1));
        while let Some(job) = rx.recv().await {
            let mut jobs = vec![job];
            while jobs.len() < 64 {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            // Jobs in order: a segment saved and deleted in the same batch ends up deleted.
            let mutations: Vec<Mutation> = jobs
                .into_iter()
                .flat_map(|job| match job {
                    Job::Save(id, value) => vec![Mutation::put_with_ttl(key(id), value, ttl)],
                    Job::Delete(ids) => ids.into_iter().map(|id| Mutation::delete(key(id))).collect(),
                })
                .collect();
            for chunk in chunks(dedup_keys(mutations), max_ops, max_bytes) {
                let n = chunk.len();
                if let Err(e) = store.write(Vec::new(), chunk).await {
                    tracing::warn!(error = %e, mutations = n, "could not persist traces");
                }
            }
        }
    });
    (Persister { tx, next_segment: Arc::new(AtomicU64::new(next_segment)), dropped: Arc::new(AtomicU64::new(0)) }, task)
}

/// Splits mutations into writes of at most `max_ops` mutations and (unless one alone is
/// larger) `max_bytes` bytes.
fn chunks(mutations: Vec<Mutation>, max_ops: usize, max_bytes: usize) -> Vec<Vec<Mutation>> {
    let mut out: Vec<Vec<Mutation>> = Vec::new();
    let mut bytes = 0;
    for m in mutations {
        let size = m.key().len() + if let Mutation::Put { value, .. } = &m { value.len() } else { 0 };
        match out.last_mut() {
            Some(last) if last.len() < max_ops && bytes + size <= max_bytes => {
                bytes += size;
                last.push(m);
            }
            _ => {
                bytes = size;
                out.push(vec![m]);
            }
        }
    }
    out
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
    use crate::otlp::Sink;
    use crate::store::StoreLimits;
    use crate::store::tests::{batch, indexed, span};
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    fn export(resource_spans: Vec<ResourceSpans>) -> Export {
        Export::encode(resource_spans).unwrap()
    }

    async fn open(dir: &std::path::Path) -> DynStore {
        Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir).await.unwrap())
    }

    /// The collector's path: a sink persisting into `store`, numbering from what is stored.
    async fn start_sink(store: &DynStore, limits: StoreLimits) -> (Sink, JoinHandle<()>, Loaded) {
        let traces = Arc::new(TraceStore::new(limits));
        let loaded = load(store, &traces).await.unwrap();
        let (persister, task) = spawn(store.clone(), limits.max_age, loaded.next_segment);
        (Sink { traces, persister: Some(persister) }, task, loaded)
    }

    async fn segment_ids(store: &DynStore) -> Vec<SegmentId> {
        let page = store.scan(KeyRange::prefix(PREFIX), 0, Direction::Forward).await.unwrap();
        page.entries.iter().map(|e| parse_key(&e.key).unwrap()).collect()
    }

    #[tokio::test]
    async fn spans_survive_a_restart_and_evicted_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let limits = StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600), ..Default::default() };
        let (sink, task, _) = start_sink(&store, limits).await;
        for t in 1..=4u8 {
            let resource_spans = vec![batch("svc", vec![span(t, 1, None, "op", 10, 20, vec![])])];
            sink.accept(Export::encode(resource_spans).unwrap());
        }
        let live = sink.traces.clone();
        drop(sink);
        task.await.unwrap();
        assert_eq!(live.span_count(), 3);
        // One segment per export; trace 1's was deleted when it was evicted for size.
        assert_eq!(segment_ids(&store).await, vec![1, 2, 3]);

        let (sink, task, loaded) = start_sink(&store, limits).await;
        assert_eq!((loaded.spans, loaded.next_segment, loaded.dead.len()), (3, 4, 0));
        assert!(sink.traces.trace(&[1; 16]).is_none());
        for t in 2..=4u8 {
            assert_eq!(sink.traces.trace(&[t; 16]).unwrap(), live.trace(&[t; 16]).unwrap());
        }
        // Numbering goes on after a restart: a new export overwrites nothing.
        sink.accept(export(vec![batch("svc", vec![span(5, 1, None, "op", 10, 20, vec![])])]));
        drop(sink);
        task.await.unwrap();
        assert_eq!(segment_ids(&store).await, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn a_segment_is_deleted_with_the_last_of_its_traces() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let limits = StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600), ..Default::default() };
        let (sink, task, _) = start_sink(&store, limits).await;
        // Segment 0 holds traces 1 and 2; segment 1 a late span of trace 2 (another process).
        sink.accept(export(vec![batch(
            "gw",
            vec![span(1, 1, None, "a", 10, 20, vec![]), span(2, 1, None, "b", 10, 20, vec![])],
        )]));
        sink.accept(export(vec![batch("svc", vec![span(2, 2, Some(1), "c", 12, 18, vec![])])]));
        // Trace 3 evicts trace 1: segment 0 still holds trace 2.
        sink.accept(export(vec![batch("gw", vec![span(3, 1, None, "d", 10, 20, vec![])])]));
        // Trace 4 evicts trace 2: segments 0 and 1 hold nothing stored any more.
        sink.accept(export(vec![batch("gw", vec![span(4, 1, None, "e", 10, 20, vec![])])]));
        drop(sink);
        task.await.unwrap();
        assert_eq!(segment_ids(&store).await, vec![2, 3]);
    }

    #[test]
    fn the_store_reports_a_segment_dead_only_when_its_last_trace_goes() {
        let traces =
            TraceStore::new(StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600), ..Default::default() });
        let now = traces.now_ns();
        let ingest = |segment, spans| traces.ingest_evicting(indexed(vec![batch("gw", spans)]), Some(segment), now).1;
        let two = vec![span(1, 1, None, "a", 10, 20, vec![]), span(2, 1, None, "b", 10, 20, vec![])];
        assert_eq!(ingest(0, two), Vec::<SegmentId>::new());
        assert_eq!(ingest(1, vec![span(2, 2, Some(1), "c", 12, 18, vec![])]), Vec::<SegmentId>::new());
        // Trace 1 goes; segment 0 still holds trace 2.
        assert_eq!(ingest(2, vec![span(3, 1, None, "d", 10, 20, vec![])]), Vec::<SegmentId>::new());
        // Trace 2 goes: segments 0 and 1 are dead.
        assert_eq!(ingest(3, vec![span(4, 1, None, "e", 10, 20, vec![])]), vec![0, 1]);
        // An export of which nothing is kept is dead at once.
        let mut bad = span(5, 1, None, "bad", 0, 1, vec![]);
        bad.span_id.truncate(2);
        assert_eq!(ingest(4, vec![bad]), vec![4]);
    }

    #[tokio::test]
    async fn undecodable_segments_are_skipped_and_dropped_and_legacy_keys_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let export = export(vec![batch("svc", vec![span(7, 1, None, "op", 10, 20, vec![])])]);
        let mut junk_key =
            LEGACY_PREFIXES.iter().map(|p| Mutation::put(format!("{p}00/00"), b"junk".to_vec())).collect::<Vec<_>>();
        junk_key
            .push(Mutation::put(key(0), encode(meshwork_clock::Clock::unix_ns(&meshwork_clock::SystemClock), &export)));
        junk_key.push(Mutation::put(key(1), b"bad".to_vec()));
        store.write(Vec::new(), junk_key).await.unwrap();
        let (sink, task, loaded) = start_sink(&store, StoreLimits::default()).await;
        assert_eq!((loaded.spans, loaded.next_segment, loaded.dead.clone()), (1, 2, vec![1]));
        assert!(sink.traces.trace(&[7; 16]).is_some());
        // The collector deletes what it reported dead.
        sink.persister.as_ref().unwrap().delete(loaded.dead);
        drop(sink);
        task.await.unwrap();
        assert_eq!(segment_ids(&store).await, vec![0]);
    }
}
