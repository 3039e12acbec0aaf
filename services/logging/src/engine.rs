//! The log store's engine: durable ingest with group commit, head chunks, chunk cuts, replay,
//! retention and the read side the queries use.
//!
//! * **Ingest.** A push is validated entry by entry (partial success), checked against the
//!   tenant's rate, split by stream over the committer tasks ([`Config::writer_shards`]; a
//!   stream always goes to the same one), encoded into write-ahead-log records of at most
//!   ~1 MiB and handed to the committers. A committer takes everything queued, writes all those
//!   records in one store write (the store fsyncs it: one fsync for a batch of batches), then
//!   applies them in sequence order to the in-memory head chunks and wakes the tails; only then
//!   is each push answered (a push spanning shards once every shard has answered). An
//!   acknowledged line is therefore in the store's log. Sequence numbers are global, and a
//!   stream's records are numbered and applied in order by its one committer, which is what
//!   replay's per-stream positions rely on.
//! * **Chunks.** A stream's head is cut ("sealed") when it would pass the target size (1 MiB of
//!   lines) or grows older than the maximum age. The flusher writes each sealed chunk in one
//!   store write: LZ4 data, bloom, metadata, and the stream record with the position of the
//!   last entry it holds (plus the label index the first time). Write-ahead-log records older
//!   than every stream's unflushed data are then deleted.
//! * **Replay.** On open, streams and chunk metadata are loaded, and every write-ahead-log
//!   record is replayed into the heads, skipping each stream's entries up to the position its
//!   chunks already hold: after a crash every acknowledged line is there once.
//! * **Retention.** Reads never return lines older than the tenant's retention; the sweeper
//!   deletes whole chunks past it, and streams left without data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::Clock;
use meshwork_storage::{Condition, Direction as ScanDirection, DynStore, KeyRange, Mutation, StoreError};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::chunk::{Bloom, Columns};
use crate::keys;
use crate::labels::{LabelError, LabelSet};
use crate::logql::ast::Matcher;
use crate::model::{Batch, ChunkMeta, LogEntry, Position, StreamBatch, StreamRecord};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names this engine's write-ahead log (`logging/wal/<instance>/`); one engine per instance
    /// name writes to a store at a time (default `main`).
    pub instance: String,
    /// A head is cut before its lines pass this many bytes (default 1 MiB; capped so that a
    /// chunk fits one etcd request).
    pub chunk_target_bytes: usize,
    /// A head older than this is cut (default 5 min).
    pub max_chunk_age: Duration,
    /// How often the flusher looks for old heads (default 1 s).
    pub flush_interval: Duration,
    /// Entries may arrive this much older than their stream's newest (default 1 h).
    pub out_of_order_window: Duration,
    /// Entries may be at most this far in the future (default 10 min).
    pub max_future: Duration,
    /// Retention of tenants without their own (default 7 days).
    pub default_retention: Duration,
    /// Retention per tenant.
    pub retention: HashMap<String, Duration>,
    /// Ingest rate per tenant, in line bytes per second (default 256 MiB/s).
    pub rate_bytes_per_sec: f64,
    /// Burst of the ingest rate, in bytes (default 512 MiB).
    pub burst_bytes: f64,
    /// How often the retention sweeper runs (default 60 s).
    pub sweep_interval: Duration,
    /// Longest line accepted (default 256 KiB).
    pub max_line_bytes: usize,
    /// Most structured-metadata pairs per entry (default 32).
    pub max_metadata_pairs: usize,
    /// Chunks fetched and scanned at once by a query (default 2 x cores).
    pub query_parallelism: usize,
    /// Committer tasks (default 1). Each stream belongs to one (by its fingerprint), so a
    /// stream's lines are numbered and applied in order, while different streams' group
    /// commits overlap: one writes and waits for its fsync while another applies the lines it
    /// just made durable. More than one is off by default: it measured no faster on two cores
    /// (ingest is CPU-bound), and a push spanning committers whose one part fails is answered
    /// with an error though the other part is durable, so a retry would store that part twice.
    pub writer_shards: usize,
    /// Decompressed chunks kept in memory for queries, in bytes (default 256 MiB; 0 = none).
    pub chunk_cache_bytes: u64,
    /// Decoded bloom filters kept in memory, in bytes (default 64 MiB).
    pub bloom_cache_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            instance: "main".into(),
            chunk_target_bytes: 1 << 20,
            max_chunk_age: Duration::from_secs(300),
            flush_interval: Duration::from_secs(1),
            out_of_order_window: Duration::from_secs(3600),
            max_future: Duration::from_secs(600),
            default_retention: Duration::from_secs(7 * 86400),
            retention: HashMap::new(),
            rate_bytes_per_sec: 256.0 * 1024.0 * 1024.0,
            burst_bytes: 512.0 * 1024.0 * 1024.0,
            sweep_interval: Duration::from_secs(60),
            max_line_bytes: 256 * 1024,
            max_metadata_pairs: 32,
            query_parallelism: 2 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            writer_shards: 1,
            chunk_cache_bytes: 256 << 20,
            bloom_cache_bytes: 64 << 20,
        }
    }
}

/// Errors of the engine.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// The tenant's ingest rate is exhausted; nothing was stored.
    #[error("tenant {tenant}: ingestion rate limit exceeded ({limit_bytes_per_sec} bytes/s); nothing stored")]
    RateLimited { tenant: String, limit_bytes_per_sec: u64 },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine has stopped.
    #[error("the log store is shutting down")]
    Stopped,
}

/// A stream as a push carries it, before validation.
#[derive(Debug, Clone)]
pub struct IncomingStream {
    /// The parsed labels, or why they were refused.
    pub labels: Result<LabelSet, LabelError>,
    /// The entries; `None` timestamps are refused.
    pub entries: Vec<IncomingEntry>,
}

/// An entry as a push carries it.
#[derive(Debug, Clone)]
pub struct IncomingEntry {
    /// Unix nanoseconds, if given.
    pub ts: Option<i64>,
    /// The line.
    pub line: String,
    /// Structured metadata.
    pub metadata: Vec<(String, String)>,
}

/// The answer to a push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Entries stored.
    pub accepted: u64,
    /// Entries rejected, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// The first few rejections.
    pub errors: Vec<String>,
}

impl PushOutcome {
    /// Returns the number of rejected entries.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn reject(&mut self, reason: &'static str, n: u64, detail: impl FnOnce() -> String) {
        *self.rejected.entry(reason).or_default() += n;
        if self.errors.len() < 10 {
            self.errors.push(detail());
        }
    }
}

/// Lines of one stream pushed together, as tails receive them.
#[derive(Debug, Clone)]
pub struct TailItem {
    /// The stream.
    pub labels: Arc<LabelSet>,
    /// Its new entries in push order.
    pub cols: Columns,
}

/// A stream's data that a query reads: stored chunks and in-memory blocks.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The stream's labels.
    pub labels: Arc<LabelSet>,
    /// Its fingerprint.
    pub fp: u64,
    /// Stored chunks overlapping the range.
    pub chunks: Vec<ChunkMeta>,
    /// Sealed and head blocks not yet stored.
    pub mem: Vec<Arc<Columns>>,
}

/// A sealed chunk to write: tenant, stream, labels, entries, last position, chunk id, whether the
/// stream's index and the tenant's registry entry are already stored.
type FlushWork = (String, u64, Arc<LabelSet>, Arc<Columns>, Position, u64, bool, bool);
/// Chunks past retention, and streams left without data.
type Expired = (Vec<(u64, ChunkMeta)>, Vec<(u64, Arc<LabelSet>)>);

struct Sealed {
    cols: Arc<Columns>,
    last: Position,
    first_seq: u64,
}

struct Stream {
    labels: Arc<LabelSet>,
    newest: i64,
    head: Columns,
    head_first_seq: Option<u64>,
    head_last: Position,
    head_since_ns: u64,
    sealed: Vec<Sealed>,
    chunks: Vec<ChunkMeta>,
    persisted: Position,
    next_chunk: u64,
    /// Its record and label index are in the store.
    indexed: bool,
}

impl Stream {
    fn new(labels: Arc<LabelSet>) -> Stream {
        Stream {
            labels,
            newest: i64::MIN,
            head: Columns::default(),
            head_first_seq: None,
            head_last: Position::default(),
            head_since_ns: 0,
            sealed: Vec::new(),
            chunks: Vec::new(),
            persisted: Position::default(),
            next_chunk: 0,
            indexed: false,
        }
    }

    fn seal(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let cols = Arc::new(std::mem::take(&mut self.head));
        let first_seq = self.head_first_seq.take().unwrap_or(self.head_last.seq);
        self.sealed.push(Sealed { cols, last: self.head_last, first_seq });
    }

    fn oldest_unflushed_seq(&self) -> Option<u64> {
        self.sealed.first().map(|s| s.first_seq).or(self.head_first_seq)
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for c in &self.chunks {
            lo = lo.min(c.min_ts);
            hi = hi.max(c.max_ts);
        }
        for cols in self.sealed.iter().map(|s| s.cols.as_ref()).chain(std::iter::once(&self.head)) {
            for &t in &cols.ts {
                lo = lo.min(t);
                hi = hi.max(t);
            }
        }
        (lo <= hi).then_some((lo, hi))
    }
}

struct Tenant {
    streams: HashMap<u64, Stream>,
    /// Label name -> value -> streams (the in-memory projection of the stored label index).
    postings: BTreeMap<String, BTreeMap<String, BTreeSet<u64>>>,
    tokens: f64,
    refilled_ns: u64,
    tail: broadcast::Sender<Arc<TailItem>>,
    registered: bool,
}

impl Tenant {
    fn new(burst: f64, now_ns: u64) -> Tenant {
        Tenant {
            streams: HashMap::new(),
            postings: BTreeMap::new(),
            tokens: burst,
            refilled_ns: now_ns,
            tail: broadcast::channel(4096).0,
            registered: false,
        }
    }

    fn stream(&mut self, fp: u64, labels: &Arc<LabelSet>) -> &mut Stream {
        if !self.streams.contains_key(&fp) {
            for (n, v) in labels.pairs() {
                self.postings.entry(n.clone()).or_default().entry(v.clone()).or_default().insert(fp);
            }
        }
        self.streams.entry(fp).or_insert_with(|| Stream::new(labels.clone()))
    }

    fn forget(&mut self, fp: u64) {
        if let Some(s) = self.streams.remove(&fp) {
            for (n, v) in s.labels.pairs() {
                if let Some(values) = self.postings.get_mut(n) {
                    if let Some(set) = values.get_mut(v) {
                        set.remove(&fp);
                        if set.is_empty() {
                            values.remove(v);
                        }
                    }
                    if values.is_empty() {
                        self.postings.remove(n);
                    }
                }
            }
        }
    }
}

struct State {
    tenants: HashMap<String, Tenant>,
    next_seq: u64,
    /// Write-ahead-log records in the store, applied to the heads.
    wal: BTreeSet<u64>,
}

struct Commit {
    records: Vec<(Vec<u8>, Batch)>,
    reply: oneshot::Sender<Result<(), EngineError>>,
}

/// The log store engine. Cheap to share (`Arc`).
pub struct Engine {
    store: DynStore,
    clock: Arc<dyn Clock>,
    cfg: Config,
    state: Mutex<State>,
    /// The committers' queues, by shard.
    commits: Vec<mpsc::UnboundedSender<Commit>>,
    flush_now: Arc<Notify>,
    /// One flush at a time: the flusher task and an explicit flush must not write the same
    /// sealed chunk twice.
    flushing: tokio::sync::Mutex<()>,
    /// Stored chunks are immutable: decompressed ones and blooms are cached by their identity.
    chunk_cache: moka::sync::Cache<ChunkId, Arc<Columns>>,
    bloom_cache: moka::sync::Cache<ChunkId, Arc<Bloom>>,
}

/// A stored chunk's identity: tenant, stream, chunk id.
pub type ChunkId = (Arc<str>, u64, u64);

/// The stored parts of a chunk that queries read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkPart {
    /// The LZ4-compressed entries.
    Data,
    /// The bloom filter.
    Bloom,
}

/// Largest write-ahead-log record (raw bytes of lines), so that one fits an etcd request.
const WAL_RECORD_BYTES: usize = 768 * 1024;

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the state half-updated in a way reads
    // would trip over (every update is a push or a swap), so a poisoned lock is still used.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Engine {
    /// Opens the engine on `store`: loads streams and chunk metadata, replays the
    /// write-ahead log, and starts the committer, the flusher and the retention sweeper on the
    /// current runtime (they stop when the engine is dropped).
    pub async fn open(store: DynStore, clock: Arc<dyn Clock>, mut cfg: Config) -> Result<Arc<Engine>, EngineError> {
        let limits = store.limits();
        cfg.chunk_target_bytes = cfg.chunk_target_bytes.clamp(1024, (limits.max_write_bytes / 2).max(1024));
        let now = clock.unix_ns();
        let mut state = State { tenants: HashMap::new(), next_seq: 1, wal: BTreeSet::new() };
        let tenants =
            meshwork_storage::scan_all(&store, KeyRange::prefix(keys::TENANTS), ScanDirection::Forward).await?;
        let mut max_seq = 0;
        for t in tenants {
            let name = String::from_utf8_lossy(&t.key[keys::TENANTS.len()..]).into_owned();
            let mut tenant = Tenant::new(cfg.burst_bytes, now);
            tenant.registered = true;
            for e in meshwork_storage::scan_all(&store, KeyRange::prefix(keys::streams(&name)), ScanDirection::Forward)
                .await?
            {
                let Ok(rec) = StreamRecord::decode(&e.value) else {
                    tracing::error!(key = %String::from_utf8_lossy(&e.key), "log store: corrupt stream record skipped");
                    continue;
                };
                let Ok(labels) = LabelSet::parse(&rec.labels) else { continue };
                let fp = labels.fingerprint();
                let s = tenant.stream(fp, &Arc::new(labels));
                s.persisted = rec.persisted;
                s.next_chunk = rec.next_chunk;
                s.indexed = true;
                max_seq = max_seq.max(rec.persisted.seq);
            }
            let prefix = keys::chunk_metas(&name);
            for e in
                meshwork_storage::scan_all(&store, KeyRange::prefix(prefix.clone()), ScanDirection::Forward).await?
            {
                let rest = &e.key[prefix.len()..];
                let fp =
                    std::str::from_utf8(&rest[..16.min(rest.len())]).ok().and_then(|h| u64::from_str_radix(h, 16).ok());
                let (Some(fp), Ok(meta)) = (fp, ChunkMeta::decode(&e.value)) else { continue };
                if let Some(s) = tenant.streams.get_mut(&fp) {
                    s.newest = s.newest.max(meta.max_ts);
                    s.chunks.push(meta);
                }
            }
            state.tenants.insert(name, tenant);
        }
        // Replay the write-ahead log, a few records at a time (each up to ~1 MiB).
        let mut range = KeyRange::prefix(keys::wal_prefix(&cfg.instance));
        loop {
            let page = store.scan(range.clone(), 8, ScanDirection::Forward).await?;
            for e in &page.entries {
                let Some(seq) = keys::wal_seq(&cfg.instance, &e.key) else { continue };
                match Batch::decode(&e.value) {
                    Ok(batch) => {
                        apply(&mut state, &cfg, seq, batch, now, true);
                        state.wal.insert(seq);
                        max_seq = max_seq.max(seq);
                    }
                    Err(err) => tracing::error!(seq, error = %err, "log store: corrupt write-ahead-log record skipped"),
                }
            }
            match page.next {
                Some(next) => range.start = std::ops::Bound::Included(next),
                None => break,
            }
        }
        state.next_seq = max_seq + 1;
        cfg.writer_shards = cfg.writer_shards.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..cfg.writer_shards).map(|_| mpsc::unbounded_channel()).unzip();
        let flush_now = Arc::new(Notify::new());
        let chunk_cache = moka::sync::Cache::builder()
            .max_capacity(cfg.chunk_cache_bytes)
            .weigher(|_: &ChunkId, c: &Arc<Columns>| {
                u32::try_from(c.text.len() + c.meta.len() + c.len() * 16).unwrap_or(u32::MAX)
            })
            .build();
        let bloom_cache = moka::sync::Cache::builder()
            .max_capacity(cfg.bloom_cache_bytes)
            .weigher(|_: &ChunkId, b: &Arc<Bloom>| u32::try_from(b.bytes()).unwrap_or(u32::MAX))
            .build();
        let interval = cfg.flush_interval;
        let engine = Arc::new(Engine {
            store,
            clock,
            cfg,
            state: Mutex::new(state),
            commits: senders,
            flush_now: flush_now.clone(),
            flushing: tokio::sync::Mutex::new(()),
            chunk_cache,
            bloom_cache,
        });
        for rx in receivers {
            tokio::spawn(committer(Arc::downgrade(&engine), rx));
        }
        tokio::spawn(flusher(Arc::downgrade(&engine), flush_now, interval));
        tokio::spawn(sweeper(Arc::downgrade(&engine)));
        Ok(engine)
    }

    /// Returns the engine's tunables.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Returns the current time in unix ns.
    pub fn now_ns(&self) -> i64 {
        self.clock.unix_ns() as i64
    }

    /// Returns the oldest time a query of `tenant` may see (now minus its retention).
    pub fn retention_floor(&self, tenant: &str) -> i64 {
        let r = self.cfg.retention.get(tenant).copied().unwrap_or(self.cfg.default_retention);
        self.now_ns().saturating_sub(duration_ns(r))
    }

    /// Validates and stores a push: rejected entries are counted by reason, the rest is
    /// durable when this returns `Ok`.
    pub async fn push(&self, tenant: &str, streams: Vec<IncomingStream>) -> Result<PushOutcome, EngineError> {
        let mut outcome = PushOutcome::default();
        let now = self.now_ns();
        let floor = self.retention_floor(tenant);
        let future = now.saturating_add(duration_ns(self.cfg.max_future));
        let window = duration_ns(self.cfg.out_of_order_window);
        let mut by_fp: HashMap<u64, StreamBatch> = HashMap::new();
        let mut order = Vec::new();
        let mut newest: HashMap<u64, i64> = HashMap::new();
        {
            let state = lock(&self.state);
            let known = state.tenants.get(tenant);
            for s in streams {
                let labels = match s.labels {
                    Ok(l) => l,
                    Err(e) => {
                        let reason =
                            if matches!(e, LabelError::TooMany(_)) { "too_many_labels" } else { "invalid_labels" };
                        outcome.reject(reason, s.entries.len() as u64, || format!("stream refused: {e}"));
                        continue;
                    }
                };
                let fp = labels.fingerprint();
                let newest = newest
                    .entry(fp)
                    .or_insert_with(|| known.and_then(|t| t.streams.get(&fp)).map(|s| s.newest).unwrap_or(i64::MIN));
                let batch = by_fp.entry(fp).or_insert_with(|| {
                    order.push(fp);
                    StreamBatch { labels: Arc::new(labels), fp, entries: Vec::new() }
                });
                for e in s.entries {
                    let name = || batch.labels.to_string();
                    let Some(ts) = e.ts else {
                        outcome.reject("missing_timestamp", 1, || format!("{}: entry without a timestamp", name()));
                        continue;
                    };
                    if e.line.len() > self.cfg.max_line_bytes {
                        outcome.reject("line_too_long", 1, || {
                            format!(
                                "{}: line of {} bytes, over the {} allowed",
                                name(),
                                e.line.len(),
                                self.cfg.max_line_bytes
                            )
                        });
                        continue;
                    }
                    if ts < floor.max(0) {
                        outcome
                            .reject("too_old", 1, || format!("{}: timestamp {ts} is older than the retention", name()));
                        continue;
                    }
                    if ts > future {
                        outcome.reject("too_far_in_future", 1, || {
                            format!("{}: timestamp {ts} is too far in the future", name())
                        });
                        continue;
                    }
                    if *newest != i64::MIN && ts < newest.saturating_sub(window) {
                        outcome.reject("too_far_behind", 1, || {
                            format!(
                                "{}: timestamp {ts} is more than the out-of-order window behind the stream's newest",
                                name()
                            )
                        });
                        continue;
                    }
                    if e.metadata.len() > self.cfg.max_metadata_pairs
                        || e.metadata
                            .iter()
                            .any(|(k, v)| !crate::labels::valid_name(k) || v.len() > crate::labels::MAX_VALUE_BYTES)
                    {
                        outcome.reject("invalid_metadata", 1, || format!("{}: malformed structured metadata", name()));
                        continue;
                    }
                    *newest = (*newest).max(ts);
                    batch.entries.push(LogEntry { ts, line: e.line, metadata: e.metadata });
                }
            }
        }
        let streams: Vec<StreamBatch> =
            order.into_iter().filter_map(|fp| by_fp.remove(&fp)).filter(|s| !s.entries.is_empty()).collect();
        let accepted: u64 = streams.iter().map(|s| s.entries.len() as u64).sum();
        if accepted == 0 {
            return Ok(outcome);
        }
        let bytes: usize = streams.iter().flat_map(|s| s.entries.iter()).map(|e| e.line.len()).sum();
        self.take_tokens(tenant, bytes as f64)?;
        // Each stream goes to its shard's committer; the records are encoded here, in parallel
        // with other pushes, rather than in the committers.
        let shards = self.commits.len();
        let mut by_shard: Vec<Vec<StreamBatch>> = (0..shards).map(|_| Vec::new()).collect();
        for s in streams {
            by_shard[(s.fp % shards as u64) as usize].push(s);
        }
        let mut waits = Vec::new();
        for (shard, streams) in by_shard.into_iter().enumerate() {
            if streams.is_empty() {
                continue;
            }
            let (reply, done) = oneshot::channel();
            let records = wal_records(tenant, streams);
            self.commits[shard].send(Commit { records, reply }).map_err(|_| EngineError::Stopped)?;
            waits.push(done);
        }
        for done in waits {
            done.await.map_err(|_| EngineError::Stopped)??;
        }
        outcome.accepted = accepted;
        Ok(outcome)
    }

    fn take_tokens(&self, tenant: &str, bytes: f64) -> Result<(), EngineError> {
        let now = self.clock.monotonic_ns();
        let mut state = lock(&self.state);
        let burst = self.cfg.burst_bytes;
        let t = state.tenants.entry(tenant.to_string()).or_insert_with(|| Tenant::new(burst, now));
        let elapsed = now.saturating_sub(t.refilled_ns) as f64 / 1e9;
        t.tokens = (t.tokens + elapsed * self.cfg.rate_bytes_per_sec).min(burst);
        t.refilled_ns = now;
        if t.tokens < bytes {
            return Err(EngineError::RateLimited {
                tenant: tenant.to_string(),
                limit_bytes_per_sec: self.cfg.rate_bytes_per_sec as u64,
            });
        }
        t.tokens -= bytes;
        Ok(())
    }

    /// Returns a receiver of every batch of lines stored for `tenant` from now on.
    pub fn subscribe(&self, tenant: &str) -> broadcast::Receiver<Arc<TailItem>> {
        let now = self.clock.monotonic_ns();
        let burst = self.cfg.burst_bytes;
        lock(&self.state).tenants.entry(tenant.to_string()).or_insert_with(|| Tenant::new(burst, now)).tail.subscribe()
    }

    /// Returns the streams of `tenant` matching every matcher with data in `[start, end)`,
    /// with the chunks and in-memory blocks to read.
    pub fn candidates(&self, tenant: &str, matchers: &[Matcher], start: i64, end: i64) -> Vec<Candidate> {
        let state = lock(&self.state);
        let Some(t) = state.tenants.get(tenant) else { return Vec::new() };
        // Narrow by the equality matchers through the label index, then check them all.
        let mut narrowed: Option<BTreeSet<u64>> = None;
        for m in matchers.iter().filter(|m| m.op == crate::logql::ast::MatchOp::Eq && !m.value.is_empty()) {
            let set = t.postings.get(&m.name).and_then(|v| v.get(&m.value)).cloned().unwrap_or_default();
            narrowed = Some(match narrowed {
                None => set,
                Some(prev) => prev.intersection(&set).copied().collect(),
            });
        }
        let fps: Vec<u64> = match narrowed {
            Some(set) => set.into_iter().collect(),
            None => t.streams.keys().copied().collect(),
        };
        let mut out = Vec::new();
        for fp in fps {
            let Some(s) = t.streams.get(&fp) else { continue };
            if !matchers.iter().all(|m| m.matches(s.labels.get(&m.name).unwrap_or(""))) {
                continue;
            }
            let chunks: Vec<ChunkMeta> =
                s.chunks.iter().filter(|c| c.max_ts >= start && c.min_ts < end).copied().collect();
            let mut mem: Vec<Arc<Columns>> = s.sealed.iter().map(|x| x.cols.clone()).collect();
            if !s.head.is_empty() {
                mem.push(Arc::new(s.head.clone()));
            }
            mem.retain(|c| c.ts.iter().any(|&t| t >= start && t < end));
            if chunks.is_empty() && mem.is_empty() {
                continue;
            }
            out.push(Candidate { labels: s.labels.clone(), fp, chunks, mem });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Returns the label sets of `tenant`'s streams with data overlapping `[start, end)`.
    pub fn stream_labels(&self, tenant: &str, start: i64, end: i64) -> Vec<Arc<LabelSet>> {
        let state = lock(&self.state);
        let Some(t) = state.tenants.get(tenant) else { return Vec::new() };
        let mut out: Vec<Arc<LabelSet>> = t
            .streams
            .values()
            .filter(|s| s.time_range().is_some_and(|(lo, hi)| hi >= start && lo < end))
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    /// Reads a stored chunk's bloom filter.
    pub async fn bloom(&self, tenant: &str, fp: u64, meta: &ChunkMeta) -> Result<Option<Arc<Bloom>>, EngineError> {
        let id: ChunkId = (Arc::from(tenant), fp, meta.id);
        if let Some(b) = self.bloom_cache.get(&id) {
            return Ok(Some(b));
        }
        let v = self.store.get(keys::chunk_bloom(tenant, fp, meta.min_ts, meta.id).as_bytes()).await?;
        let bloom = v.and_then(|v| Bloom::decode(&v.value).ok()).map(Arc::new);
        if let Some(b) = &bloom {
            self.bloom_cache.insert(id, b.clone());
        }
        Ok(bloom)
    }

    /// Returns a stored chunk's decompressed entries if cached.
    pub fn cached_chunk(&self, tenant: &str, fp: u64, meta: &ChunkMeta) -> Option<Arc<Columns>> {
        self.chunk_cache.get(&(Arc::from(tenant), fp, meta.id))
    }

    /// Caches a stored chunk's decompressed entries.
    pub fn cache_chunk(&self, tenant: &str, fp: u64, meta: &ChunkMeta, cols: Arc<Columns>) {
        if self.cfg.chunk_cache_bytes > 0 {
            self.chunk_cache.insert((Arc::from(tenant), fp, meta.id), cols);
        }
    }

    /// Reads the stored values of several chunks of one stream (their compressed data, or
    /// their blooms) with range scans instead of a read per chunk: the keys of a stream's chunks
    /// sort by time, so chunks that are neighbours in `metas` (sorted by time) are neighbours in
    /// the store. Returns the values in `metas`' order (`None`: gone, deleted by retention).
    pub async fn chunk_values(
        &self,
        tenant: &str,
        fp: u64,
        metas: &[ChunkMeta],
        part: ChunkPart,
    ) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let key = |m: &ChunkMeta| match part {
            ChunkPart::Data => keys::chunk_data(tenant, fp, m.min_ts, m.id),
            ChunkPart::Bloom => keys::chunk_bloom(tenant, fp, m.min_ts, m.id),
        };
        let mut wanted: Vec<(Vec<u8>, usize)> =
            metas.iter().enumerate().map(|(i, m)| (key(m).into_bytes(), i)).collect();
        wanted.sort();
        let mut out: Vec<Option<Vec<u8>>> = vec![None; metas.len()];
        let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else { return Ok(out) };
        if wanted.len() == 1 {
            out[0] = self.store.get(&first.0).await?.map(|v| v.value);
            return Ok(out);
        }
        let mut end = last.0.clone();
        end.push(0);
        let mut range = KeyRange::between(first.0.clone(), end);
        loop {
            // Other chunks of the stream may lie between (ruled out by time); they are dropped.
            let page = self.store.scan(range.clone(), wanted.len() + 4, ScanDirection::Forward).await?;
            for e in page.entries {
                if let Ok(at) = wanted.binary_search_by(|(k, _)| k.as_slice().cmp(&e.key)) {
                    out[wanted[at].1] = Some(e.value);
                }
            }
            match page.next {
                Some(next) => range.start = std::ops::Bound::Included(next),
                None => break,
            }
        }
        Ok(out)
    }

    /// Caches a decoded bloom filter.
    pub fn cache_bloom(&self, tenant: &str, fp: u64, meta: &ChunkMeta, bloom: Arc<Bloom>) {
        self.bloom_cache.insert((Arc::from(tenant), fp, meta.id), bloom);
    }

    /// Returns a stored chunk's decoded bloom filter if cached.
    pub fn cached_bloom(&self, tenant: &str, fp: u64, meta: &ChunkMeta) -> Option<Arc<Bloom>> {
        self.bloom_cache.get(&(Arc::from(tenant), fp, meta.id))
    }

    /// Reads a stored chunk's compressed data.
    pub async fn chunk(&self, tenant: &str, fp: u64, meta: &ChunkMeta) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.store.get(keys::chunk_data(tenant, fp, meta.min_ts, meta.id).as_bytes()).await?.map(|v| v.value))
    }

    /// Cuts every head and writes every sealed chunk now (shutdown; tests).
    pub async fn flush(&self) -> Result<(), EngineError> {
        {
            let mut state = lock(&self.state);
            for t in state.tenants.values_mut() {
                for s in t.streams.values_mut() {
                    s.seal();
                }
            }
        }
        self.flush_sealed().await?;
        self.truncate_wal().await
    }

    fn seal_old_heads(&self) {
        let now = self.clock.unix_ns();
        let max_age = self.cfg.max_chunk_age.as_nanos() as u64;
        let mut state = lock(&self.state);
        for t in state.tenants.values_mut() {
            for s in t.streams.values_mut() {
                if !s.head.is_empty() && now.saturating_sub(s.head_since_ns) >= max_age {
                    s.seal();
                }
            }
        }
    }

    async fn flush_sealed(&self) -> Result<(), EngineError> {
        let _one = self.flushing.lock().await;
        loop {
            // One chunk per stream per pass, oldest first, so that positions persist in order.
            let work: Vec<FlushWork> = {
                let mut state = lock(&self.state);
                let mut work = Vec::new();
                for (name, t) in state.tenants.iter_mut() {
                    let registered = t.registered;
                    for (fp, s) in t.streams.iter_mut() {
                        if let Some(first) = s.sealed.first() {
                            // Named by the last position it holds: a retried write (after an
                            // ambiguous failure) rewrites the same keys instead of a copy.
                            let id = (first.last.seq << 24) | u64::from(first.last.idx);
                            work.push((
                                name.clone(),
                                *fp,
                                s.labels.clone(),
                                first.cols.clone(),
                                first.last,
                                id,
                                s.indexed,
                                registered,
                            ));
                        }
                    }
                }
                work
            };
            if work.is_empty() {
                return Ok(());
            }
            // Different streams' chunks are compressed and written two at a time.
            let results: Vec<Result<(), EngineError>> =
                futures::stream::iter(work.into_iter().map(|w| self.flush_one(w))).buffer_unordered(2).collect().await;
            for r in results {
                r?;
            }
        }
    }

    async fn flush_one(&self, work: FlushWork) -> Result<(), EngineError> {
        let (tenant, fp, labels, cols, last, id, indexed, registered) = work;
        let (meta, muts) = tokio::task::spawn_blocking(move || {
            // Entries usually arrive in order: then the block is stored as it is, uncopied.
            let resorted;
            let sorted = if cols.is_sorted() {
                cols.as_ref()
            } else {
                resorted = cols.sorted();
                &resorted
            };
            let data = sorted.compress();
            let bloom = Bloom::of(&sorted.text).encode();
            let meta = ChunkMeta {
                id,
                min_ts: sorted.ts.first().copied().unwrap_or(0),
                max_ts: sorted.ts.last().copied().unwrap_or(0),
                count: sorted.len() as u32,
                raw_bytes: sorted.line_bytes() as u64,
                stored_bytes: (data.len() + bloom.len()) as u64,
            };
            let record = StreamRecord { labels: labels.to_string(), persisted: last, next_chunk: id + 1 };
            let mut muts = vec![
                Mutation::put(keys::chunk_data(&tenant, fp, meta.min_ts, id), data),
                Mutation::put(keys::chunk_bloom(&tenant, fp, meta.min_ts, id), bloom),
                Mutation::put(keys::chunk_meta(&tenant, fp, meta.min_ts, id), meta.encode()),
                Mutation::put(keys::stream(&tenant, fp), record.encode()),
            ];
            if !indexed {
                for (n, v) in labels.pairs() {
                    muts.push(Mutation::put(keys::label(&tenant, n, v, fp), Vec::new()));
                }
            }
            if !registered {
                muts.push(Mutation::put(keys::tenant(&tenant), Vec::new()));
            }
            (meta, (tenant, muts))
        })
        .await
        .map_err(|_| EngineError::Stopped)?;
        let (tenant, muts) = muts;
        self.store.write(Vec::new(), muts).await?;
        let mut state = lock(&self.state);
        if let Some(t) = state.tenants.get_mut(&tenant) {
            t.registered = true;
            if let Some(s) = t.streams.get_mut(&fp) {
                if !s.sealed.is_empty() {
                    let done = s.sealed.remove(0);
                    s.persisted = done.last;
                }
                s.chunks.push(meta);
                s.chunks.sort_by_key(|c| (c.min_ts, c.id));
                s.indexed = true;
            }
        }
        Ok(())
    }

    async fn truncate_wal(&self) -> Result<(), EngineError> {
        let _one = self.flushing.lock().await;
        let doomed: Vec<u64> = {
            let state = lock(&self.state);
            let oldest = state
                .tenants
                .values()
                .flat_map(|t| t.streams.values())
                .filter_map(Stream::oldest_unflushed_seq)
                .min()
                .unwrap_or(u64::MAX);
            state.wal.range(..oldest).copied().collect()
        };
        for group in doomed.chunks(100) {
            self.store
                .write(Vec::new(), group.iter().map(|s| Mutation::delete(keys::wal(&self.cfg.instance, *s))).collect())
                .await?;
            let mut state = lock(&self.state);
            for s in group {
                state.wal.remove(s);
            }
        }
        Ok(())
    }

    /// Deletes chunks past each tenant's retention and streams left without data.
    pub async fn sweep(&self) -> Result<u64, EngineError> {
        let mut deleted = 0;
        let tenants: Vec<String> = lock(&self.state).tenants.keys().cloned().collect();
        for tenant in tenants {
            let floor = self.retention_floor(&tenant);
            let (old, idle): Expired = {
                let mut state = lock(&self.state);
                let Some(t) = state.tenants.get_mut(&tenant) else { continue };
                let mut old = Vec::new();
                let mut idle = Vec::new();
                for (fp, s) in t.streams.iter_mut() {
                    for c in s.chunks.iter().filter(|c| c.max_ts < floor) {
                        old.push((*fp, *c));
                    }
                    // Gone from reads at once; the store follows below.
                    s.chunks.retain(|c| c.max_ts >= floor);
                    if s.chunks.is_empty() && s.sealed.is_empty() && s.head.is_empty() {
                        idle.push((*fp, s.labels.clone()));
                    }
                }
                for (fp, _) in &idle {
                    t.forget(*fp);
                }
                (old, idle)
            };
            for group in old.chunks(40) {
                let mut muts = Vec::new();
                for (fp, c) in group {
                    muts.push(Mutation::delete(keys::chunk_data(&tenant, *fp, c.min_ts, c.id)));
                    muts.push(Mutation::delete(keys::chunk_bloom(&tenant, *fp, c.min_ts, c.id)));
                    muts.push(Mutation::delete(keys::chunk_meta(&tenant, *fp, c.min_ts, c.id)));
                }
                self.store.write(Vec::new(), muts).await?;
                deleted += group.len() as u64;
            }
            for (fp, labels) in idle {
                let key = keys::stream(&tenant, fp);
                let Some(current) = self.store.get(key.as_bytes()).await? else { continue };
                let mut muts = vec![Mutation::delete(key.clone())];
                for (n, v) in labels.pairs() {
                    muts.push(Mutation::delete(keys::label(&tenant, n, v, fp)));
                }
                // Only if no new chunk of a re-created stream rewrote the record meanwhile.
                match self.store.write(vec![Condition::Version(key.into_bytes(), current.version)], muts).await {
                    Ok(_) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(deleted)
    }

    /// Returns (streams, head entries, stored chunks, write-ahead-log records) for diagnostics.
    pub fn stats(&self) -> (usize, usize, usize, usize) {
        let state = lock(&self.state);
        let streams = state.tenants.values().map(|t| t.streams.len()).sum();
        let heads = state
            .tenants
            .values()
            .flat_map(|t| t.streams.values())
            .map(|s| s.head.len() + s.sealed.iter().map(|x| x.cols.len()).sum::<usize>())
            .sum();
        let chunks = state.tenants.values().flat_map(|t| t.streams.values()).map(|s| s.chunks.len()).sum();
        (streams, heads, chunks, state.wal.len())
    }

    /// Returns the store.
    pub fn store(&self) -> &DynStore {
        &self.store
    }
}

/// Splits a push's streams into write-ahead-log records of at most [`WAL_RECORD_BYTES`] of
/// lines, each with its encoding.
fn wal_records(tenant: &str, streams: Vec<StreamBatch>) -> Vec<(Vec<u8>, Batch)> {
    let mut records = Vec::new();
    let mut current = Batch { tenant: tenant.to_string(), streams: Vec::new() };
    let mut size = 0;
    for mut s in streams {
        while !s.entries.is_empty() {
            let mut take = 0;
            while take < s.entries.len() && (take == 0 || size + s.entries[take].line.len() + 32 <= WAL_RECORD_BYTES) {
                size += s.entries[take].line.len() + 32;
                take += 1;
            }
            let rest = s.entries.split_off(take);
            current.streams.push(StreamBatch {
                labels: s.labels.clone(),
                fp: s.fp,
                entries: std::mem::replace(&mut s.entries, rest),
            });
            if size >= WAL_RECORD_BYTES {
                let full = std::mem::replace(&mut current, Batch { tenant: tenant.to_string(), streams: Vec::new() });
                records.push((full.encode(), full));
                size = 0;
            }
        }
    }
    if !current.streams.is_empty() {
        records.push((current.encode(), current));
    }
    records
}

/// Applies a committed record to the heads. On replay, entries already in a chunk are skipped.
fn apply(state: &mut State, cfg: &Config, seq: u64, batch: Batch, now_ns: u64, replay: bool) {
    let burst = cfg.burst_bytes;
    let tenant = state.tenants.entry(batch.tenant.clone()).or_insert_with(|| Tenant::new(burst, now_ns));
    let tail = tenant.tail.receiver_count() > 0;
    for sb in batch.streams {
        let s = tenant.stream(sb.fp, &sb.labels);
        let mut tail_cols = Columns::default();
        for (idx, e) in sb.entries.iter().enumerate() {
            let pos = Position { seq, idx: idx as u32 };
            if replay && pos <= s.persisted {
                continue;
            }
            if !s.head.is_empty() && s.head.line_bytes() + e.line.len() > cfg.chunk_target_bytes {
                s.seal();
            }
            if s.head.is_empty() {
                s.head_since_ns = now_ns;
            }
            s.head.push(e.ts, &e.line, &e.metadata);
            s.head_first_seq.get_or_insert(seq);
            s.head_last = pos;
            s.newest = s.newest.max(e.ts);
            if tail {
                tail_cols.push(e.ts, &e.line, &e.metadata);
            }
        }
        if tail && !tail_cols.is_empty() {
            let _ = tenant.tail.send(Arc::new(TailItem { labels: sb.labels.clone(), cols: tail_cols }));
        }
    }
}

async fn committer(engine: std::sync::Weak<Engine>, mut rx: mpsc::UnboundedReceiver<Commit>) {
    while let Some(first) = rx.recv().await {
        let Some(engine) = engine.upgrade() else { return };
        let limits = engine.store.limits();
        let max_bytes = limits.max_write_bytes.saturating_sub(64 * 1024).max(1);
        let max_ops = limits.max_ops_per_write.saturating_sub(8).max(1);
        let mut commits = vec![first];
        let mut bytes: usize = commits[0].records.iter().map(|r| r.0.len()).sum();
        while bytes < 16 << 20 {
            match rx.try_recv() {
                Ok(c) => {
                    bytes += c.records.iter().map(|r| r.0.len()).sum::<usize>();
                    commits.push(c);
                }
                Err(_) => break,
            }
        }
        // Number every record, then write them in as few store writes as the limits allow.
        let mut numbered: Vec<(usize, u64, Vec<u8>, Batch)> = Vec::new();
        {
            let mut state = lock(&engine.state);
            for (ci, c) in commits.iter_mut().enumerate() {
                for (data, batch) in c.records.drain(..) {
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    numbered.push((ci, seq, data, batch));
                }
            }
        }
        let mut failed: HashMap<usize, EngineError> = HashMap::new();
        let mut i = 0;
        while i < numbered.len() {
            let mut j = i;
            let mut size = 0;
            while j < numbered.len() && (j == i || (j - i < max_ops && size + numbered[j].2.len() + 64 <= max_bytes)) {
                size += numbered[j].2.len() + 64;
                j += 1;
            }
            let group = &mut numbered[i..j];
            let muts: Vec<Mutation> = group
                .iter_mut()
                .map(|(_, seq, data, _)| Mutation::put(keys::wal(&engine.cfg.instance, *seq), std::mem::take(data)))
                .collect();
            match engine.store.write(Vec::new(), muts).await {
                Ok(_) => {
                    let now = engine.clock.unix_ns();
                    let mut state = lock(&engine.state);
                    for (_, seq, _, batch) in group.iter_mut() {
                        apply(&mut state, &engine.cfg, *seq, std::mem::take(batch), now, false);
                        state.wal.insert(*seq);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "log store: write-ahead-log write failed");
                    for (ci, ..) in group.iter() {
                        failed.insert(*ci, EngineError::Store(e.clone()));
                    }
                }
            }
            i = j;
        }
        let sealed = {
            let state = lock(&engine.state);
            state.tenants.values().flat_map(|t| t.streams.values()).any(|s| !s.sealed.is_empty())
        };
        if sealed {
            engine.flush_now.notify_one();
        }
        for (ci, c) in commits.into_iter().enumerate() {
            let _ = c.reply.send(match failed.remove(&ci) {
                Some(e) => Err(e),
                None => Ok(()),
            });
        }
    }
}

async fn flusher(engine: std::sync::Weak<Engine>, wake: Arc<Notify>, interval: Duration) {
    loop {
        // No strong handle while waiting: dropping the engine closes the store at once.
        let _ = tokio::time::timeout(interval, wake.notified()).await;
        let Some(e) = engine.upgrade() else { return };
        e.seal_old_heads();
        if let Err(err) = e.flush_sealed().await {
            tracing::warn!(error = %err, "log store: chunk flush failed; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if let Err(err) = e.truncate_wal().await {
            tracing::warn!(error = %err, "log store: write-ahead-log truncation failed");
        }
    }
}

async fn sweeper(engine: std::sync::Weak<Engine>) {
    loop {
        let Some(e) = engine.upgrade() else { return };
        let interval = e.cfg.sweep_interval;
        drop(e);
        tokio::time::sleep(interval).await;
        let Some(e) = engine.upgrade() else { return };
        if let Err(err) = e.sweep().await {
            tracing::warn!(error = %err, "log store: retention sweep failed");
        }
    }
}
