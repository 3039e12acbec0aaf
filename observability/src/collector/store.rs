//! The trace store behind the embedded collector: spans grouped by trace, bounded by span
//! count and by age (the oldest traces go first), and the queries the Jaeger APIs need
//! (services, operations, search, dependencies). Spans are kept as OTLP protobuf values.
//!
//! The service a span is shown under is its `meshwork.service` attribute when it has one (a
//! process that hosts several logical services, as `meshwork up` does), else its parent's when
//! the parent ran in the same process, else the process's `service.name`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

use crate::grpc::SERVICE_ATTRIBUTE;

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

#[derive(Default)]
struct Inner {
    traces: HashMap<TraceId, Vec<StoredSpan>>,
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

    /// Adds the spans of an OTLP export. Spans with malformed ids are skipped; returns how
    /// many were rejected.
    pub fn ingest(&self, resource_spans: Vec<ResourceSpans>) -> usize {
        self.ingest_evicting(resource_spans, None, now_ns()).0
    }

    /// [`TraceStore::ingest`] of an export that a persistent copy holds as `segment`, first
    /// seen at `seen_ns` (Unix ns; the order in which traces are evicted). Also returns the
    /// segments no longer needed: those whose every trace has been evicted to make room (this
    /// one included when none of its spans was kept), so that the persistent copy can drop them.
    pub fn ingest_evicting(
        &self,
        resource_spans: Vec<ResourceSpans>,
        segment: Option<SegmentId>,
        seen_ns: u64,
    ) -> (usize, Vec<SegmentId>) {
        let mut rejected = 0;
        let mut inner = self.write();
        let inner = &mut *inner;
        let mut dead = Vec::new();
        for rs in resource_spans {
            let process_attributes: Arc<[KeyValue]> = rs.resource.map(|r| r.attributes).unwrap_or_default().into();
            let process_service =
                attribute(&process_attributes, "service.name").unwrap_or_else(|| "unknown_service".to_string());
            for scope in rs.scope_spans {
                for span in scope.spans {
                    let Ok(trace_id) = <TraceId>::try_from(span.trace_id.as_slice()) else {
                        rejected += 1;
                        continue;
                    };
                    if span.span_id.len() != 8 || trace_id == [0; 16] {
                        rejected += 1;
                        continue;
                    }
                    let stored = StoredSpan {
                        span,
                        process_service: process_service.clone(),
                        process_attributes: Arc::clone(&process_attributes),
                    };
                    let entry = inner.traces.entry(trace_id).or_default();
                    let first = entry.is_empty();
                    entry.push(stored);
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
        let spans = self.read().traces.get(id)?.clone();
        Some(resolve(*id, spans))
    }

    /// Returns every service that has spans, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for trace in self.all() {
            out.extend(trace.services);
        }
        out.into_iter().collect()
    }

    /// Returns (operation, span kind) pairs of `service`, sorted.
    pub fn operations(&self, service: &str) -> Vec<(String, i32)> {
        let mut out = BTreeSet::new();
        for trace in self.all() {
            for (span, svc) in trace.spans.iter().zip(&trace.services) {
                if svc == service {
                    out.insert((span.span.name.clone(), span.span.kind));
                }
            }
        }
        out.into_iter().collect()
    }

    fn all(&self) -> Vec<Trace> {
        let inner = self.read();
        inner.traces.iter().map(|(id, spans)| resolve(*id, spans.clone())).collect()
    }

    /// Returns the traces matching `query`, newest first.
    pub fn search(&self, query: &TraceQuery) -> Vec<Trace> {
        let limit = if query.limit == 0 { 20 } else { query.limit };
        let mut candidates: Vec<Trace> = {
            let inner = self.read();
            inner
                .order
                .iter()
                .rev()
                .filter_map(|(_, id)| inner.traces.get(id).map(|spans| (*id, spans)))
                .filter(|(_, spans)| {
                    // Cheap pre-filter on the raw spans before resolving services.
                    query.operation.as_ref().is_none_or(|op| spans.iter().any(|s| &s.span.name == op))
                })
                .map(|(id, spans)| resolve(id, spans.clone()))
                .collect()
        };
        candidates.retain(|t| matches(t, query));
        candidates.sort_by_key(|t| std::cmp::Reverse(t.start_ns()));
        candidates.truncate(limit);
        candidates
    }

    /// Returns (parent service, child service, calls) for every cross-service parent/child
    /// span pair of traces that started in `[start_ns, end_ns]`.
    pub fn dependencies(&self, start_ns: u64, end_ns: u64) -> Vec<(String, String, u64)> {
        let mut edges: BTreeMap<(String, String), u64> = BTreeMap::new();
        for trace in self.all() {
            let start = trace.start_ns();
            if start < start_ns || start > end_ns {
                continue;
            }
            let index: HashMap<&[u8], usize> =
                trace.spans.iter().enumerate().map(|(i, s)| (s.span.span_id.as_slice(), i)).collect();
            for (i, s) in trace.spans.iter().enumerate() {
                if let Some(&p) = index.get(s.span.parent_span_id.as_slice())
                    && trace.services[p] != trace.services[i]
                {
                    *edges.entry((trace.services[p].clone(), trace.services[i].clone())).or_default() += 1;
                }
            }
        }
        edges.into_iter().map(|((p, c), n)| (p, c, n)).collect()
    }
}

/// Resolves the display service of every span of a trace.
fn resolve(trace_id: TraceId, spans: Vec<StoredSpan>) -> Trace {
    let index: HashMap<Vec<u8>, usize> = spans.iter().enumerate().map(|(i, s)| (s.span.span_id.clone(), i)).collect();
    let mut services: Vec<Option<String>> = vec![None; spans.len()];
    fn service_of(
        i: usize,
        spans: &[StoredSpan],
        index: &HashMap<Vec<u8>, usize>,
        memo: &mut Vec<Option<String>>,
        depth: usize,
    ) -> String {
        if let Some(s) = &memo[i] {
            return s.clone();
        }
        let span = &spans[i];
        let resolved = attribute(&span.span.attributes, SERVICE_ATTRIBUTE).unwrap_or_else(|| {
            match index.get(&span.span.parent_span_id) {
                // Depth bound: a malformed trace could have a parent cycle.
                Some(&p) if depth < 256 && spans[p].process_service == span.process_service => {
                    service_of(p, spans, index, memo, depth + 1)
                }
                _ => span.process_service.clone(),
            }
        });
        memo[i] = Some(resolved.clone());
        resolved
    }
    for i in 0..spans.len() {
        service_of(i, &spans, &index, &mut services, 0);
    }
    Trace { trace_id, services: services.into_iter().map(Option::unwrap_or_default).collect(), spans }
}

fn matches(trace: &Trace, q: &TraceQuery) -> bool {
    let start = trace.start_ns();
    if q.start_min_ns.is_some_and(|m| start < m) || q.start_max_ns.is_some_and(|m| start > m) {
        return false;
    }
    if q.errors_only && !trace.spans.iter().any(|s| s.span.status.as_ref().is_some_and(|st| st.code == 2)) {
        return false;
    }
    // Jaeger semantics: one span must match service, operation, duration and every tag.
    trace.spans.iter().zip(&trace.services).any(|(s, svc)| {
        let span = &s.span;
        let duration = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano);
        q.service.as_ref().is_none_or(|want| want == svc)
            && q.operation.as_ref().is_none_or(|want| want == &span.name)
            && q.min_duration_ns.is_none_or(|m| duration >= m)
            && q.max_duration_ns.is_none_or(|m| duration <= m)
            && q.tags.iter().all(|(k, v)| {
                attribute(&span.attributes, k).or_else(|| attribute(&s.process_attributes, k)).as_deref()
                    == Some(v.as_str())
            })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

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
        assert_eq!(store.ingest(vec![batch("meshwork", spans)]), 0);
        let t = store.trace(&[1; 16]).unwrap();
        assert_eq!(t.services, vec!["gateway", "urlshortener", "urlshortener"]);
        assert_eq!(t.duration_ns(), 800);
        assert_eq!(store.services(), vec!["gateway", "urlshortener"]);
        assert_eq!(store.operations("urlshortener"), vec![("storage.get".into(), 2), ("svc".into(), 2)]);
        assert_eq!(store.dependencies(0, u64::MAX), vec![("gateway".into(), "urlshortener".into(), 1)]);
    }

    #[test]
    fn search_filters_and_bounds() {
        let store = TraceStore::new(StoreLimits { max_spans: 3, max_age: Duration::from_secs(3600) });
        store.ingest(vec![batch("a", vec![span(1, 1, None, "slow", 0, 5_000_000, vec![kv("k", "v")])])]);
        store.ingest(vec![batch("a", vec![span(2, 1, None, "fast", 10, 20, vec![])])]);
        store.ingest(vec![batch("b", vec![span(3, 1, None, "other", 30, 40, vec![])])]);
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
        store.ingest(vec![batch("b", vec![span(4, 1, None, "newest", 50, 60, vec![])])]);
        assert!(store.trace(&[1; 16]).is_none());
        assert_eq!(store.span_count(), 3);
        // Malformed ids are rejected.
        let mut bad = span(5, 1, None, "bad", 0, 1, vec![]);
        bad.trace_id.truncate(3);
        assert_eq!(store.ingest(vec![batch("b", vec![bad])]), 1);
    }
}
