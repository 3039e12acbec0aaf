//! Jaeger's JSON shapes, built from the store: the v1 query API (what Grafana's Jaeger data
//! source and the classic Jaeger UI parse) and the `/api/v3` API (OTLP-JSON shaped, what the
//! current Jaeger UI uses).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, TracesData};
use serde_json::{Value, json};

use super::store::{Trace, any_value_string};

/// Returns lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a 32-hex-digit trace id (shorter ids are left-padded, as Jaeger does).
pub fn parse_trace_id(s: &str) -> Option<[u8; 16]> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{s:0>32}");
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Returns the v1 wrapper `{"data": .., "total": .., "limit": 0, "offset": 0, "errors": null}`.
pub fn envelope(data: Value, total: usize) -> Value {
    json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null })
}

/// Returns a v1 error reply body.
pub fn error(code: u16, message: &str) -> Value {
    json!({ "data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{ "code": code, "msg": message }] })
}

fn tag(kv: &KeyValue) -> Value {
    let (kind, value) = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => ("bool", json!(b)),
        Some(any_value::Value::IntValue(i)) => ("int64", json!(i)),
        Some(any_value::Value::DoubleValue(d)) => ("float64", json!(d)),
        _ => ("string", json!(any_value_string(&kv.value))),
    };
    json!({ "key": kv.key, "type": kind, "value": value })
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({ "key": key, "type": "string", "value": value })
}

/// Returns the Jaeger name of an OTLP span kind.
pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// Returns one trace in Jaeger's v1 JSON model.
pub fn v1_trace(trace: &Trace) -> Value {
    let trace_id = hex(&trace.trace_id);
    let mut processes: BTreeMap<String, String> = BTreeMap::new(); // service -> pN
    let mut process_json = serde_json::Map::new();
    let mut spans = Vec::with_capacity(trace.spans.len());
    for (stored, service) in trace.spans.iter().zip(&trace.services) {
        let next = format!("p{}", processes.len() + 1);
        let pid = processes.entry(service.clone()).or_insert_with(|| next.clone()).clone();
        if pid == next {
            let tags: Vec<Value> =
                stored.process_attributes.iter().filter(|kv| kv.key != "service.name").map(tag).collect();
            process_json.insert(pid.clone(), json!({ "serviceName": service, "tags": tags }));
        }
        let span = &stored.span;
        let mut tags: Vec<Value> = span.attributes.iter().filter(|kv| kv.key != "meshwork.service").map(tag).collect();
        tags.push(string_tag("span.kind", kind_name(span.kind)));
        if let Some(status) = &span.status {
            if status.code == 2 {
                tags.push(json!({ "key": "error", "type": "bool", "value": true }));
                tags.push(string_tag("otel.status_code", "ERROR"));
            } else if status.code == 1 {
                tags.push(string_tag("otel.status_code", "OK"));
            }
            if !status.message.is_empty() {
                tags.push(string_tag("otel.status_description", &status.message));
            }
        }
        let references: Vec<Value> = if span.parent_span_id.is_empty() {
            Vec::new()
        } else {
            vec![json!({ "refType": "CHILD_OF", "traceID": trace_id, "spanID": hex(&span.parent_span_id) })]
        };
        let logs: Vec<Value> = span
            .events
            .iter()
            .map(|e| {
                let mut fields = vec![string_tag("event", &e.name)];
                fields.extend(e.attributes.iter().map(tag));
                json!({ "timestamp": e.time_unix_nano / 1000, "fields": fields })
            })
            .collect();
        spans.push(json!({
            "traceID": trace_id,
            "spanID": hex(&span.span_id),
            "operationName": span.name,
            "references": references,
            "flags": 1,
            "startTime": span.start_time_unix_nano / 1000,
            "duration": span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) / 1000,
            "tags": tags,
            "logs": logs,
            "processID": pid,
            "warnings": null,
        }));
    }
    json!({ "traceID": trace_id, "spans": spans, "processes": process_json, "warnings": null })
}

/// Returns traces as OTLP `TracesData` (the v3 `result`), one resource per display service.
pub fn v3_traces(traces: &[Trace]) -> Value {
    let mut resource_spans = Vec::new();
    for trace in traces {
        let mut by_service: BTreeMap<&str, Vec<opentelemetry_proto::tonic::trace::v1::Span>> = BTreeMap::new();
        for (stored, service) in trace.spans.iter().zip(&trace.services) {
            by_service.entry(service).or_default().push(stored.span.clone());
        }
        for (service, spans) in by_service {
            let attributes = vec![super::store_kv("service.name", service)];
            resource_spans.push(ResourceSpans {
                resource: Some(Resource { attributes, ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            });
        }
    }
    serde_json::to_value(TracesData { resource_spans }).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{batch, indexed, kv, span};
    use crate::store::{StoreLimits, TraceStore};

    #[test]
    fn trace_ids_parse_and_pad() {
        assert_eq!(
            parse_trace_id("01"),
            Some({
                let mut a = [0u8; 16];
                a[15] = 1;
                a
            })
        );
        assert_eq!(parse_trace_id(&"ab".repeat(16)).map(|t| hex(&t)), Some("ab".repeat(16)));
        assert!(parse_trace_id("xyz").is_none());
        assert!(parse_trace_id(&"a".repeat(33)).is_none());
    }

    /// The v1 shape Grafana and the Jaeger UI parse, written from Jaeger's documented model.
    #[test]
    fn v1_trace_shape_is_jaegers() {
        let store = TraceStore::new(StoreLimits::default());
        let mut child = span(
            7,
            2,
            Some(1),
            "meshwork.urlshortener.v1.UrlShortener/Resolve",
            2_000,
            5_000,
            vec![kv("meshwork.service", "urlshortener"), kv("rpc.system", "grpc")],
        );
        child.status = Some(opentelemetry_proto::tonic::trace::v1::Status { code: 2, message: "boom".into() });
        store.ingest(indexed(vec![batch(
            "meshwork",
            vec![span(7, 1, None, "gateway /x", 1_000, 9_000, vec![kv("meshwork.service", "gateway")]), child],
        )]));
        let got = v1_trace(&store.trace(&[7; 16]).unwrap());
        let id = "07".repeat(16);
        let want = json!({
            "traceID": id,
            "spans": [
                {"traceID": id, "spanID": "0101010101010101", "operationName": "gateway /x", "references": [],
                 "flags": 1, "startTime": 1, "duration": 8,
                 "tags": [{"key": "span.kind", "type": "string", "value": "server"}],
                 "logs": [], "processID": "p1", "warnings": null},
                {"traceID": id, "spanID": "0202020202020202",
                 "operationName": "meshwork.urlshortener.v1.UrlShortener/Resolve",
                 "references": [{"refType": "CHILD_OF", "traceID": id, "spanID": "0101010101010101"}],
                 "flags": 1, "startTime": 2, "duration": 3,
                 "tags": [
                    {"key": "rpc.system", "type": "string", "value": "grpc"},
                    {"key": "span.kind", "type": "string", "value": "server"},
                    {"key": "error", "type": "bool", "value": true},
                    {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                    {"key": "otel.status_description", "type": "string", "value": "boom"}],
                 "logs": [], "processID": "p2", "warnings": null}
            ],
            "processes": {"p1": {"serviceName": "gateway", "tags": []}, "p2": {"serviceName": "urlshortener", "tags": []}},
            "warnings": null
        });
        assert_eq!(got, want);
        let wrapped = envelope(json!([got]), 1);
        assert_eq!(wrapped["total"], 1);
        assert_eq!(wrapped["errors"], Value::Null);
    }

    /// The v3 shape: OTLP JSON with hex ids and string nanosecond times.
    #[test]
    fn v3_shape_is_otlp_json() {
        let store = TraceStore::new(StoreLimits::default());
        store.ingest(indexed(vec![batch("svc", vec![span(9, 1, None, "op", 1_000, 2_000, vec![])])]));
        let got = v3_traces(&[store.trace(&[9; 16]).unwrap()]);
        let span = &got["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "09".repeat(16));
        assert_eq!(span["spanId"], "0101010101010101");
        assert_eq!(span["name"], "op");
        assert_eq!(span["startTimeUnixNano"], "1000");
        assert_eq!(span["kind"], 2);
        assert_eq!(got["resourceSpans"][0]["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(got["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "svc");
    }
}
