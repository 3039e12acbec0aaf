//! The `etcd` backend (etcd 3.4+ through etcd-client).
//!
//! # Mapping
//!
//! * `get` / `scan` are linearizable `Range` requests; a key's version is its `mod_revision`.
//!   Scans ask for `limit + 1` keys (sorted descending by key for reverse scans) so that the
//!   continuation key is exact.
//! * `write` is one `Txn`: conditions become compares (`create_revision == 0` for
//!   [`Condition::Absent`], `mod_revision == V` for [`Condition::Version`], `value == X` for
//!   [`Condition::ValueEquals`]), mutations become puts and deletes. The failure branch reads
//!   every condition key in the same atomic step, so a [`StoreError::Conflict`] names exactly
//!   the key whose condition failed.
//! * Time-to-live uses a lease granted just before the txn (one per distinct TTL in a
//!   write). etcd leases have whole-second TTLs and a server-enforced minimum (2 s with the
//!   default `--heartbeat-interval 100 --election-timeout 1000`), so TTLs are rounded **up**
//!   to whole seconds and to at least [`MIN_LEASE_TTL_SECS`]; etcd revokes expired leases
//!   about every 500 ms, and a leader change renews every lease, so expiry can be late.
//! * `watch` is an etcd watch on the prefix from `start_revision`; a compacted start maps to
//!   [`StoreError::Compacted`]. A broken watch stream reconnects (to another member if need
//!   be) from the revision after the last one delivered, so nothing is lost or repeated.
//!
//! # Limits
//!
//! etcd rejects txns with more than 128 operations (`--max-txn-ops`) and requests over
//! 1.5 MiB (`--max-request-bytes`). Both are checked before sending and fail with
//! [`StoreError::LimitExceeded`]: at most 128 conditions + mutations per write, and the
//! estimated encoded request (keys, values, condition keys read back on failure, and a
//! per-operation overhead) must stay under 1.5 MiB.
//!
//! # Failover
//!
//! The etcd client keeps sending to a dead endpoint, so the store keeps **one client per
//! endpoint**, sticks to the last member that answered, and on failure moves on to the next.
//! Every call has a timeout. Reads are retried on another member after any transport
//! failure. A write is retried only when it certainly was not applied (the connection could
//! not be established, or the member reported it has no leader); when a write was sent but
//! no answer came back, its outcome is unknown and it fails with
//! [`StoreError::Unavailable`] (never a false [`StoreError::Conflict`]).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchStream,
};
use futures::stream::BoxStream;

use crate::common;
use crate::{
    Condition, Direction, Entry, EventKind, KeyRange, Limits, Mutation, Page, Result, Store, StoreError, Versioned,
    WatchEvent,
};

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 1_572_864;
/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;
/// Smallest lease TTL etcd grants with default timing flags; shorter TTLs are rounded up.
pub const MIN_LEASE_TTL_SECS: i64 = 2;

/// Encoding overhead assumed per operation when estimating the request size.
const OP_OVERHEAD: usize = 32;

const LIMITS: Limits = Limits {
    max_ops_per_write: MAX_TXN_OPS,
    // Keys + values; the encoded request (checked separately) must also fit 1.5 MiB.
    max_write_bytes: MAX_REQUEST_BYTES - 8 * 1024,
    max_key_bytes: 4096,
};

/// Timeouts and retry pacing of an [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Longest one attempt on one member may take.
    pub call_timeout: Duration,
    /// Longest a TCP connection attempt may take.
    pub connect_timeout: Duration,
    /// Longest a whole call may spend retrying across members (e.g. during an election).
    pub deadline: Duration,
    /// How long a failed member is tried last.
    pub down_for: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            call_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            down_for: Duration::from_secs(2),
        }
    }
}

struct Member {
    endpoint: String,
    client: Client,
    down_until: Mutex<Option<Instant>>,
}

impl Member {
    fn is_down(&self, now: Instant) -> bool {
        self.down_until.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|t| t > now)
    }

    fn mark(&self, down_for: Option<Duration>) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = down_for.map(|d| Instant::now() + d);
    }
}

struct Inner {
    members: Vec<Member>,
    /// Index of the member that answered last.
    current: AtomicUsize,
    opts: EtcdOptions,
}

/// How a failed attempt may be retried.
enum Failure {
    /// The request certainly did not reach etcd's state machine: any call may move on.
    NotApplied(String),
    /// The request may or may not have been applied: reads move on, writes give up.
    Unknown(String),
    /// Retrying will not help.
    Fatal(StoreError),
}

fn classify(e: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            let msg = status.message().to_string();
            let detail = format!("{status:?}");
            match status.code() {
                tonic::Code::Unavailable => {
                    let lower = detail.to_ascii_lowercase();
                    if msg.contains("no leader")
                        || lower.contains("connection refused")
                        || lower.contains("tcp connect error")
                        || lower.contains("connect error")
                        || lower.contains("error trying to connect")
                    {
                        Failure::NotApplied(detail)
                    } else {
                        Failure::Unknown(detail)
                    }
                }
                tonic::Code::InvalidArgument if msg.contains("too many operations") => {
                    Failure::Fatal(StoreError::LimitExceeded {
                        what: "etcd operations in one txn",
                        limit: MAX_TXN_OPS,
                        actual: MAX_TXN_OPS + 1,
                    })
                }
                tonic::Code::InvalidArgument if msg.contains("request is too large") => {
                    Failure::Fatal(StoreError::LimitExceeded {
                        what: "etcd request size in bytes",
                        limit: MAX_REQUEST_BYTES,
                        actual: MAX_REQUEST_BYTES + 1,
                    })
                }
                tonic::Code::InvalidArgument => Failure::Fatal(StoreError::Invalid(format!("etcd: {msg}"))),
                tonic::Code::OutOfRange if msg.contains("compacted") => {
                    Failure::Fatal(StoreError::Backend(format!("etcd: {msg}")))
                }
                tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
                | tonic::Code::Unknown
                | tonic::Code::Internal
                | tonic::Code::Aborted => Failure::Unknown(detail),
                _ => Failure::Fatal(StoreError::Backend(format!("etcd: {detail}"))),
            }
        }
        // The channel could not be built or connected: nothing was sent.
        E::TransportError(t) => Failure::NotApplied(format!("{t:?}")),
        E::IoError(io) => Failure::Unknown(io.to_string()),
        E::WatchError(w) => Failure::Unknown(w.clone()),
        other => Failure::Fatal(StoreError::Backend(format!("etcd: {other}"))),
    }
}

impl Inner {
    /// Members in the order to try them: healthy ones from the current one on, then the
    /// ones recently seen failing.
    fn order(&self) -> Vec<usize> {
        let n = self.members.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let now = Instant::now();
        let (mut up, mut down): (Vec<usize>, Vec<usize>) =
            (0..n).map(|i| (start + i) % n).partition(|&i| !self.members[i].is_down(now));
        up.append(&mut down);
        up
    }

    /// Runs `f` against members until one answers, following the failover rules in the
    /// module docs. `what` names the call in errors; `write` selects the write rules.
    async fn call<T, F, Fut>(&self, what: &str, write: bool, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(25);
        let mut last: String;
        loop {
            for i in self.order() {
                let m = &self.members[i];
                let outcome = tokio::time::timeout(self.opts.call_timeout, f(m.client.clone())).await;
                let failure = match outcome {
                    Ok(Ok(v)) => {
                        m.mark(None);
                        self.current.store(i, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Ok(Err(e)) => classify(&e),
                    Err(_) => Failure::Unknown(format!("no answer within {:?}", self.opts.call_timeout)),
                };
                match failure {
                    Failure::Fatal(e) => return Err(e),
                    Failure::NotApplied(msg) => {
                        tracing::debug!(endpoint = %m.endpoint, %what, error = %msg, "etcd member failed; trying the next");
                        m.mark(Some(self.opts.down_for));
                        last = format!("{}: {msg}", m.endpoint);
                    }
                    Failure::Unknown(msg) => {
                        m.mark(Some(self.opts.down_for));
                        if write {
                            tracing::warn!(endpoint = %m.endpoint, %what, error = %msg, "etcd write outcome unknown");
                            return Err(StoreError::Unavailable(format!(
                                "etcd {what} via {}: outcome unknown (sent, no answer): {msg}",
                                m.endpoint
                            )));
                        }
                        tracing::debug!(endpoint = %m.endpoint, %what, error = %msg, "etcd member failed; trying the next");
                        last = format!("{}: {msg}", m.endpoint);
                    }
                }
                if started.elapsed() >= self.opts.deadline {
                    return Err(StoreError::Unavailable(format!(
                        "etcd {what}: no member answered within {:?}; last error: {last}",
                        self.opts.deadline
                    )));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

/// The etcd backend (`etcd://host:port[,host:port...]`).
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl EtcdStore {
    /// Connects to the cluster through `endpoints` (`host:port` or `http://host:port`) with
    /// default [`EtcdOptions`]; fails with [`StoreError::Unavailable`] when no member answers.
    pub async fn connect(endpoints: Vec<String>) -> Result<Self> {
        Self::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(endpoints: Vec<String>, opts: EtcdOptions) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid("etcd: no endpoints given".into()));
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            let url = if ep.contains("://") { ep.clone() } else { format!("http://{ep}") };
            let options = ConnectOptions::new()
                .with_connect_timeout(opts.connect_timeout)
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
                .with_require_leader(true);
            // Connecting is lazy: this does not fail for a member that is down.
            let client = Client::connect([url.as_str()], Some(options))
                .await
                .map_err(|e| StoreError::Invalid(format!("etcd endpoint {ep:?}: {e}")))?;
            members.push(Member { endpoint: ep, client, down_until: Mutex::new(None) });
        }
        let store = EtcdStore { inner: Arc::new(Inner { members, current: AtomicUsize::new(0), opts }) };
        // Fail early (and clearly) when the cluster cannot be reached at all.
        store.get(b"\0meshwork-connect-probe").await?;
        Ok(store)
    }
}

fn range_keys(range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
    let key = match &range.start {
        Bound::Included(s) => s.clone(),
        Bound::Excluded(s) => {
            let mut k = s.clone();
            k.push(0);
            k
        }
        Bound::Unbounded => Vec::new(),
    };
    // etcd has no empty key; "\0" is the smallest key.
    let key = if key.is_empty() { vec![0] } else { key };
    let end = match &range.end {
        Bound::Excluded(e) => e.clone(),
        Bound::Included(e) => {
            let mut k = e.clone();
            k.push(0);
            k
        }
        // "\0" as range end means "every key >= key".
        Bound::Unbounded => vec![0],
    };
    (key, end)
}

fn lease_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    (secs.min(i64::MAX as u64) as i64).max(MIN_LEASE_TTL_SECS)
}

fn check_request_size(conditions: &[Condition], mutations: &[Mutation]) -> Result<()> {
    let mut size = 64usize;
    for c in conditions {
        // Compared, then read back by the failure branch.
        size += 2 * c.key().len() + 2 * OP_OVERHEAD;
        if let Condition::ValueEquals(_, v) = c {
            size += v.len();
        }
    }
    for m in mutations {
        size += m.key().len() + OP_OVERHEAD;
        if let Mutation::Put { value, .. } = m {
            size += value.len() + 16;
        }
    }
    if size > MAX_REQUEST_BYTES {
        return Err(StoreError::LimitExceeded {
            what: "etcd request size in bytes",
            limit: MAX_REQUEST_BYTES,
            actual: size,
        });
    }
    Ok(())
}

fn holds(c: &Condition, kv: Option<&etcd_client::KeyValue>) -> bool {
    match (c, kv) {
        (Condition::Absent(_), None) => true,
        (Condition::Version(_, v), Some(kv)) => kv.mod_revision() as u64 == *v,
        (Condition::ValueEquals(_, v), Some(kv)) => kv.value() == v.as_slice(),
        _ => false,
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        let resp = self.inner.call("get", false, |c| async move { c.kv_client().get(key, None).await }).await?;
        Ok(resp.kvs().first().map(|kv| Versioned { value: kv.value().to_vec(), version: kv.mod_revision() as u64 }))
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        if common::range_is_empty(&range) {
            return Ok(Page::default());
        }
        let limit = common::scan_limit(limit);
        let (key, end) = range_keys(&range);
        let order = match direction {
            Direction::Forward => SortOrder::Ascend,
            Direction::Reverse => SortOrder::Descend,
        };
        let resp = self
            .inner
            .call("scan", false, |c| {
                let opts = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(limit as i64 + 1)
                    .with_sort(SortTarget::Key, order);
                let key = key.clone();
                async move { c.kv_client().max_decoding_message_size(256 << 20).get(key, Some(opts)).await }
            })
            .await?;
        let mut entries: Vec<Entry> = resp
            .kvs()
            .iter()
            .map(|kv| Entry { key: kv.key().to_vec(), value: kv.value().to_vec(), version: kv.mod_revision() as u64 })
            .collect();
        let next = if entries.len() > limit { entries.pop().map(|e| e.key) } else { None };
        Ok(Page { entries, next })
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        common::validate_write(&LIMITS, &conditions, &mutations)?;
        check_request_size(&conditions, &mutations)?;
        // Versions are never 0, and etcd would read `mod_revision == 0` as "absent".
        if let Some(c) = conditions.iter().find(|c| matches!(c, Condition::Version(_, 0))) {
            return Err(StoreError::conflict(c.key()));
        }

        // One lease per distinct TTL.
        let mut leases: BTreeMap<i64, i64> = BTreeMap::new();
        for m in &mutations {
            if let Mutation::Put { ttl: Some(ttl), .. } = m {
                let secs = lease_secs(*ttl);
                if let std::collections::btree_map::Entry::Vacant(slot) = leases.entry(secs) {
                    // A duplicate grant only leaks a lease that expires by itself: retry freely.
                    let resp = self
                        .inner
                        .call("lease grant", false, |c| async move { c.lease_client().grant(secs, None).await })
                        .await?;
                    slot.insert(resp.id());
                }
            }
        }

        let compares: Vec<Compare> = conditions
            .iter()
            .map(|c| match c {
                Condition::Absent(k) => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
                Condition::Version(k, v) => Compare::mod_revision(k.clone(), CompareOp::Equal, *v as i64),
                Condition::ValueEquals(k, v) => Compare::value(k.clone(), CompareOp::Equal, v.clone()),
            })
            .collect();
        let ops: Vec<TxnOp> = mutations
            .iter()
            .map(|m| match m {
                Mutation::Put { key, value, ttl } => {
                    let opts =
                        ttl.map(|t| PutOptions::new().with_lease(leases.get(&lease_secs(t)).copied().unwrap_or(0)));
                    TxnOp::put(key.clone(), value.clone(), opts)
                }
                Mutation::Delete { key } => TxnOp::delete(key.clone(), None),
            })
            .collect();
        let reads: Vec<TxnOp> = conditions.iter().map(|c| TxnOp::get(c.key().to_vec(), None)).collect();
        let txn = Txn::new().when(compares).and_then(ops).or_else(reads);

        let result = self
            .inner
            .call("write", true, |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                self.revoke(leases.into_values().collect());
                return Err(e);
            }
        };
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision() as u64));
        }
        self.revoke(leases.into_values().collect());
        let responses = resp.op_responses();
        for (c, r) in conditions.iter().zip(responses.iter()) {
            if let TxnOpResponse::Get(get) = r
                && !holds(c, get.kvs().first())
            {
                return Err(StoreError::conflict(c.key()));
            }
        }
        // The state changed again between the compare and the read-back (cannot happen
        // within one txn); name the first condition.
        Err(StoreError::conflict(conditions.first().map_or(&b""[..], |c| c.key())))
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        let end = common_prefix_end(prefix);
        let key = if prefix.is_empty() { vec![0] } else { prefix.to_vec() };
        let start = from.map(|f| f.max(1));
        let (stream, created_rev, compacted) = open_watch(&self.inner, &key, &end, start).await?;
        if compacted > 0 {
            return Err(StoreError::Compacted(start.unwrap_or(created_rev + 1)));
        }
        let next = match start {
            Some(f) => f,
            None => created_rev + 1,
        };
        let state = WatchState {
            inner: self.inner.clone(),
            key,
            end,
            requested: start,
            next,
            stream: Some(stream),
            pending: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(ev) = st.pending.pop_front() {
                    return Some((Ok(ev), st));
                }
                if st.done {
                    return None;
                }
                let Some(stream) = st.stream.as_mut() else {
                    match open_watch(&st.inner, &st.key, &st.end, Some(st.next)).await {
                        Ok((_, _, compacted)) if compacted > 0 => {
                            st.done = true;
                            return Some((Err(StoreError::Compacted(st.next)), st));
                        }
                        Ok((s, _, _)) => st.stream = Some(s),
                        Err(e) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                    continue;
                };
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 {
                            st.done = true;
                            let asked = st.requested.unwrap_or(st.next);
                            return Some((Err(StoreError::Compacted(asked.max(st.next))), st));
                        }
                        if resp.canceled() {
                            tracing::warn!(reason = resp.cancel_reason(), "etcd watch canceled; reopening");
                            st.stream = None;
                            continue;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let revision = kv.mod_revision() as u64;
                            if revision < st.next {
                                continue;
                            }
                            let kind = match ev.event_type() {
                                EventType::Put => EventKind::Put,
                                EventType::Delete => EventKind::Delete,
                            };
                            let value = if kind == EventKind::Put { kv.value().to_vec() } else { Vec::new() };
                            st.pending.push_back(WatchEvent { kind, key: kv.key().to_vec(), value, revision });
                        }
                        if let Some(last) = st.pending.back() {
                            st.next = st.next.max(last.revision + 1);
                        }
                    }
                    Ok(None) | Err(_) => {
                        tracing::debug!(next = st.next, "etcd watch stream broke; reconnecting");
                        st.stream = None;
                    }
                }
            }
        })))
    }

    async fn flush(&self) -> Result<()> {
        // etcd acknowledges a write only once a quorum has it on disk.
        Ok(())
    }
}

impl EtcdStore {
    /// Revokes leases of a write that did not apply (best effort, in the background).
    fn revoke(&self, leases: Vec<i64>) {
        if leases.is_empty() {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            for id in leases {
                let _ = inner.call("lease revoke", false, |c| async move { c.lease_client().revoke(id).await }).await;
            }
        });
    }
}

fn common_prefix_end(prefix: &[u8]) -> Vec<u8> {
    crate::prefix_end(prefix).unwrap_or_else(|| vec![0])
}

struct WatchState {
    inner: Arc<Inner>,
    key: Vec<u8>,
    end: Vec<u8>,
    /// The revision the caller asked to start from.
    requested: Option<u64>,
    /// Every revision below this has been delivered; reconnects start here.
    next: u64,
    stream: Option<WatchStream>,
    pending: VecDeque<WatchEvent>,
    done: bool,
}

/// Opens a watch and waits until etcd confirms it; returns the stream, the revision at
/// creation, and the compaction revision when the start revision has been compacted (else 0).
async fn open_watch(inner: &Inner, key: &[u8], end: &[u8], start: Option<u64>) -> Result<(WatchStream, u64, i64)> {
    inner
        .call("watch", false, |c| {
            let mut opts = WatchOptions::new().with_range(end.to_vec());
            if let Some(s) = start {
                opts = opts.with_start_revision(s as i64);
            }
            let key = key.to_vec();
            async move {
                let mut stream = c.watch_client().max_decoding_message_size(256 << 20).watch(key, Some(opts)).await?;
                loop {
                    match stream.message().await? {
                        Some(resp) if resp.created() || resp.compact_revision() > 0 => {
                            let rev = resp.header().map_or(0, |h| h.revision() as u64);
                            return Ok((stream, rev, resp.compact_revision()));
                        }
                        Some(_) => continue,
                        None => return Err(etcd_client::Error::WatchError("watch stream closed at creation".into())),
                    }
                }
            }
        })
        .await
}
