//! A service's event log, as a transactional outbox (DESIGN "Service conventions"): a state
//! change and its event are committed by one atomic Store write, so there is never an event
//! without its change or a change without its event. Consumers read the log by scan and then
//! follow it by watch; delivery is at least once, so handlers must be idempotent.
//!
//! An append adds one condition and two puts to its transaction (etcd allows 128 operations
//! in all). Keys: events under `<service>/events/<sequence>` (big-endian u64, so key order is sequence
//! order), the last sequence handed out under `<service>/event-head`, consumer checkpoints
//! under `<service>/consumers/<name>`. [`EventLog::append`] reads the head through the
//! caller's [`Txn`] and writes head + 1 in the same commit. Trade-off: every append of a
//! service conflicts with every concurrent one on the head key (appends serialize, and under
//! contention retry with backoff), in exchange for sequences that are gapless, strictly
//! increasing and committed in sequence order. That makes a consumer's checkpoint one number,
//! lets a reader detect a missed event (a jump in the sequence) and lets `Watch*` streams
//! resume with `from_sequence` without gaps or repeats. A service whose append rate outgrows
//! one key would shard its log (one log per entity), not give up the order.
//!
//! Each event is an [`Event`] (a small prost message): sequence, type, time, payload, and the
//! W3C `traceparent` of the span that appended it, so consumers can link their work to it.
//!
//! Retention: [`EventLog::trim_consumed`] deletes the events every registered consumer has
//! handled (at or below the lowest checkpoint) and is always safe for them;
//! [`EventLog::trim_older_than`] deletes events older than an age whether consumed or not (a
//! bound on the log's size; a consumer that lagged that far loses those events and logs it).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use meshwork_storage::{Direction, DynStore, EventKind, KeyRange, Mutation, StoreError, Txn, WatchEvent, transact};
use meshwork_telemetry::metrics::EVENT_CONSUMER_LAG;
use prost::Message;

use crate::clock::{Clock, SystemClock};
use crate::error::{ServiceError, ServiceResult};

/// Events read per scan page.
const PAGE: usize = 500;

/// Deletes per store write when trimming (etcd allows 128 operations per transaction).
const TRIM_BATCH: usize = 100;

/// One event of a service's log.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Event {
    /// Position in the log: 1, 2, 3... without gaps.
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    /// What happened (`order.created`).
    #[prost(string, tag = "2")]
    pub r#type: String,
    /// When it was appended, Unix milliseconds.
    #[prost(int64, tag = "3")]
    pub time_ms: i64,
    /// The event's data, encoded by the service (usually a prost message).
    #[prost(bytes = "vec", tag = "4")]
    pub payload: Vec<u8>,
    /// The W3C `traceparent` of the span that appended the event; empty when there was none.
    #[prost(string, tag = "5")]
    pub traceparent: String,
}

/// Returns the `traceparent` of the current span, or an empty string outside any span.
fn current_traceparent() -> String {
    use opentelemetry::trace::TraceContextExt;
    let cx = meshwork_telemetry::propagation::current();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return String::new();
    }
    meshwork_telemetry::propagation::traceparent(sc.trace_id(), sc.span_id(), sc.is_sampled())
        .to_str()
        .map(str::to_string)
        .unwrap_or_default()
}

/// The event log of one service. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    store: DynStore,
    service: Arc<str>,
    /// `<service>/events/`.
    prefix: Arc<[u8]>,
    head_key: Arc<[u8]>,
    clock: Arc<dyn Clock>,
    /// Queues this process's appenders (see [`EventLog::append`]).
    appenders: Arc<tokio::sync::Mutex<()>>,
}

/// The append queue of the log at `head_key` on `store`, shared by every [`EventLog`] of this
/// process on that log (a service may make several: its handlers', its consumers').
fn append_queue(store: &DynStore, head_key: &[u8]) -> Arc<tokio::sync::Mutex<()>> {
    type Queues = std::sync::Mutex<std::collections::HashMap<(usize, Vec<u8>), Arc<tokio::sync::Mutex<()>>>>;
    static QUEUES: std::sync::LazyLock<Queues> = std::sync::LazyLock::new(Default::default);
    let store_id = Arc::as_ptr(store) as *const () as usize;
    let mut queues = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    queues.entry((store_id, head_key.to_vec())).or_default().clone()
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("service", &self.service).finish_non_exhaustive()
    }
}

fn decode_u64(raw: &[u8], what: &str) -> ServiceResult<u64> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| ServiceError::Internal(format!("{what} is not 8 bytes")))?;
    Ok(u64::from_be_bytes(bytes))
}

impl EventLog {
    /// Returns the log of `service` (its key prefix) on `store`, timed by the system clock.
    pub fn new(store: DynStore, service: &str) -> Self {
        let head_key: Arc<[u8]> = format!("{service}/event-head").into_bytes().into();
        EventLog {
            appenders: append_queue(&store, &head_key),
            store,
            service: service.into(),
            prefix: format!("{service}/events/").into_bytes().into(),
            head_key,
            clock: Arc::new(SystemClock),
        }
    }

    /// Returns this log stamping events with `clock`'s time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns the service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Returns the key of the event at `sequence`.
    pub fn event_key(&self, sequence: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 8);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(&sequence.to_be_bytes());
        key
    }

    fn sequence_of(&self, key: &[u8]) -> Option<u64> {
        let rest = key.strip_prefix(&*self.prefix)?;
        Some(u64::from_be_bytes(rest.try_into().ok()?))
    }

    fn checkpoint_prefix(&self) -> String {
        format!("{}/consumers/", self.service)
    }

    /// Buffers an event of `event_type` with `payload` in `tx` and returns its sequence; it is
    /// committed with the rest of `tx` (or not at all). Several appends in one transaction get
    /// consecutive sequences.
    ///
    /// Every append reads and bumps the log's head, so concurrent appenders conflict and all
    /// but one retry. Within one process they queue instead: the first append of a transaction
    /// waits its turn and the transaction keeps it until its commit is done ([`Txn::hold`]).
    /// Appenders in other processes (replicas on a shared store) still race optimistically.
    /// Do not wait, inside such a transaction, for another transaction appending to the same
    /// log in this process.
    pub async fn append(&self, tx: &Txn, event_type: &str, payload: Vec<u8>) -> ServiceResult<u64> {
        if !tx.holds(&self.head_key) {
            let turn = self.appenders.clone().lock_owned().await;
            tx.hold(&self.head_key, Box::new(turn));
        }
        let head = match tx.get(&self.head_key).await? {
            Some(v) => decode_u64(&v.value, "event head")?,
            None => 0,
        };
        let sequence = head + 1;
        let event = Event {
            sequence,
            r#type: event_type.to_string(),
            time_ms: self.clock.now_ms(),
            payload,
            traceparent: current_traceparent(),
        };
        tx.put(self.head_key.to_vec(), sequence.to_be_bytes().to_vec());
        tx.put(self.event_key(sequence), event.encode_to_vec());
        Ok(sequence)
    }

    /// Appends one event in a transaction of its own and returns its sequence (for events
    /// that go with no other write).
    pub async fn append_alone(&self, event_type: &str, payload: Vec<u8>) -> ServiceResult<u64> {
        transact(&self.store, |tx| {
            let payload = payload.clone();
            Box::pin(async move { self.append(&tx, event_type, payload).await })
        })
        .await
    }

    /// Returns the last sequence handed out (0 for an empty log).
    pub async fn head(&self) -> ServiceResult<u64> {
        match self.store.get(&self.head_key).await? {
            Some(v) => decode_u64(&v.value, "event head"),
            None => Ok(0),
        }
    }

    /// Returns up to `limit` events (0 = 500) from sequence `from` on, in order, reading at
    /// most 500 per store read. Trimmed events are skipped: the first may be later than `from`.
    /// With [`EventLog::follow`], this serves `Watch*` streams that resume at `from_sequence`.
    pub async fn read(&self, from: u64, limit: usize) -> ServiceResult<Vec<Event>> {
        let limit = if limit == 0 { PAGE } else { limit };
        let mut out = Vec::new();
        let mut range = self.range_from(from);
        while out.len() < limit {
            let page = self.store.scan(range.clone(), (limit - out.len()).min(PAGE), Direction::Forward).await?;
            for entry in page.entries {
                out.push(self.decode(&entry.value)?);
            }
            match page.next {
                Some(next) => range.start = std::ops::Bound::Included(next),
                None => break,
            }
        }
        Ok(out)
    }

    fn range_from(&self, from: u64) -> KeyRange {
        let end = meshwork_storage::prefix_end(&self.prefix).unwrap_or_default();
        KeyRange::between(self.event_key(from.max(1)), end)
    }

    fn decode(&self, raw: &[u8]) -> ServiceResult<Event> {
        Event::decode(raw)
            .map_err(|e| ServiceError::Internal(format!("undecodable event in the {} log: {e}", self.service)))
    }

    /// Returns every event from sequence `from` on, in order and once each: the ones stored
    /// now (by scan), then new ones as they are committed (by watch), forever. The hand-off is
    /// gapless: the watch starts at the store revision read before the last scan page, and
    /// events the scan already returned are skipped by sequence. A watch that fails (the store
    /// compacted its history, a connection broke) or skips a sequence is replaced by a new
    /// scan from the next expected sequence. Only an undecodable event is yielded as an error.
    /// For `Watch*` streams with `from_sequence`, and for [`Consumer`].
    pub fn follow(&self, from: u64) -> BoxStream<'static, ServiceResult<Event>> {
        let state =
            Follow { log: self.clone(), next: from.max(1), buffered: VecDeque::new(), watch: None, failures: 0 };
        Box::pin(futures::stream::unfold(state, |mut st| async move {
            let item = st.next_event().await;
            Some((item, st))
        }))
    }

    /// Returns the consumer `name` of this log (its checkpoint is `<service>/consumers/<name>`).
    pub fn consumer(&self, name: &str) -> Consumer {
        Consumer {
            log: self.clone(),
            name: name.into(),
            checkpoint_key: format!("{}{name}", self.checkpoint_prefix()).into_bytes(),
            lag: EVENT_CONSUMER_LAG.with_label_values(&[&*self.service, name]),
        }
    }

    /// Deletes every event at or below the lowest checkpoint of the consumers registered in
    /// the store (those that saved a checkpoint) and returns how many it deleted. With no
    /// consumer it deletes nothing. Safe for registered consumers; a consumer that starts
    /// later begins at the oldest event left.
    pub async fn trim_consumed(&self) -> ServiceResult<u64> {
        let checkpoints =
            meshwork_storage::scan_all(&self.store, KeyRange::prefix(self.checkpoint_prefix()), Direction::Forward)
                .await?;
        let mut lowest: Option<u64> = None;
        for entry in &checkpoints {
            let cp = decode_u64(&entry.value, "consumer checkpoint")?;
            lowest = Some(lowest.map_or(cp, |l| l.min(cp)));
        }
        match lowest {
            Some(upto) if upto > 0 => self.delete_while(|e| e.sequence <= upto).await,
            _ => Ok(0),
        }
    }

    /// Deletes events appended more than `age` ago, oldest first, stopping at the first newer
    /// one (times follow sequences up to clock skew between replicas), and returns how many.
    /// Consumers that had not handled them lose them.
    pub async fn trim_older_than(&self, age: Duration) -> ServiceResult<u64> {
        let cutoff = self.clock.now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        self.delete_while(|e| e.time_ms < cutoff).await
    }

    /// Deletes events from the oldest on while `keep_deleting` holds.
    async fn delete_while(&self, keep_deleting: impl Fn(&Event) -> bool) -> ServiceResult<u64> {
        let mut deleted = 0u64;
        loop {
            let page = self.store.scan(self.range_from(1), TRIM_BATCH, Direction::Forward).await?;
            let mut batch = Vec::with_capacity(page.entries.len());
            let mut stop = page.next.is_none();
            for entry in &page.entries {
                if keep_deleting(&self.decode(&entry.value)?) {
                    batch.push(Mutation::delete(entry.key.clone()));
                } else {
                    stop = true;
                    break;
                }
            }
            if !batch.is_empty() {
                deleted += batch.len() as u64;
                self.store.write(vec![], batch).await?;
            }
            if stop {
                return Ok(deleted);
            }
        }
    }
}

/// The state of a [`EventLog::follow`] stream.
struct Follow {
    log: EventLog,
    /// The next sequence to yield.
    next: u64,
    /// Events read by scan, not yet yielded.
    buffered: VecDeque<Event>,
    /// The live watch, once the scan reached the end of the log.
    watch: Option<BoxStream<'static, meshwork_storage::Result<WatchEvent>>>,
    /// Consecutive store failures, for the backoff.
    failures: u32,
}

impl Follow {
    async fn next_event(&mut self) -> ServiceResult<Event> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.next = event.sequence + 1;
                return Ok(event);
            }
            let step = match self.watch.as_mut() {
                None => self.catch_up().await,
                Some(watch) => match watch.next().await {
                    Some(Ok(change)) => self.take_change(change),
                    Some(Err(e)) => Err(Step::Store(e)),
                    None => Err(Step::Store(StoreError::Unavailable("the watch ended".into()))),
                },
            };
            match step {
                Ok(Some(event)) => {
                    self.failures = 0;
                    self.next = event.sequence + 1;
                    return Ok(event);
                }
                Ok(None) => self.failures = 0,
                Err(Step::Decode(e)) => return Err(e),
                Err(Step::Store(e)) => {
                    // Back to scanning from the next expected sequence.
                    self.watch = None;
                    self.failures += 1;
                    let backoff = Duration::from_millis(10 * 2u64.pow(self.failures.min(7)));
                    tracing::warn!(error = %e, service = %self.log.service, next = self.next, "event log watch lost; scanning again");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Reads one page from `next` into the buffer; at the end of the log, starts the watch.
    async fn catch_up(&mut self) -> Result<Option<Event>, Step> {
        let store = &self.log.store;
        // The revision before the scan: the watch starts right after it, so an event committed
        // between the scan and the watch is not missed (one seen twice is skipped).
        let revision = store.current_revision().await?;
        let page = store.scan(self.log.range_from(self.next), PAGE, Direction::Forward).await?;
        for entry in &page.entries {
            let event = match self.log.decode(&entry.value) {
                Ok(event) => event,
                Err(e) if self.buffered.is_empty() => return Err(Step::Decode(e)),
                // The events before it go out first; the next read starts at the bad one.
                Err(_) => return Ok(None),
            };
            if self.buffered.is_empty() && event.sequence > self.next {
                tracing::warn!(
                    service = %self.log.service,
                    expected = self.next,
                    found = event.sequence,
                    "events were trimmed before this reader read them"
                );
            }
            self.buffered.push_back(event);
        }
        if page.next.is_none() {
            self.watch = Some(store.watch(&self.log.prefix, Some(revision + 1)).await?);
        }
        Ok(None)
    }

    /// Returns the event of a watched change when it is the next one; `None` for deletions
    /// (trims) and events already yielded; a jump in the sequence means something was
    /// missed, so the watch is dropped and the log scanned again.
    fn take_change(&mut self, change: WatchEvent) -> Result<Option<Event>, Step> {
        if change.kind != EventKind::Put {
            return Ok(None);
        }
        let Some(sequence) = self.log.sequence_of(&change.key) else { return Ok(None) };
        if sequence < self.next {
            return Ok(None);
        }
        if sequence > self.next {
            return Err(Step::Store(StoreError::Unavailable(format!(
                "the watch skipped from sequence {} to {sequence}",
                self.next
            ))));
        }
        self.log.decode(&change.value).map(Some).map_err(Step::Decode)
    }
}

/// Why a step of [`Follow`] failed.
enum Step {
    /// Retried by scanning again.
    Store(StoreError),
    /// Yielded to the reader.
    Decode(ServiceError),
}

impl From<StoreError> for Step {
    fn from(e: StoreError) -> Self {
        Step::Store(e)
    }
}

/// A named, durable reader of an event log: handles every event in sequence order and saves
/// its position (the checkpoint, the last sequence handled) after each one, so a restarted
/// consumer continues where it left off. Delivery is at least once: an event whose handler
/// succeeded but whose checkpoint was not saved (a crash in between) is handled again, so
/// handlers must be idempotent. Run one instance per name (two would both handle every event).
/// Its lag (head - checkpoint) is the gauge `meshwork_event_consumer_lag{service,consumer}`.
pub struct Consumer {
    log: EventLog,
    name: String,
    checkpoint_key: Vec<u8>,
    lag: prometheus::IntGauge,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("service", &self.log.service).field("name", &self.name).finish()
    }
}

impl Consumer {
    /// Returns the consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the last sequence this consumer handled (0 before the first).
    pub async fn checkpoint(&self) -> ServiceResult<u64> {
        match self.log.store.get(&self.checkpoint_key).await? {
            Some(v) => decode_u64(&v.value, "consumer checkpoint"),
            None => Ok(0),
        }
    }

    /// Returns the consumer's lag read from the store (head - checkpoint) and sets the gauge.
    pub async fn lag(&self) -> ServiceResult<u64> {
        let lag = self.log.head().await?.saturating_sub(self.checkpoint().await?);
        self.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
        Ok(lag)
    }

    /// Handles events forever: from the checkpoint on, in order, each passed to `handler` and
    /// then checkpointed. A failing handler is retried with backoff on the same event (never
    /// skipped); store failures are retried too. Returns only with an error that retrying
    /// cannot fix (an undecodable event or checkpoint). Stop it by dropping the future
    /// (aborting its task): at most the event in hand is handled again on restart.
    ///
    /// `handler` gets each event and returns `Ok` once it is done with it:
    /// `consumer.run(|event| Box::pin(async move { ...; Ok(()) }))`.
    pub async fn run<'a, H>(&self, mut handler: H) -> ServiceResult<()>
    where
        H: FnMut(Event) -> BoxFuture<'a, ServiceResult<()>>,
    {
        let mut failures = 0u32;
        loop {
            let start = match self.checkpoint().await {
                Ok(cp) => cp,
                Err(e @ ServiceError::Internal(_)) => return Err(e),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, consumer = %self.name, "cannot read the checkpoint; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            let mut known_head = self.lag().await.map(|lag| start + lag).unwrap_or(start);
            let mut refreshed = tokio::time::Instant::now();
            let mut events = self.log.follow(start + 1);
            while let Some(event) = events.next().await {
                let event = event?;
                let sequence = event.sequence;
                self.handle(&mut handler, event).await;
                self.save(sequence).await;
                failures = 0;
                // The head as far as seen; read from the store at most once a second, so the
                // gauge also counts events still queued behind this one.
                known_head = known_head.max(sequence);
                if refreshed.elapsed() >= Duration::from_secs(1) {
                    refreshed = tokio::time::Instant::now();
                    if let Ok(head) = self.log.head().await {
                        known_head = known_head.max(head);
                    }
                }
                self.lag.set(i64::try_from(known_head - sequence).unwrap_or(i64::MAX));
            }
        }
    }

    /// Runs `handler` on `event` until it succeeds.
    async fn handle<'a, H>(&self, handler: &mut H, event: Event)
    where
        H: FnMut(Event) -> BoxFuture<'a, ServiceResult<()>>,
    {
        let mut attempt = 0u32;
        loop {
            match handler(event.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, consumer = %self.name, sequence = event.sequence, attempt, "event handler failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// Saves `sequence` as the checkpoint, retrying store failures.
    async fn save(&self, sequence: u64) {
        let mut attempt = 0u32;
        loop {
            let put = Mutation::put(self.checkpoint_key.clone(), sequence.to_be_bytes().to_vec());
            match self.log.store.write(vec![], vec![put]).await {
                Ok(_) => return,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, consumer = %self.name, sequence, "cannot save the checkpoint; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
}

/// Returns the wait before retry number `attempt` (20 ms doubling, at most about 5 s).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(20 * 2u64.pow(attempt.clamp(1, 8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_sequence_and_parse_back() {
        let store: DynStore = Arc::new(meshwork_storage::memory::MemoryStore::new());
        let log = EventLog::new(store, "svc");
        let keys: Vec<Vec<u8>> = [1u64, 2, 255, 256, 65_536, u64::MAX].iter().map(|s| log.event_key(*s)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(log.sequence_of(&log.event_key(256)), Some(256));
        assert_eq!(log.sequence_of(b"svc/events/short"), None);
        assert!(!log.head_key.starts_with(&log.prefix), "the head is outside the watched prefix");
    }

    /// Event keys are order-preserving over the whole `u64` range and parse back.
    #[test]
    fn event_keys_preserve_order_for_any_sequences() {
        fn prop(a: u64, b: u64, shift: u8) -> bool {
            // quickcheck's u64s are small; shifting reaches the high bytes too.
            let (a, b) = (a << (shift % 56), b << (shift % 56));
            let store: DynStore = Arc::new(meshwork_storage::memory::MemoryStore::new());
            let log = EventLog::new(store, "svc");
            let (ka, kb) = (log.event_key(a), log.event_key(b));
            a.cmp(&b) == ka.cmp(&kb) && log.sequence_of(&ka) == Some(a)
        }
        quickcheck::QuickCheck::new().tests(2_000).quickcheck(prop as fn(u64, u64, u8) -> bool);
    }
}
