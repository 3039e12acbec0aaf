//! The trace store behind the embedded collector: spans grouped by trace, bounded by span
//! count and by age (the oldest traces go first), and the queries the Jaeger APIs need
//! (services, operations, search, dependencies). Spans are kept encoded, as slices of the
//! export they came in, next to the fields the queries filter on (see `wire`); a span is
//! decoded only when a query returns it or matches its attributes.
//!
//! The service a span is shown under is its `meshwork.service` attribute when it has one (a
//! process that hosts several logical services, as `meshwork up` does), else its parent's when
//! the parent ran in the same process, else the process's `service.name`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::wire::{Index, Process, SpanIndex};

/// A trace id (16 bytes).
pub type TraceId = [u8; 16];

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
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits { max_spans: 200_000, max_age: Duration::from_secs(24 * 3600) }
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

#[derive(Default)]
struct Inner {
    traces: HashMap<TraceId, Vec<Held>>,
    /// Traces in the order they were first seen, with that time (Unix ns).
    order: VecDeque<(u64, TraceId)>,
    spans: usize,
    /// The persisted segments holding spans of each trace (only traces that have some).
    segments: HashMap<TraceId, Vec<SegmentId>>,
    /// How many stored traces have spans in each persisted segment; a segment is no longer
    /// needed when its count reaches zero.
    segment_traces: HashMap<SegmentId, usize>,
}

/// The bounded trace store.
pub struct TraceStore {
    inner: RwLock<Inner>,
    limits: StoreLimits,
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

/// Returns the current time in Unix nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl TraceStore {
    /// Returns an empty store with `limits`.
    pub fn new(limits: StoreLimits) -> Self {
        TraceStore { inner: RwLock::new(Inner::default()), limits }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // The maps stay consistent even if a writer panicked: every mutation is a single insert.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the spans of an indexed OTLP export. Spans with malformed ids are skipped; returns
    /// how many were rejected.
    pub fn ingest(&self, export: Index) -> usize {
        self.ingest_evicting(export, None, now_ns()).0
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
                let entry = inner.traces.entry(trace_id).or_default();
                let first = entry.is_empty();
                entry.push(held);
                inner.spans += 1;
                if first {
                    inner.order.push_back((seen_ns, trace_id));
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
        let oldest_allowed = now_ns().saturating_sub(self.limits.max_age.as_nanos() as u64);
        while let Some(&(seen, id)) = inner.order.front() {
            if inner.spans <= self.limits.max_spans && seen >= oldest_allowed {
                break;
            }
            inner.order.pop_front();
            if let Some(spans) = inner.traces.remove(&id) {
                inner.spans -= spans.len();
            }
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
        let spans = inner.traces.get(id)?;
        Some(decode(*id, spans, services(spans)))
    }

    /// Returns every service that has spans, sorted.
    pub fn services(&self) -> Vec<String> {
        let inner = self.read();
        let mut out = BTreeSet::new();
        for spans in inner.traces.values() {
            out.extend(services(spans).into_iter().map(str::to_string));
        }
        out.into_iter().collect()
    }

    /// Returns (operation, span kind) pairs of `service`, sorted.
    pub fn operations(&self, service: &str) -> Vec<(String, i32)> {
        let inner = self.read();
        let mut out = BTreeSet::new();
        for spans in inner.traces.values() {
            for (held, svc) in spans.iter().zip(services(spans)) {
                if svc == service {
                    out.insert((held.span.name().to_string(), held.span.kind));
                }
            }
        }
        out.into_iter().collect()
    }

    /// Returns the traces matching `query`, newest first.
    pub fn search(&self, query: &TraceQuery) -> Vec<Trace> {
        let limit = if query.limit == 0 { 20 } else { query.limit };
        let inner = self.read();
        let mut found: Vec<(u64, TraceId, Vec<&str>)> = inner
            .order
            .iter()
            .rev()
            .filter_map(|(_, id)| inner.traces.get(id).map(|spans| (*id, spans)))
            .filter(|(_, spans)| {
                // Cheap pre-filter before resolving services.
                query.operation.as_ref().is_none_or(|op| spans.iter().any(|s| s.span.name() == op))
            })
            .filter_map(|(id, spans)| {
                let services = services(spans);
                matches(spans, &services, query).then(|| (start_ns(spans), id, services))
            })
            .collect();
        found.sort_by_key(|(start, ..)| std::cmp::Reverse(*start));
        found.truncate(limit);
        found
            .into_iter()
            .map(|(_, id, services)| {
                let spans = &inner.traces[&id];
                decode(id, spans, services)
            })
            .collect()
    }

    /// Returns (parent service, child service, calls) for every cross-service parent/child
    /// span pair of traces that started in `[start_ns, end_ns]`.
    pub fn dependencies(&self, start_ns: u64, end_ns: u64) -> Vec<(String, String, u64)> {
        let inner = self.read();
        let mut edges: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for spans in inner.traces.values() {
            let start = self::start_ns(spans);
            if start < start_ns || start > end_ns {
                continue;
            }
            let services = services(spans);
            let index = span_index(spans);
            for (i, s) in spans.iter().enumerate() {
                if let Some(&p) = s.span.parent_span_id.and_then(|id| index.get(&id))
                    && services[p] != services[i]
                {
                    *edges.entry((services[p], services[i])).or_default() += 1;
                }
            }
        }
        edges.into_iter().map(|((p, c), n)| (p.to_string(), c.to_string(), n)).collect()
    }
}

/// Returns the earliest start of a trace's spans, in Unix nanoseconds.
fn start_ns(spans: &[Held]) -> u64 {
    spans.iter().map(|s| s.span.start_ns).min().unwrap_or(0)
}

/// Returns the position of each span id.
fn span_index(spans: &[Held]) -> HashMap<[u8; 8], usize> {
    // Stored spans all have an id.
    spans.iter().enumerate().filter_map(|(i, s)| Some((s.span.span_id?, i))).collect()
}

/// Decodes a trace's spans, with their display services.
fn decode(trace_id: TraceId, spans: &[Held], services: Vec<&str>) -> Trace {
    let (spans, services) = spans.iter().zip(services).filter_map(|(h, s)| Some((h.decode()?, s.to_string()))).unzip();
    Trace { trace_id, spans, services }
}

/// Resolves the display service of every span of a trace.
fn services(spans: &[Held]) -> Vec<&str> {
    let index = span_index(spans);
    let mut services: Vec<Option<&str>> = vec![None; spans.len()];
    fn service_of<'a>(
        i: usize,
        spans: &'a [Held],
        index: &HashMap<[u8; 8], usize>,
        memo: &mut Vec<Option<&'a str>>,
        depth: usize,
    ) -> &'a str {
        if let Some(s) = memo[i] {
            return s;
        }
        let held = &spans[i];
        let resolved = held.span.service().unwrap_or_else(|| {
            match held.span.parent_span_id.and_then(|id| index.get(&id)) {
                // Depth bound: a malformed trace could have a parent cycle.
                Some(&p) if depth < 256 && spans[p].process.service == held.process.service => {
                    service_of(p, spans, index, memo, depth + 1)
                }
                _ => held.process.service.as_str(),
            }
        });
        memo[i] = Some(resolved);
        resolved
    }
    for i in 0..spans.len() {
        service_of(i, spans, &index, &mut services, 0);
    }
    services.into_iter().map(Option::unwrap_or_default).collect()
}

fn matches(spans: &[Held], services: &[&str], q: &TraceQuery) -> bool {
    let start = start_ns(spans);
    if q.start_min_ns.is_some_and(|m| start < m) || q.start_max_ns.is_some_and(|m| start > m) {
        return false;
    }
    if q.errors_only && !spans.iter().any(|s| s.span.error) {
        return false;
    }
    // Jaeger semantics: one span must match service, operation, duration and every tag.
    spans.iter().zip(services).any(|(s, svc)| {
        let duration = s.duration_ns();
        q.service.as_ref().is_none_or(|want| want == svc)
            && q.operation.as_ref().is_none_or(|want| want == s.span.name())
            && q.min_duration_ns.is_none_or(|m| duration >= m)
            && q.max_duration_ns.is_none_or(|m| duration <= m)
            && (q.tags.is_empty()
                || s.decode().is_some_and(|d| {
                    q.tags.iter().all(|(k, v)| {
                        attribute(&d.span.attributes, k).or_else(|| attribute(&d.process_attributes, k)).as_deref()
                            == Some(v.as_str())
                    })
                }))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::grpc::SERVICE_ATTRIBUTE;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    /// Encodes and indexes an export of `resource_spans`.
    pub fn indexed(resource_spans: Vec<ResourceSpans>) -> Index {
        let encoded = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
        super::super::wire::index(&encoded.into()).unwrap()
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
        let store = TraceStore::new(StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600) });
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
}
