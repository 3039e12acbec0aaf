//! The `embedded` backend: fjall (an LSM tree) in a local directory. The default, durable
//! backend.
//!
//! # Design
//!
//! * **One writer.** A dedicated thread owns the write path. Callers send requests over a
//!   channel; the writer drains everything queued (group commit), checks each request's
//!   conditions in order against the stored state plus the effects of the requests accepted
//!   before it in the same group, applies every accepted request in **one** fjall batch that
//!   is fsynced (`PersistMode::SyncAll`) before it becomes visible, and then answers each
//!   caller with its revision or a conflict. `Ok` from [`Store::write`] therefore means the
//!   write is on disk, and many concurrent writers share one fsync.
//! * **Layout.** Keyspace `kv` maps key -> header + value, the header holding a format byte,
//!   the revision of the last change (the key's version) and the expiry in unix milliseconds
//!   (0 = none). Keyspace `ttl` indexes expiring keys by (expiry, key). Keyspace `changelog`
//!   maps revision -> that revision's events and is trimmed to a bounded number of revisions;
//!   keyspace `meta` holds the revision counter and the trimmed-through revision, both written
//!   in every batch so they are always consistent with the data.
//! * **Reads** go straight to fjall (lock-free, snapshot per read); expired keys are skipped.
//! * **TTL.** Expired keys are absent to reads and conditions at once; the writer sweeps them
//!   periodically with a delete of their own so that watchers see a `Delete`.
//! * **Watch** replays the changelog from the requested revision and then follows a broadcast
//!   sent after each commit, without gap or duplicate.
//!
//! The directory is locked while the store is open. It closes when the last handle (and the
//! last watch stream) is dropped; dropping waits for the writer to finish.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use futures::stream::BoxStream;
use tokio::sync::{broadcast, oneshot};

use crate::common::{self, History, HistoryChunk, RevEvents};
use crate::{
    Condition, Direction, Entry, EventKind, KeyRange, Limits, Mutation, Page, Result, Store, StoreError, Versioned,
    WatchEvent,
};

/// Scans of at most this many entries start on the calling task ([`EmbeddedStore::scan`]).
const INLINE_SCAN_LIMIT: usize = 64;
/// How long a scan may run on the calling task before it moves to the blocking pool.
const INLINE_SCAN_BUDGET: Duration = Duration::from_micros(200);

const LIMITS: Limits = Limits { max_ops_per_write: 10_000, max_write_bytes: 64 << 20, max_key_bytes: 4096 };

/// Largest group the writer commits at once (requests are never split; a group may exceed
/// this by one request).
const GROUP_MAX_REQUESTS: usize = 4096;
const GROUP_MAX_BYTES: usize = 64 << 20;
/// Most expired keys removed by one sweep.
const SWEEP_BATCH: usize = 1_000;
/// Most changelog revisions trimmed by one batch.
const TRIM_BATCH: u64 = 10_000;

const FORMAT: u8 = 1;
const HEADER: usize = 17;
const META_REVISION: &[u8] = b"revision";
const META_COMPACTED: &[u8] = b"compacted";

/// Tuning of an [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Revisions kept in the changelog for watch replay (default 100,000). 0 keeps no
    /// changelog at all: watches follow live changes only and a replay from any past revision
    /// is `Compacted` (for data nobody replays, such as the trace store: each write is then
    /// stored once instead of twice).
    pub history_revisions: u64,
    /// Fsync every commit before acknowledging it (default true). False acknowledges a commit
    /// once its journal entry is written to the OS: it survives a crash of the process but not
    /// of the machine. Only for data whose last moments may be lost (the trace store).
    pub fsync: bool,
    /// How often expired keys are swept (default 200 ms).
    pub sweep_interval: Duration,
    /// Block cache size in bytes (default 64 MiB).
    pub cache_bytes: u64,
    /// Compress large values (over 4 KiB) with lz4 in the journal (default true). The journal
    /// only holds writes until they are flushed into compressed tables, so false trades that
    /// transient disk for CPU: for large values written once (the trace store's segments).
    pub journal_compression: bool,
    /// Free bytes the store's filesystem must keep (default 64 MiB): while less is free, writes
    /// fail with [`StoreError::Unavailable`] before they reach the journal, and succeed again
    /// once space returns. A write that hit a full disk inside fjall would poison its journal,
    /// refusing every later write until a restart; the reserve also leaves room for the
    /// flushes and compactions that free space.
    pub min_free_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history_revisions: 100_000,
            fsync: true,
            sweep_interval: Duration::from_millis(200),
            cache_bytes: 64 << 20,
            journal_compression: true,
            min_free_bytes: 64 << 20,
        }
    }
}

fn backend_err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("embedded store: {context}: {e}"))
}

/// The error of a failed commit: a full disk (or the journal fjall poisoned after one) is
/// UNAVAILABLE, which a caller may retry; anything else is a backend failure.
fn commit_err(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            StoreError::Unavailable(format!("embedded store: commit: the disk is full: {io}"))
        }
        fjall::Error::Poisoned => StoreError::Unavailable(
            "embedded store: commit: the journal failed earlier (a full disk?) and takes no more writes \
             until the process restarts"
                .into(),
        ),
        e => backend_err("commit", e),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stored value, decoded.
#[derive(Debug, Clone)]
struct Stored {
    revision: u64,
    /// Unix milliseconds; 0 = never.
    expires_ms: u64,
    value: Vec<u8>,
}

impl Stored {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_ms == 0 || self.expires_ms > now_ms
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.value.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(raw: &[u8]) -> Result<Stored> {
        let (revision, expires_ms) = decode_header(raw)?;
        Ok(Stored { revision, expires_ms, value: raw[HEADER..].to_vec() })
    }
}

fn decode_header(raw: &[u8]) -> Result<(u64, u64)> {
    if raw.len() < HEADER || raw[0] != FORMAT {
        return Err(StoreError::Backend(format!(
            "embedded store: stored value has an unknown format (len {}, format byte {:?})",
            raw.len(),
            raw.first()
        )));
    }
    Ok((be_u64(&raw[1..9]), be_u64(&raw[9..17])))
}

/// Reads a big-endian u64 from exactly 8 bytes (callers slice exactly 8).
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn ttl_key(expires_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&expires_ms.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let size: usize = events.iter().map(|e| 9 + e.key.len() + e.value.len()).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for e in events {
        out.push(match e.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        out.extend_from_slice(&(e.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.key);
        out.extend_from_slice(&(e.value.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.value);
    }
    out
}

fn decode_events(revision: u64, raw: &[u8]) -> Result<Vec<WatchEvent>> {
    let corrupt = || StoreError::Backend(format!("embedded store: changelog entry {revision} is corrupt"));
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let end = pos.checked_add(n).filter(|e| *e <= raw.len()).ok_or_else(corrupt)?;
        let s = &raw[pos..end];
        pos = end;
        Ok(s)
    };
    let read_u32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = read_u32(take(4)?);
    let mut events = Vec::with_capacity(count.min(10_000));
    for _ in 0..count {
        let kind = match take(1)?[0] {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            _ => return Err(corrupt()),
        };
        let klen = read_u32(take(4)?);
        let key = take(klen)?.to_vec();
        let vlen = read_u32(take(4)?);
        let value = take(vlen)?.to_vec();
        events.push(WatchEvent { kind, key, value, revision });
    }
    Ok(events)
}

/// Makes `dir` (and missing parents) with mode 0700, or takes group and other permissions away
/// from an existing one. The store holds the services' data and secrets (the URL shortener's
/// code secret), and fjall creates its files with the process umask, which a library does not
/// control: the owner-only directory is what keeps those files from other users.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
                    tracing::warn!(
                        dir = %dir.display(),
                        was = format!("{mode:o}"),
                        "store directory was open to other users; made it 0700"
                    );
                }
                Ok(())
            }
            Ok(_) => Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
            }
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// The keyspaces of one open database.
#[derive(Clone)]
struct Spaces {
    db: Database,
    kv: Keyspace,
    ttl: Keyspace,
    changelog: Keyspace,
    meta: Keyspace,
}

impl Spaces {
    fn open(dir: &Path, opts: &EmbeddedOptions) -> Result<Spaces> {
        private_dir(dir).map_err(|e| backend_err(&format!("creating {}", dir.display()), e))?;
        let mut builder = Database::builder(dir).cache_size(opts.cache_bytes);
        if !opts.journal_compression {
            builder = builder.journal_compression(fjall::CompressionType::None);
        }
        let db = builder.open().map_err(|e| backend_err(&format!("opening {}", dir.display()), e))?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(|e| backend_err(name, e));
        Ok(Spaces { kv: ks("kv")?, ttl: ks("ttl")?, changelog: ks("changelog")?, meta: ks("meta")?, db })
    }

    fn meta_u64(&self, snapshot: Option<&fjall::Snapshot>, key: &[u8]) -> Result<u64> {
        let raw = match snapshot {
            Some(s) => s.get(&self.meta, key),
            None => self.meta.get(key),
        }
        .map_err(|e| backend_err("reading meta", e))?;
        match raw {
            None => Ok(0),
            Some(v) if v.len() == 8 => Ok(be_u64(&v)),
            Some(v) => Err(StoreError::Backend(format!("embedded store: meta value has length {}", v.len()))),
        }
    }

    /// Removes every changelog entry and marks all revisions up to `revision` compacted.
    fn drop_changelog(&self, revision: u64) -> Result<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for guard in self.changelog.iter() {
            let key = guard.key().map_err(|e| backend_err("reading changelog", e))?;
            batch.remove(&self.changelog, key);
        }
        batch.insert(&self.meta, META_COMPACTED, revision.to_be_bytes());
        batch.commit().map_err(|e| backend_err("dropping the changelog", e))
    }

    fn stored(&self, key: &[u8]) -> Result<Option<Stored>> {
        match self.kv.get(key).map_err(|e| backend_err("reading", e))? {
            None => Ok(None),
            Some(raw) => Stored::decode(&raw).map(Some),
        }
    }
}

impl History for Spaces {
    fn read(&self, from: u64, max: usize) -> Result<HistoryChunk> {
        let snap = self.db.snapshot();
        let current = self.meta_u64(Some(&snap), META_REVISION)?;
        let compacted = self.meta_u64(Some(&snap), META_COMPACTED)?;
        if from <= compacted {
            return Err(StoreError::Compacted(from));
        }
        let mut batches = Vec::new();
        let mut complete = true;
        for guard in snap.range(&self.changelog, from.to_be_bytes()..) {
            if batches.len() >= max {
                complete = false;
                break;
            }
            let (k, v) = guard.into_inner().map_err(|e| backend_err("reading changelog", e))?;
            if k.len() != 8 {
                return Err(StoreError::Backend("embedded store: bad changelog key".into()));
            }
            let revision = be_u64(&k);
            batches.push(Arc::new(RevEvents { revision, events: decode_events(revision, &v)? }));
        }
        let through = if complete { current } else { batches.last().map_or(current, |b| b.revision) };
        Ok(HistoryChunk { batches, through, complete })
    }

    fn current(&self) -> u64 {
        self.meta_u64(None, META_REVISION).unwrap_or(0)
    }
}

enum Request {
    Write { conditions: Vec<Condition>, mutations: Vec<Mutation>, bytes: usize, ack: oneshot::Sender<Result<u64>> },
    Flush { ack: oneshot::Sender<Result<()>> },
}

struct Inner {
    spaces: Spaces,
    /// `Some` until drop; taking it stops the writer.
    tx: Option<mpsc::Sender<Request>>,
    feed: broadcast::Sender<Arc<RevEvents>>,
    writer: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(dir = %self.dir.display(), "embedded store writer thread panicked");
        }
        if let Err(e) = self.spaces.db.persist(PersistMode::SyncAll) {
            tracing::error!(dir = %self.dir.display(), error = %e, "embedded store: final persist failed");
        }
        tracing::debug!(dir = %self.dir.display(), "embedded store closed");
    }
}

/// The fjall backend (`embedded:<dir>`).
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` with default [`EmbeddedOptions`].
    pub async fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, EmbeddedOptions::default()).await
    }

    /// Opens (creating if needed) the store in `dir`.
    pub async fn open_with(dir: &Path, opts: EmbeddedOptions) -> Result<Self> {
        let dir = dir.to_path_buf();
        let d = dir.clone();
        let o = opts.clone();
        let spaces = tokio::task::spawn_blocking(move || Spaces::open(&d, &o))
            .await
            .map_err(|e| backend_err("open task", e))??;
        let revision = spaces.meta_u64(None, META_REVISION)?;
        let mut compacted = spaces.meta_u64(None, META_COMPACTED)?;
        if opts.history_revisions == 0 && compacted < revision {
            // No changelog from now on: drop what an earlier history left, so that every past
            // revision reads as compacted.
            let s = spaces.clone();
            tokio::task::spawn_blocking(move || s.drop_changelog(revision))
                .await
                .map_err(|e| backend_err("changelog task", e))??;
            compacted = revision;
        }
        let (tx, rx) = mpsc::channel();
        let (feed, _) = broadcast::channel(1024);
        let writer = Writer {
            spaces: spaces.clone(),
            rx,
            feed: feed.clone(),
            revision,
            compacted,
            history: opts.history_revisions,
            persist: if opts.fsync { PersistMode::SyncAll } else { PersistMode::Buffer },
            sweep_interval: opts.sweep_interval,
            dir: dir.clone(),
            min_free_bytes: opts.min_free_bytes,
        };
        let handle = std::thread::Builder::new()
            .name("meshwork-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| backend_err("starting the writer thread", e))?;
        tracing::info!(dir = %dir.display(), revision, "embedded store opened");
        Ok(EmbeddedStore { inner: Arc::new(Inner { spaces, tx: Some(tx), feed, writer: Some(handle), dir }) })
    }

    fn send(&self, req: Request) -> Result<()> {
        let tx = self.inner.tx.as_ref().ok_or_else(|| StoreError::Unavailable("embedded store is closed".into()))?;
        tx.send(req).map_err(|_| StoreError::Backend("embedded store writer has stopped".into()))
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        // Point reads hit the block cache or one table; cheap enough to run inline.
        let now = unix_ms();
        Ok(self
            .inner
            .spaces
            .stored(key)?
            .filter(|s| s.live(now))
            .map(|s| Versioned { value: s.value, version: s.revision }))
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        if common::range_is_empty(&range) {
            return Ok(Page::default());
        }
        let limit = common::scan_limit(limit);
        let kv = self.inner.spaces.kv.clone();
        let mut scan = Scan::open(&kv, range, limit, direction);
        // A short scan runs here: a hop to the blocking pool and back costs more than the
        // scan (about 70 µs of CPU per hop on the 2-core reference machine, measured with the
        // timeline's home pages). A scan that outlasts its budget (tombstones to skip, cold
        // blocks to read) goes on in the blocking pool with the same iterator, so the page
        // still comes from one snapshot.
        if limit <= INLINE_SCAN_LIMIT && scan.run(Some(Instant::now() + INLINE_SCAN_BUDGET))? {
            return Ok(scan.finish());
        }
        tokio::task::spawn_blocking(move || {
            scan.run(None)?;
            Ok(scan.finish())
        })
        .await
        .map_err(|e| backend_err("scan task", e))?
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        let bytes = common::validate_write(&LIMITS, &conditions, &mutations)?;
        let (ack, done) = oneshot::channel();
        self.send(Request::Write { conditions, mutations, bytes, ack })?;
        done.await.map_err(|_| StoreError::Backend("embedded store writer stopped before answering".into()))?
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        let rx = self.inner.feed.subscribe();
        let history: Arc<dyn History> = Arc::new(self.inner.spaces.clone());
        Ok(common::watch_stream(prefix.to_vec(), from, rx, history, true))
    }

    async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.send(Request::Flush { ack })?;
        done.await.map_err(|_| StoreError::Backend("embedded store writer stopped before answering".into()))?
    }
}

/// One scan of the keyspace: the iterator (a snapshot of the keyspace taken when it was
/// opened) and the entries read so far.
struct Scan {
    iter: fjall::Iter,
    direction: Direction,
    limit: usize,
    now: u64,
    entries: Vec<Entry>,
}

impl Scan {
    fn open(kv: &Keyspace, range: KeyRange, limit: usize, direction: Direction) -> Self {
        let bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>) = (range.start, range.end);
        Scan { iter: kv.range(bounds), direction, limit, now: unix_ms(), entries: Vec::new() }
    }

    /// Reads entries until the page is full (one more than the limit, to tell the next key)
    /// or the range ends: `Ok(true)`; or until `deadline` passes first: `Ok(false)`, and a
    /// later call goes on where this one stopped.
    fn run(&mut self, deadline: Option<Instant>) -> Result<bool> {
        while self.entries.len() <= self.limit {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let guard = match self.direction {
                Direction::Forward => self.iter.next(),
                Direction::Reverse => self.iter.next_back(),
            };
            let Some(guard) = guard else { break };
            let (k, v) = guard.into_inner().map_err(|e| backend_err("scanning", e))?;
            let (revision, expires_ms) = decode_header(&v)?;
            if expires_ms != 0 && expires_ms <= self.now {
                continue;
            }
            self.entries.push(Entry { key: k.to_vec(), value: v[HEADER..].to_vec(), version: revision });
        }
        Ok(true)
    }

    fn finish(self) -> Page {
        let mut entries = self.entries;
        let next = if entries.len() > self.limit { entries.pop().map(|e| e.key) } else { None };
        Page { entries, next }
    }
}

/// An expired `ttl` index entry: (index key, key, revision of the expiring write).
type Candidate = (Vec<u8>, Vec<u8>, u64);

/// The single owner of the write path.
struct Writer {
    spaces: Spaces,
    rx: mpsc::Receiver<Request>,
    feed: broadcast::Sender<Arc<RevEvents>>,
    revision: u64,
    compacted: u64,
    history: u64,
    persist: PersistMode,
    sweep_interval: Duration,
    /// The store's directory and the free bytes it must keep ([`EmbeddedOptions::min_free_bytes`]).
    dir: PathBuf,
    min_free_bytes: u64,
}

/// The effects of one group, accumulated before the batch is built.
#[derive(Default)]
struct Group {
    /// State of keys touched in this group (`None` = deleted).
    overlay: HashMap<Vec<u8>, Option<Stored>>,
    /// Final `kv` changes.
    kv: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Final `ttl` index changes (value = revision of the expiring write).
    ttl: HashMap<Vec<u8>, Option<u64>>,
    revisions: Vec<Arc<RevEvents>>,
}

impl Group {
    /// Returns the key's stored state (expired or not) as of the requests applied so far.
    fn lookup(&self, spaces: &Spaces, key: &[u8]) -> Result<Option<Stored>> {
        match self.overlay.get(key) {
            Some(s) => Ok(s.clone()),
            None => spaces.stored(key),
        }
    }

    fn put(&mut self, key: Vec<u8>, old: Option<&Stored>, new: Stored) {
        if let Some(old) = old.filter(|o| o.expires_ms != 0) {
            self.ttl.insert(ttl_key(old.expires_ms, &key), None);
        }
        if new.expires_ms != 0 {
            self.ttl.insert(ttl_key(new.expires_ms, &key), Some(new.revision));
        }
        self.kv.insert(key.clone(), Some(new.encode()));
        self.overlay.insert(key, Some(new));
    }

    fn delete(&mut self, key: Vec<u8>, old: &Stored) {
        if old.expires_ms != 0 {
            self.ttl.insert(ttl_key(old.expires_ms, &key), None);
        }
        self.kv.insert(key.clone(), None);
        self.overlay.insert(key, None);
    }
}

enum Ack {
    Write(oneshot::Sender<Result<u64>>, Result<u64>),
    Flush(oneshot::Sender<Result<()>>),
}

impl Writer {
    fn run(mut self) {
        let mut next_sweep = Instant::now() + self.sweep_interval;
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            let mut requests = Vec::new();
            match self.rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut bytes = request_bytes(&first);
                    requests.push(first);
                    while requests.len() < GROUP_MAX_REQUESTS && bytes < GROUP_MAX_BYTES {
                        match self.rx.try_recv() {
                            Ok(r) => {
                                bytes += request_bytes(&r);
                                requests.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let sweep = Instant::now() >= next_sweep;
            if sweep {
                next_sweep = Instant::now() + self.sweep_interval;
            }
            self.process(requests, sweep);
        }
        tracing::debug!("embedded store writer stopped");
    }

    /// Returns (index key, key, revision) of expired index entries.
    fn expired_candidates(&self, now_ms: u64) -> Result<Vec<Candidate>> {
        let mut out = Vec::new();
        for guard in self.spaces.ttl.range(..(now_ms + 1).to_be_bytes()) {
            let (k, v) = guard.into_inner().map_err(|e| backend_err("reading ttl index", e))?;
            if k.len() < 8 || v.len() != 8 {
                continue;
            }
            out.push((k.to_vec(), k[8..].to_vec(), be_u64(&v)));
            if out.len() >= SWEEP_BATCH {
                break;
            }
        }
        Ok(out)
    }

    fn process(&mut self, requests: Vec<Request>, sweep: bool) {
        let now_ms = unix_ms();
        let mut group = Group::default();
        let mut acks = Vec::with_capacity(requests.len());
        let mut rev = self.revision;
        let mut failure: Option<StoreError> = None;

        for req in requests {
            match req {
                Request::Flush { ack } => acks.push(Ack::Flush(ack)),
                Request::Write { conditions, mutations, ack, .. } => {
                    match self.apply(&mut group, &mut rev, now_ms, conditions, mutations) {
                        // Accepted (revision) or conflict.
                        Ok(outcome) => acks.push(Ack::Write(ack, outcome)),
                        Err(e) => {
                            // A read failed: nothing of this group can be trusted.
                            failure.get_or_insert(e.clone());
                            acks.push(Ack::Write(ack, Err(e)));
                        }
                    }
                }
            }
        }
        if sweep && failure.is_none() {
            match self.sweep(&mut group, &mut rev, now_ms) {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "embedded store: sweeping expired keys failed"),
            }
        }

        let result = if let Some(e) = failure {
            Err(e)
        } else if group.kv.is_empty() && group.ttl.is_empty() && rev == self.revision {
            // Nothing to write (only conflicts, conditional no-ops or flushes).
            if acks.iter().any(|a| matches!(a, Ack::Flush(_))) {
                self.spaces.db.persist(PersistMode::SyncAll).map_err(|e| backend_err("persist", e))
            } else {
                Ok(())
            }
        } else if let Err(full) = self.check_free_space() {
            Err(full)
        } else {
            self.commit(&group, rev)
        };

        match result {
            Ok(()) => {
                self.revision = rev;
                for batch in group.revisions {
                    // No receivers is fine.
                    let _ = self.feed.send(batch);
                }
                for ack in acks {
                    match ack {
                        Ack::Write(tx, r) => {
                            let _ = tx.send(r);
                        }
                        Ack::Flush(tx) => {
                            let _ = tx.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => {
                match &e {
                    // A full disk: expected, and said to every caller; not a fault of the store.
                    StoreError::Unavailable(_) => {
                        tracing::warn!(error = %e, "embedded store: a write group was refused")
                    }
                    _ => tracing::error!(error = %e, "embedded store: committing a write group failed"),
                }
                for ack in acks {
                    match ack {
                        // Conflicts stay conflicts: they wrote nothing either way.
                        Ack::Write(tx, Err(c @ StoreError::Conflict { .. })) => {
                            let _ = tx.send(Err(c));
                        }
                        Ack::Write(tx, _) => {
                            let _ = tx.send(Err(e.clone()));
                        }
                        Ack::Flush(tx) => {
                            let _ = tx.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Checks one request against the group state and records its effects. The outer error is
    /// a failed read (the group must not commit); the inner result is the request's outcome.
    fn apply(
        &self,
        group: &mut Group,
        rev: &mut u64,
        now_ms: u64,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    ) -> Result<Result<u64>> {
        for c in &conditions {
            let cur = group.lookup(&self.spaces, c.key())?.filter(|s| s.live(now_ms));
            let holds = match (c, &cur) {
                (Condition::Absent(_), None) => true,
                (Condition::Version(_, v), Some(s)) => s.revision == *v,
                (Condition::ValueEquals(_, v), Some(s)) => s.value == *v,
                _ => false,
            };
            if !holds {
                return Ok(Err(StoreError::conflict(c.key())));
            }
        }
        if mutations.is_empty() {
            return Ok(Ok(*rev));
        }
        // Read every old state first so a read error leaves the group untouched.
        let mut olds = Vec::with_capacity(mutations.len());
        for m in &mutations {
            olds.push(group.lookup(&self.spaces, m.key())?);
        }
        *rev += 1;
        let r = *rev;
        let mut events = Vec::with_capacity(mutations.len());
        for (m, old) in mutations.into_iter().zip(olds) {
            match m {
                Mutation::Put { key, value, ttl } => {
                    let expires_ms =
                        ttl.map_or(0, |t| now_ms.saturating_add(t.as_millis().min(u64::MAX as u128) as u64).max(1));
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        key: key.clone(),
                        value: value.clone(),
                        revision: r,
                    });
                    group.put(key, old.as_ref(), Stored { revision: r, expires_ms, value });
                }
                Mutation::Delete { key } => {
                    if let Some(old) = old {
                        events.push(WatchEvent {
                            kind: EventKind::Delete,
                            key: key.clone(),
                            value: Vec::new(),
                            revision: r,
                        });
                        group.delete(key, &old);
                    }
                }
            }
        }
        if !events.is_empty() {
            group.revisions.push(Arc::new(RevEvents { revision: r, events }));
        }
        Ok(Ok(r))
    }

    /// Deletes keys whose time-to-live has passed, in one revision of their own.
    fn sweep(&self, group: &mut Group, rev: &mut u64, now_ms: u64) -> Result<()> {
        let candidates = self.expired_candidates(now_ms)?;
        if candidates.is_empty() {
            return Ok(());
        }
        let r = *rev + 1;
        let mut events = Vec::new();
        for (index_key, key, revision) in candidates {
            match group.lookup(&self.spaces, &key)? {
                Some(cur) if cur.revision == revision && !cur.live(now_ms) => {
                    events.push(WatchEvent {
                        kind: EventKind::Delete,
                        key: key.clone(),
                        value: Vec::new(),
                        revision: r,
                    });
                    group.delete(key, &cur);
                }
                // The write that set this expiry was overwritten in this group: keep the
                // group's own index change.
                _ if group.ttl.contains_key(&index_key) => {}
                // A stale index entry (cannot normally happen): drop it so it does not block
                // the sweep forever.
                _ => {
                    group.ttl.insert(index_key, None);
                }
            }
        }
        if !events.is_empty() {
            *rev = r;
            group.revisions.push(Arc::new(RevEvents { revision: r, events }));
        }
        Ok(())
    }

    /// Refuses a write while the filesystem has less than the reserve free (see
    /// [`EmbeddedOptions::min_free_bytes`]); one statvfs call, small beside the commit's fsync.
    fn check_free_space(&self) -> Result<()> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        match fs4::available_space(&self.dir) {
            Ok(free) if free < self.min_free_bytes => Err(StoreError::Unavailable(format!(
                "embedded store: only {} KiB free on the disk of {}, below the reserve of {} KiB: writes \
                 resume when space returns",
                free >> 10,
                self.dir.display(),
                self.min_free_bytes >> 10
            ))),
            Ok(_) => Ok(()),
            // Not knowing is no reason to refuse: fjall reports a full disk itself.
            Err(e) => {
                tracing::debug!(error = %e, "embedded store: reading free space failed");
                Ok(())
            }
        }
    }

    fn commit(&mut self, group: &Group, rev: u64) -> Result<()> {
        let s = &self.spaces;
        let mut batch = s.db.batch().durability(Some(self.persist));
        for (k, v) in &group.kv {
            match v {
                Some(v) => batch.insert(&s.kv, k.as_slice(), v.as_slice()),
                None => batch.remove(&s.kv, k.as_slice()),
            }
        }
        for (k, v) in &group.ttl {
            match v {
                Some(r) => batch.insert(&s.ttl, k.as_slice(), r.to_be_bytes()),
                None => batch.remove(&s.ttl, k.as_slice()),
            }
        }
        let mut compacted = self.compacted;
        if self.history == 0 {
            // No changelog: every committed revision is at once compacted.
            compacted = rev;
        } else {
            for b in &group.revisions {
                batch.insert(&s.changelog, b.revision.to_be_bytes(), encode_events(&b.events));
            }
            let trim_to = rev.saturating_sub(self.history).min(compacted + TRIM_BATCH);
            while compacted < trim_to {
                compacted += 1;
                batch.remove(&s.changelog, compacted.to_be_bytes());
            }
        }
        batch.insert(&s.meta, META_REVISION, rev.to_be_bytes());
        batch.insert(&s.meta, META_COMPACTED, compacted.to_be_bytes());
        batch.commit().map_err(commit_err)?;
        self.compacted = compacted;
        Ok(())
    }
}

fn request_bytes(r: &Request) -> usize {
    match r {
        Request::Write { bytes, .. } => *bytes,
        Request::Flush { .. } => 0,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_store_directory_is_owner_only_new_or_found_open() {
        let tmp = tempfile::tempdir().unwrap();
        // A new directory, and the missing parent made on the way, are 0700.
        let dir = tmp.path().join("data").join("store");
        drop(EmbeddedStore::open(&dir).await.unwrap());
        assert_eq!((mode(&dir), mode(&tmp.path().join("data"))), (0o700, 0o700));
        // An existing one open to others is tightened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let store = EmbeddedStore::open(&dir).await.unwrap();
        assert_eq!(mode(&dir), 0o700);
        drop(store);
        // A file where the directory should be is refused.
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = EmbeddedStore::open(&file).await.err().expect("a file is not a store").to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
