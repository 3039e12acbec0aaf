//! The trace store behind the embedded collector: spans grouped by trace, bounded by span
//! count and by age (the oldest traces go first), and the queries the Jaeger APIs need
//! (services, operations, search, dependencies). Spans are kept encoded, as slices of the
//! export they came in, next to the fields the queries filter on (see `wire`); a span is
//! decoded only when a query returns it or matches its attributes. What the queries read is
//! kept up to date as spans arrive and traces are evicted: each span's display service, each
//! trace's start (searches walk traces by start, newest first, and stop at their limit), and a
//! catalog of services and operations (which the Jaeger UI asks for on every page).
//!
//! The service a span is shown under is its `meshwork.service` attribute when it has one (a
//! process that hosts several logical services, as `meshwork up` does), else its parent's when
//! the parent ran in the same process, else the process's `service.name`.
//!
//! The age bound reads the wall time of the store's [`Clock`] (the system clock unless a test
//! gives it a `ManualClock`), as does the arrival time of what is ingested.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use meshwork_clock::{Clock, SystemClock};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::wire::{Index, Process, SpanIndex};

/// A trace id (16 bytes).
pub type TraceId = [u8; 16];

/// The store's hash maps: keyed by what exporters send (trace ids, service and span names), so
/// hashed with a per-process random seed, by foldhash rather than SipHash, which took a sixth
/// of ingest's instructions.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

/// The id of one persisted segment (see `persist`): the sequence number of the export whose
/// spans it holds.
pub type SegmentId = u64;

/// One stored span and the process that reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpan {
    pub span: Span,
    /// `service.name` of the reporting process.
    pub process_service: String,
    /// The reporting process's resource attributes (shared by the spans of one export).
    pub process_attributes: Arc<[KeyValue]>,
}

/// A trace as stored: its spans, with each one's display service resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub trace_id: TraceId,
    pub spans: Vec<StoredSpan>,
    /// The display service of each span, in the order of `spans`.
    pub services: Vec<String>,
}

impl Trace {
    /// Returns the earliest start of the trace, in Unix nanoseconds.
    pub fn start_ns(&self) -> u64 {
        self.spans.iter().map(|s| s.span.start_time_unix_nano).min().unwrap_or(0)
    }

    /// Returns the trace's duration (earliest start to latest end), in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        let end = self.spans.iter().map(|s| s.span.end_time_unix_nano).max().unwrap_or(0);
        end.saturating_sub(self.start_ns())
    }
}

/// Search criteria (the union of what Jaeger's v1 and v3 searches can ask).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// Every tag must match one span's attribute (or its process attribute), as strings.
    pub tags: Vec<(String, String)>,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
    pub start_min_ns: Option<u64>,
    pub start_max_ns: Option<u64>,
    /// Only traces with a span whose status is ERROR.
    pub errors_only: bool,
    pub limit: usize,
}

/// Limits of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_spans: usize,
    pub max_age: Duration,
    /// Spans kept per trace; further spans of a full trace are rejected (and reported so, as
    /// OTLP partial success). Ingest works out a trace's services again when a span arrives
    /// that is the parent of stored ones, so this bounds what one export can cost.
    pub max_spans_per_trace: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits { max_spans: 200_000, max_age: Duration::from_secs(24 * 3600), max_spans_per_trace: 10_000 }
    }
}

/// One span as held: its index and the process that reported it.
struct Held {
    span: SpanIndex,
    process: Arc<Process>,
}

impl Held {
    /// Decodes the span (its encoding was checked when it was indexed).
    fn decode(&self) -> Option<StoredSpan> {
        match Span::decode(self.span.encoded.as_ref()) {
            Ok(span) => Some(StoredSpan {
                span,
                process_service: self.process.service.clone(),
                process_attributes: Arc::clone(&self.process.attributes),
            }),
            Err(e) => {
                tracing::error!(error = %e, "a stored span does not decode");
                None
            }
        }
    }

    fn duration_ns(&self) -> u64 {
        self.span.end_ns.saturating_sub(self.span.start_ns)
    }
}

/// Where a span's display service comes from: the `meshwork.service` attribute of span `span`
/// of its trace, or (`attribute == false`) the `service.name` of the process that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServiceOf {
    span: u32,
    attribute: bool,
}

impl ServiceOf {
    fn name(self, spans: &[Held]) -> &str {
        let held = &spans[self.span as usize];
        if self.attribute { held.span.service().unwrap_or_default() } else { held.process.service.as_str() }
    }
}

/// One stored trace: its spans in arrival order, each one's display service, and its start.
/// Services and start are brought up to date whenever spans arrive (a parent that arrives later
/// can change its children's service), so that queries only read them.
#[derive(Default)]
struct Stored {
    spans: Vec<Held>,
    services: Vec<ServiceOf>,
    /// The earliest start of its spans (Unix ns).
    start_ns: u64,
    /// Once the trace is too large for scans ([`SCAN_SPANS`]): the position of each span id
    /// (its first span with that id), and the parent ids its spans name that no span has.
    index: Option<SpanIds>,
}

#[derive(Default)]
struct SpanIds {
    position: Map<[u8; 8], u32>,
    missing: Set<[u8; 8]>,
}

/// Traces of at most this many spans find a parent by scanning their spans.
const SCAN_SPANS: usize = 16;

impl Stored {
    /// Returns the display service of span `i`.
    fn service(&self, i: usize) -> &str {
        match self.services.get(i) {
            Some(of) => of.name(&self.spans),
            // Only if a panic cut an ingest short between adding spans and resolving them.
            None => self.spans[i].process.service.as_str(),
        }
    }

    /// Returns the position of the first span with id `id`.
    fn position(&self, id: Option<[u8; 8]>) -> Option<usize> {
        let id = id?;
        match &self.index {
            Some(index) => index.position.get(&id).map(|&i| i as usize),
            None => self.spans.iter().position(|s| s.span.span_id == Some(id)),
        }
    }

    /// Takes the spans from `from` on into the trace's id index; returns whether one of them is
    /// the parent of a span stored before `from` (whose service may then change). In time
    /// proportional to the new spans once the trace keeps an index.
    fn index_spans(&mut self, from: usize) -> bool {
        let Some(index) = &mut self.index else {
            let adopts =
                self.spans[..from].iter().any(|h| self.position(h.span.parent_span_id).is_some_and(|at| at >= from));
            if self.spans.len() > SCAN_SPANS {
                self.index = Some(SpanIds::default());
                self.index_spans(0);
            }
            return adopts;
        };
        let new = &self.spans[from..];
        // A new span adopts stored ones if its id is a parent they name that no span had.
        let adopts = new.iter().any(|h| h.span.span_id.is_some_and(|id| index.missing.contains(&id)));
        for (i, held) in new.iter().enumerate() {
            if let Some(id) = held.span.span_id
                && !index.position.contains_key(&id)
            {
                index.position.insert(id, (from + i) as u32);
                index.missing.remove(&id);
            }
        }
        for held in new {
            if let Some(parent) = held.span.parent_span_id
                && !index.position.contains_key(&parent)
            {
                index.missing.insert(parent);
            }
        }
        adopts
    }
}

/// The services and operations of the stored spans, kept up to date as spans arrive and traces
/// are evicted, so that the services and operations queries read them instead of walking every
/// trace: service -> span name -> how many stored spans of each kind.
#[derive(Default)]
struct Catalog(Map<Box<str>, Map<Box<str>, KindCounts>>);

/// How many stored spans of one service and name there are of each kind (few kinds occur).
type KindCounts = Vec<(i32, u32)>;

impl Catalog {
    fn add(&mut self, service: &str, name: &str, kind: i32) {
        // Looked up first: a key is allocated only for a service or name not seen yet.
        let names = match self.0.get_mut(service) {
            Some(names) => names,
            None => self.0.entry(service.into()).or_default(),
        };
        let kinds = match names.get_mut(name) {
            Some(kinds) => kinds,
            None => names.entry(name.into()).or_default(),
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += 1,
            None => kinds.push((kind, 1)),
        }
    }

    fn remove(&mut self, service: &str, name: &str, kind: i32) {
        let Some(names) = self.0.get_mut(service) else { return };
        if let Some(kinds) = names.get_mut(name) {
            if let Some(at) = kinds.iter().position(|(k, _)| *k == kind) {
                kinds[at].1 -= 1;
                if kinds[at].1 == 0 {
                    kinds.swap_remove(at);
                }
            }
            if kinds.is_empty() {
                names.remove(name);
            }
        }
        if names.is_empty() {
            self.0.remove(service);
        }
    }
}

#[derive(Default)]
struct Inner {
    traces: Map<TraceId, Stored>,
    /// Traces in the order they were first seen, with that time (Unix ns): the eviction order.
    order: VecDeque<(u64, TraceId)>,
    /// Traces by start: searches walk it newest first, within their time window.
    by_start: BTreeSet<(u64, TraceId)>,
    catalog: Catalog,
    spans: usize,
    /// The persisted segments holding spans of each trace (only traces that have some).
    segments: Map<TraceId, Vec<SegmentId>>,
    /// How many stored traces have spans in each persisted segment; a segment is no longer
    /// needed when its count reaches zero.
    segment_traces: Map<SegmentId, usize>,
}

impl Inner {
    /// Brings trace `id`'s services and start up to date once spans from position `old_len` on
    /// have arrived, and moves its entries in the catalog and in `by_start` to match.
    fn refresh(&mut self, id: TraceId, old_len: usize) {
        let Inner { traces, by_start, catalog, .. } = self;
        let Some(stored) = traces.get_mut(&id) else { return };
        // The stored spans keep their services unless a new span is the parent of one of them
        // (a parent found by the first span with its id: later duplicates change nothing).
        let adopts = stored.index_spans(old_len);
        let known = if adopts { 0 } else { old_len.min(stored.services.len()) };
        let services = resolve(stored, known);
        let old = std::mem::replace(&mut stored.services, services);
        let old_start = stored.start_ns;
        let known_start = if old_len == 0 { u64::MAX } else { old_start };
        stored.start_ns = stored.spans[old_len..].iter().map(|h| h.span.start_ns).fold(known_start, u64::min);
        if old_len == 0 || stored.start_ns != old_start {
            if old_len > 0 {
                by_start.remove(&(old_start, id));
            }
            by_start.insert((stored.start_ns, id));
        }
        let stored = &*stored;
        for (i, held) in stored.spans.iter().enumerate().skip(known) {
            let now = stored.services[i].name(&stored.spans);
            match old.get(i) {
                Some(was) => {
                    let was = was.name(&stored.spans);
                    if was != now {
                        catalog.remove(was, held.span.name(), held.span.kind);
                        catalog.add(now, held.span.name(), held.span.kind);
                    }
                }
                None => catalog.add(now, held.span.name(), held.span.kind),
            }
        }
    }

    /// Returns the traces that started in `[from, to]` (Unix ns), oldest first.
    fn started_within(&self, from: u64, to: u64) -> impl DoubleEndedIterator<Item = (&TraceId, &Stored)> {
        // An empty window, not an inverted range (which `BTreeSet::range` panics on).
        let range = if from <= to { Some(self.by_start.range((from, [0; 16])..=(to, [0xff; 16]))) } else { None };
        range.into_iter().flatten().map(|(_, id)| (id, &self.traces[id]))
    }

    /// Drops trace `id` and its entries in the catalog and in `by_start`; returns its span count.
    fn remove(&mut self, id: &TraceId) -> usize {
        let Some(stored) = self.traces.remove(id) else { return 0 };
        self.by_start.remove(&(stored.start_ns, *id));
        for (i, held) in stored.spans.iter().enumerate() {
            self.catalog.remove(stored.service(i), held.span.name(), held.span.kind);
        }
        stored.spans.len()
    }
}

/// The bounded trace store.
pub struct TraceStore {
    inner: RwLock<Inner>,
    limits: StoreLimits,
    /// Where the age bound and arrival times read the time.
    clock: Arc<dyn Clock>,
}

/// Returns the string form of an OTLP attribute value.
pub fn any_value_string(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Returns the string value of attribute `key`, if present.
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| any_value_string(&kv.value))
}

impl TraceStore {
    /// Returns an empty store with `limits`, on the system clock.
    pub fn new(limits: StoreLimits) -> Self {
        Self::with_clock(limits, Arc::new(SystemClock))
    }

    /// Returns an empty store with `limits` that reads the time from `clock`.
    pub fn with_clock(limits: StoreLimits, clock: Arc<dyn Clock>) -> Self {
        TraceStore { inner: RwLock::new(Inner::default()), limits, clock }
    }

    /// Returns the current time on the store's clock, in Unix nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.clock.unix_ns()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A writer that panicked leaves the maps usable (a trace's spans may lack their services,
        // which `Stored::service` allows for); no query panics on what it left.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the spans of an indexed OTLP export. Spans with malformed ids are skipped; returns
    /// how many were rejected.
    pub fn ingest(&self, export: Index) -> usize {
        self.ingest_evicting(export, None, self.now_ns()).0
    }

    /// [`TraceStore::ingest`] of an export that a persistent copy holds as `segment`, first
    /// seen at `seen_ns` (Unix ns; the order in which traces are evicted). Also returns the
    /// segments no longer needed: those whose every trace has been evicted to make room (this
    /// one included when none of its spans was kept), so that the persistent copy can drop them.
    pub fn ingest_evicting(&self, export: Index, segment: Option<SegmentId>, seen_ns: u64) -> (usize, Vec<SegmentId>) {
        let mut rejected = 0;
        let mut inner = self.write();
        let inner = &mut *inner;
        let mut dead = Vec::new();
        // The traces this export adds to, with how many spans each had before it.
        let mut touched: Vec<(TraceId, usize)> = Vec::new();
        for resource in export.resources {
            for span in resource.spans {
                let (Some(trace_id), Some(_)) = (span.trace_id, span.span_id) else {
                    rejected += 1;
                    continue;
                };
                if trace_id == [0; 16] {
                    rejected += 1;
                    continue;
                }
                let held = Held { span, process: Arc::clone(&resource.process) };
                let stored = inner.traces.entry(trace_id).or_default();
                let before = stored.spans.len();
                if before >= self.limits.max_spans_per_trace.max(1) {
                    rejected += 1;
                    continue;
                }
                stored.spans.push(held);
                inner.spans += 1;
                if before == 0 {
                    inner.order.push_back((seen_ns, trace_id));
                }
                // An export mostly holds a trace's spans together; repeats are removed below.
                if touched.last().is_none_or(|(id, _)| *id != trace_id) {
                    touched.push((trace_id, before));
                }
                if let Some(segment) = segment {
                    let held = inner.segments.entry(trace_id).or_default();
                    if held.last() != Some(&segment) {
                        held.push(segment);
                        *inner.segment_traces.entry(segment).or_default() += 1;
                    }
                }
            }
        }
        // Each trace once, with its span count before the export (the smallest recorded).
        touched.sort_unstable();
        touched.dedup_by_key(|(id, _)| *id);
        for (id, before) in touched {
            inner.refresh(id, before);
        }
        if let Some(segment) = segment
            && !inner.segment_traces.contains_key(&segment)
        {
            // Nothing of this export was kept: its segment holds nothing to load.
            dead.push(segment);
        }
        self.evict(inner, &mut dead);
        (rejected, dead)
    }

    /// Drops the oldest traces while the store is over its span count or they are too old;
    /// adds the segments that no longer hold a stored trace to `dead`.
    fn evict(&self, inner: &mut Inner, dead: &mut Vec<SegmentId>) {
        let oldest_allowed = self.now_ns().saturating_sub(self.limits.max_age.as_nanos() as u64);
        while let Some(&(seen, id)) = inner.order.front() {
            if inner.spans <= self.limits.max_spans && seen >= oldest_allowed {
                break;
            }
            inner.order.pop_front();
            inner.spans -= inner.remove(&id);
            for segment in inner.segments.remove(&id).unwrap_or_default() {
                if let Some(count) = inner.segment_traces.get_mut(&segment) {
                    *count -= 1;
                    if *count == 0 {
                        inner.segment_traces.remove(&segment);
                        dead.push(segment);
                    }
                }
            }
        }
    }

    /// Returns the number of stored spans.
    pub fn span_count(&self) -> usize {
        self.read().spans
    }

    /// Returns trace `id`, if stored.
    pub fn trace(&self, id: &TraceId) -> Option<Trace> {
        let inner = self.read();
        Some(decode(*id, inner.traces.get(id)?))
    }

    /// Returns every service that has spans, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = self.read().catalog.0.keys().map(|s| s.to_string()).collect();
        out.sort_unstable();
        out
    }

    /// Returns (operation, span kind) pairs of `service`, sorted.
    pub fn operations(&self, service: &str) -> Vec<(String, i32)> {
        let inner = self.read();
        let Some(names) = inner.catalog.0.get(service) else { return Vec::new() };
        let mut out: Vec<(String, i32)> =
            names.iter().flat_map(|(name, kinds)| kinds.iter().map(|(kind, _)| (name.to_string(), *kind))).collect();
        out.sort_unstable();
        out
    }

    /// Returns the traces matching `query`, newest (by start) first.
    pub fn search(&self, query: &TraceQuery) -> Vec<Trace> {
        let limit = if query.limit == 0 { 20 } else { query.limit };
        let inner = self.read();
        inner
            .started_within(query.start_min_ns.unwrap_or(0), query.start_max_ns.unwrap_or(u64::MAX))
            .rev()
            .filter(|(_, stored)| matches(stored, query))
            .take(limit)
            .map(|(id, stored)| decode(*id, stored))
            .collect()
    }

    /// Returns (parent service, child service, calls) for every cross-service parent/child
    /// span pair of traces that started in `[start_ns, end_ns]`.
    pub fn dependencies(&self, start_ns: u64, end_ns: u64) -> Vec<(String, String, u64)> {
        let inner = self.read();
        let mut edges: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (_, stored) in inner.started_within(start_ns, end_ns) {
            for (i, s) in stored.spans.iter().enumerate() {
                if let Some(p) = stored.position(s.span.parent_span_id) {
                    let (parent, child) = (stored.service(p), stored.service(i));
                    if parent != child {
                        *edges.entry((parent, child)).or_default() += 1;
                    }
                }
            }
        }
        edges.into_iter().map(|((p, c), n)| (p.to_string(), c.to_string(), n)).collect()
    }
}

/// Decodes a trace's spans, with their display services.
fn decode(trace_id: TraceId, stored: &Stored) -> Trace {
    let (spans, services) =
        stored.spans.iter().enumerate().filter_map(|(i, h)| Some((h.decode()?, stored.service(i).to_string()))).unzip();
    Trace { trace_id, spans, services }
}

/// Resolves where the display service of every span of a trace comes from (see the module
/// doc), keeping the services of its first `known` spans as they are.
fn resolve(stored: &Stored, known: usize) -> Vec<ServiceOf> {
    let spans = &stored.spans;
    let mut services: Vec<Option<ServiceOf>> = stored.services[..known].iter().copied().map(Some).collect();
    services.resize(spans.len(), None);
    fn service_of(i: usize, stored: &Stored, memo: &mut [Option<ServiceOf>], depth: usize) -> ServiceOf {
        if let Some(s) = memo[i] {
            return s;
        }
        let held = &stored.spans[i];
        let resolved = if held.span.service().is_some() {
            ServiceOf { span: i as u32, attribute: true }
        } else {
            match stored.position(held.span.parent_span_id) {
                // Depth bound: a malformed trace could have a parent cycle.
                Some(p) if depth < 256 && stored.spans[p].process.service == held.process.service => {
                    service_of(p, stored, memo, depth + 1)
                }
                _ => ServiceOf { span: i as u32, attribute: false },
            }
        };
        memo[i] = Some(resolved);
        resolved
    }
    for i in known..spans.len() {
        service_of(i, stored, &mut services, 0);
    }
    services.into_iter().map(|s| s.unwrap_or(ServiceOf { span: 0, attribute: false })).collect()
}

fn matches(stored: &Stored, q: &TraceQuery) -> bool {
    let spans = &stored.spans;
    if q.errors_only && !spans.iter().any(|s| s.span.error) {
        return false;
    }
    // Jaeger semantics: one span must match service, operation, duration and every tag.
    spans.iter().enumerate().any(|(i, s)| {
        let duration = s.duration_ns();
        q.service.as_ref().is_none_or(|want| want == stored.service(i))
            && q.operation.as_ref().is_none_or(|want| want == s.span.name())
            && q.min_duration_ns.is_none_or(|m| duration >= m)
            && q.max_duration_ns.is_none_or(|m| duration <= m)
            && q.tags.iter().all(|(k, v)| {
                s.span.attribute(k).or_else(|| attribute(&s.process.attributes, k)).as_deref() == Some(v.as_str())
            })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use meshwork_telemetry::grpc::SERVICE_ATTRIBUTE;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    /// Encodes and indexes an export of `resource_spans`.
    pub fn indexed(resource_spans: Vec<ResourceSpans>) -> Index {
        let encoded = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
        crate::wire::index(&encoded.into()).unwrap()
    }

    pub fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
            ..Default::default()
        }
    }

    pub fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, start: u64, end: u64, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: attrs,
            ..Default::default()
        }
    }

    pub fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn services_resolve_through_attributes_and_parents() {
        let store = TraceStore::new(StoreLimits::default());
        let spans = vec![
            span(1, 1, None, "gw", 100, 900, vec![kv(SERVICE_ATTRIBUTE, "gateway")]),
            span(1, 2, Some(1), "svc", 200, 800, vec![kv(SERVICE_ATTRIBUTE, "urlshortener")]),
            span(1, 3, Some(2), "storage.get", 300, 400, vec![]),
        ];
        assert_eq!(store.ingest(indexed(vec![batch("meshwork", spans)])), 0);
        let t = store.trace(&[1; 16]).unwrap();
        assert_eq!(t.services, vec!["gateway", "urlshortener", "urlshortener"]);
        assert_eq!(t.duration_ns(), 800);
        assert_eq!(store.services(), vec!["gateway", "urlshortener"]);
        assert_eq!(store.operations("urlshortener"), vec![("storage.get".into(), 2), ("svc".into(), 2)]);
        assert_eq!(store.dependencies(0, u64::MAX), vec![("gateway".into(), "urlshortener".into(), 1)]);
    }

    #[test]
    fn search_matches_errors_and_tags_of_spans_or_of_their_process() {
        use opentelemetry_proto::tonic::trace::v1::Status;
        let store = TraceStore::new(StoreLimits::default());
        let mut failed = span(1, 1, None, "a", 0, 10, vec![kv("k", "v")]);
        failed.status = Some(Status { code: 2, message: "boom".into() });
        let mut ok = span(2, 1, None, "a", 20, 30, vec![]);
        ok.status = Some(Status { code: 1, message: String::new() });
        let mut resource = batch("svc", vec![failed, ok]);
        resource.resource.as_mut().unwrap().attributes.push(kv("host.name", "h1"));
        store.ingest(indexed(vec![resource, batch("other", vec![span(3, 1, None, "b", 40, 50, vec![])])]));
        let q = |f: &dyn Fn(&mut TraceQuery)| {
            let mut q = TraceQuery::default();
            f(&mut q);
            store.search(&q).iter().map(|t| t.trace_id[0]).collect::<Vec<_>>()
        };
        assert_eq!(q(&|q| q.errors_only = true), vec![1]);
        // A tag matches a span's attribute or its process's.
        assert_eq!(q(&|q| q.tags = vec![("host.name".into(), "h1".into())]), vec![2, 1]);
        assert_eq!(q(&|q| q.tags = vec![("host.name".into(), "h1".into()), ("k".into(), "v".into())]), vec![1]);
        assert_eq!(q(&|q| q.tags = vec![("host.name".into(), "h2".into())]), Vec::<u8>::new());
        // Every criterion on one span: service "other" has no span tagged k=v.
        assert_eq!(
            q(&|q| {
                q.service = Some("other".into());
                q.tags = vec![("k".into(), "v".into())];
            }),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn search_filters_and_bounds() {
        let store =
            TraceStore::new(StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600), ..Default::default() });
        store.ingest(indexed(vec![batch("a", vec![span(1, 1, None, "slow", 0, 5_000_000, vec![kv("k", "v")])])]));
        store.ingest(indexed(vec![batch("a", vec![span(2, 1, None, "fast", 10, 20, vec![])])]));
        store.ingest(indexed(vec![batch("b", vec![span(3, 1, None, "other", 30, 40, vec![])])]));
        let q = |f: fn(&mut TraceQuery)| {
            let mut q = TraceQuery::default();
            f(&mut q);
            store.search(&q).iter().map(|t| t.trace_id[0]).collect::<Vec<_>>()
        };
        assert_eq!(q(|q| q.service = Some("a".into())), vec![2, 1]);
        assert_eq!(q(|q| q.min_duration_ns = Some(1_000_000)), vec![1]);
        assert_eq!(q(|q| q.tags = vec![("k".into(), "v".into())]), vec![1]);
        assert_eq!(q(|q| q.operation = Some("fast".into())), vec![2]);
        assert_eq!(q(|q| q.limit = 1), vec![3]);
        // Over the span limit the oldest trace goes.
        store.ingest(indexed(vec![batch("b", vec![span(4, 1, None, "newest", 50, 60, vec![])])]));
        assert!(store.trace(&[1; 16]).is_none());
        assert_eq!(store.span_count(), 3);
        // Malformed ids are rejected.
        let mut bad = span(5, 1, None, "bad", 0, 1, vec![]);
        bad.trace_id.truncate(3);
        assert_eq!(store.ingest(indexed(vec![batch("b", vec![bad])])), 1);
    }

    /// Traces older than the age bound go when spans next arrive, by the time they were first
    /// seen (not their spans' own timestamps).
    #[test]
    fn traces_age_out_on_the_stores_clock() {
        use meshwork_clock::ManualClock;
        let clock = ManualClock::new(1_800_000_000_000);
        let limits = StoreLimits { max_age: Duration::from_secs(60), ..Default::default() };
        let store = TraceStore::with_clock(limits, Arc::new(clock.clone()));
        let ingest = |t: u8| store.ingest(indexed(vec![batch("a", vec![span(t, 1, None, "op", 10, 20, vec![])])]));
        let stored = || (1..=4u8).filter(|t| store.trace(&[*t; 16]).is_some()).collect::<Vec<_>>();
        ingest(1);
        clock.advance(30_000);
        ingest(2);
        clock.advance(30_000);
        ingest(3);
        assert_eq!(stored(), vec![1, 2, 3], "trace 1 is exactly as old as allowed");
        // A later span of trace 1 does not make it younger.
        store.ingest(indexed(vec![batch("a", vec![span(1, 2, Some(1), "late", 30, 40, vec![])])]));
        clock.advance(1);
        ingest(4);
        assert_eq!(stored(), vec![2, 3, 4]);
        assert_eq!(store.services(), vec!["a"]);
        clock.advance(60_000);
        ingest(4);
        assert_eq!(stored(), vec![4], "traces 2 and 3 aged out; trace 4 was first seen a minute ago, exactly");
        assert_eq!(store.span_count(), 2);
    }

    #[test]
    fn a_parent_arriving_later_moves_its_childrens_operations_and_eviction_forgets_them() {
        let store =
            TraceStore::new(StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600), ..Default::default() });
        // The child first: it is shown under its process until its parent says otherwise.
        store.ingest(indexed(vec![batch("meshwork", vec![span(1, 2, Some(1), "storage.get", 300, 400, vec![])])]));
        assert_eq!(store.services(), vec!["meshwork"]);
        store.ingest(indexed(vec![batch(
            "meshwork",
            vec![span(1, 1, None, "Resolve", 100, 900, vec![kv(SERVICE_ATTRIBUTE, "urlshortener")])],
        )]));
        assert_eq!(store.services(), vec!["urlshortener"]);
        assert_eq!(store.operations("urlshortener"), vec![("Resolve".into(), 2), ("storage.get".into(), 2)]);
        assert_eq!(store.operations("meshwork"), vec![]);
        // The parent started earlier than the child: the trace's start moved with it.
        let window = |from, to| {
            store.search(&TraceQuery { start_min_ns: Some(from), start_max_ns: Some(to), ..Default::default() }).len()
        };
        assert_eq!((window(100, 100), window(300, 300)), (1, 0));
        // An inverted window is empty, for searches and dependencies alike.
        assert_eq!((window(900, 100), store.dependencies(900, 100)), (0, vec![]));
        // Two newer traces of another service push it out of the store (3 spans at most).
        store.ingest(indexed(vec![batch("other", vec![span(2, 1, None, "a", 1000, 1100, vec![])])]));
        store.ingest(indexed(vec![batch("other", vec![span(3, 1, None, "a", 1200, 1300, vec![])])]));
        assert_eq!(store.services(), vec!["other"]);
        assert_eq!(store.operations("urlshortener"), vec![]);
        assert_eq!(window(0, u64::MAX), 2);
    }

    /// A tiny xorshift generator: the test below needs reproducible, not good, randomness.
    struct Draw(u64);

    impl Draw {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// What the kept services, catalog and start order must be, worked out from scratch from the
    /// stored spans; compared with what the store kept up to date as spans came and went.
    fn assert_consistent(store: &TraceStore) {
        let inner = store.read();
        let mut catalog: BTreeMap<String, BTreeSet<(String, i32)>> = BTreeMap::new();
        let mut by_start = BTreeSet::new();
        for (id, stored) in &inner.traces {
            let fresh = resolve(stored, 0);
            for (i, held) in stored.spans.iter().enumerate() {
                let name = fresh[i].name(&stored.spans);
                assert_eq!(stored.service(i), name, "kept service of span {i} of trace {id:?}");
                catalog.entry(name.to_string()).or_default().insert((held.span.name().to_string(), held.span.kind));
            }
            if let Some(index) = &stored.index {
                let mut position = BTreeMap::new();
                for (i, held) in stored.spans.iter().enumerate() {
                    position.entry(held.span.span_id.unwrap()).or_insert(i as u32);
                }
                let missing: BTreeSet<[u8; 8]> = stored
                    .spans
                    .iter()
                    .filter_map(|h| h.span.parent_span_id)
                    .filter(|p| !position.contains_key(p))
                    .collect();
                assert_eq!(index.position.iter().map(|(k, v)| (*k, *v)).collect::<BTreeMap<_, _>>(), position);
                assert_eq!(index.missing.iter().copied().collect::<BTreeSet<_>>(), missing);
            } else {
                assert!(stored.spans.len() <= SCAN_SPANS);
            }
            let start = stored.spans.iter().map(|h| h.span.start_ns).min().unwrap();
            assert_eq!(stored.start_ns, start);
            by_start.insert((start, *id));
        }
        assert_eq!(inner.by_start, by_start);
        assert_eq!(inner.spans, inner.traces.values().map(|t| t.spans.len()).sum::<usize>());
        drop(inner);
        assert_eq!(store.services(), catalog.keys().cloned().collect::<Vec<_>>());
        for (service, operations) in &catalog {
            assert_eq!(store.operations(service), operations.iter().cloned().collect::<Vec<_>>());
            // A search by service walks newest first and agrees with a filter of every trace.
            let expected: Vec<TraceId> = by_start
                .iter()
                .rev()
                .filter(|(_, id)| {
                    let inner = store.read();
                    let stored = &inner.traces[id];
                    (0..stored.spans.len()).any(|i| stored.service(i) == service)
                })
                .map(|(_, id)| *id)
                .take(5)
                .collect();
            let found: Vec<TraceId> = store
                .search(&TraceQuery { service: Some(service.clone()), limit: 5, ..Default::default() })
                .iter()
                .map(|t| t.trace_id)
                .collect();
            assert_eq!(found, expected, "search of {service}");
        }
    }

    /// Random exports into a store with `limits`: `traces` trace ids, span ids below `ids`, up
    /// to `spans` spans per resource; checks the store against a recomputation after each.
    fn random_exports(seed: u64, traces: u64, ids: u64, spans: u64, limits: StoreLimits) {
        let mut draw = Draw(seed);
        let store = TraceStore::new(limits);
        for _ in 0..400 {
            let resources = (0..1 + draw.below(2))
                .map(|_| {
                    let process = ["p", "q"][draw.below(2) as usize];
                    let spans = (0..1 + draw.below(spans))
                        .map(|_| {
                            let parent = draw.below(ids) as u8;
                            let attrs = match draw.below(3) {
                                0 => vec![kv(SERVICE_ATTRIBUTE, ["a", "b"][draw.below(2) as usize])],
                                _ => vec![],
                            };
                            let start = draw.below(1000);
                            let mut s = span(
                                1 + draw.below(traces) as u8,
                                1 + draw.below(ids - 1) as u8,
                                (parent > 0).then_some(parent),
                                ["x", "y", "z"][draw.below(3) as usize],
                                start,
                                start + draw.below(100),
                                attrs,
                            );
                            s.kind = 1 + draw.below(3) as i32;
                            s
                        })
                        .collect();
                    batch(process, spans)
                })
                .collect();
            store.ingest(indexed(resources));
            assert_consistent(&store);
            let largest = store.read().traces.values().map(|t| t.spans.len()).max().unwrap_or(0);
            assert!(largest <= limits.max_spans_per_trace, "a trace of {largest} spans");
        }
    }

    #[test]
    fn kept_services_catalog_and_start_order_match_a_recomputation_as_spans_come_and_go() {
        let limits =
            |max_spans, max_spans_per_trace| StoreLimits { max_spans, max_spans_per_trace, ..Default::default() };
        // Many small traces (parents found by a scan), evicted often.
        random_exports(0x9e37_79b9_7f4a_7c15, 12, 6, 6, limits(40, 10_000));
        // A few large ones (parents found through the id map), up to their span limit.
        random_exports(0x2545_f491_4f6c_dd1d, 3, 60, 12, limits(400, 100));
    }
}
