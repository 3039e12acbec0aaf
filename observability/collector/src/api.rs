//! The HTTP query API on the trace view's port: Jaeger v1 (`/api/...`, for Grafana and the
//! classic UI) and v3 (`/api/v3/...`, for the current Jaeger UI), both over the same store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::jaeger::{self, envelope, error, kind_name, parse_trace_id, v1_trace, v3_traces};
use super::store::{TraceQuery, TraceStore};

type Params = Query<HashMap<String, String>>;

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(error(400, &message))).into_response()
}

/// Runs a store query that may walk many traces (a search, the dependencies) on Tokio's
/// blocking pool, so that it does not hold up the runtime's workers, which also run the OTLP
/// receivers (and, under `meshwork up`, the gateway and the services).
async fn off_workers<T: Send + 'static>(
    store: Arc<TraceStore>,
    query: impl FnOnce(&TraceStore) -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(move || query(&store)).await.map_err(|e| {
        tracing::error!(error = %e, "a trace query failed");
        (StatusCode::INTERNAL_SERVER_ERROR, Json(error(500, "the query failed"))).into_response()
    })
}

/// Parses a Go-style duration (`1.5s`, `100ms`, `20us`, `2m`) into nanoseconds.
pub fn parse_duration_ns(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    (value >= 0.0).then_some((value * scale) as u64)
}

/// Parses an RFC 3339 time (`2026-11-28T10:00:00Z`, fractional seconds and offsets allowed)
/// into Unix nanoseconds. Anything else, whatever its characters, is `None`.
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // Digits only (no sign), and `get` rather than indexing: a multi-byte character in the
    // input must not land a range inside it.
    let num = |text: &str, r: std::ops::Range<usize>| {
        text.get(r).filter(|d| d.bytes().all(|c| c.is_ascii_digit()))?.parse::<i64>().ok()
    };
    let (year, month, day) = (num(s, 0..4)?, num(s, 5..7)?, num(s, 8..10)?);
    let (hour, minute, second) = (num(s, 11..13)?, num(s, 14..16)?, num(s, 17..19)?);
    let mut rest = s.get(19..)?;
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
        let mut f = frac[..digits].to_string();
        f.truncate(9);
        nanos = format!("{f:0<9}").parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (num(rest, 1..3)? * 3600 + num(rest, 4..6)? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    // Past 2554 the nanoseconds no longer fit in a u64: refused, not wrapped.
    u64::try_from(secs).ok()?.checked_mul(1_000_000_000)?.checked_add(nanos as u64)
}

/// A whole-number parameter in units of `unit_ns` nanoseconds (`what` names the unit for the
/// error), in nanoseconds.
fn whole(params: &HashMap<String, String>, key: &str, unit_ns: u64, what: &str) -> Result<Option<u64>, String> {
    match params.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            v.parse::<u64>().map(|n| Some(n.saturating_mul(unit_ns))).map_err(|_| format!("{key}: {v:?} is not {what}"))
        }
    }
}

fn duration(params: &HashMap<String, String>, key: &str) -> Result<Option<u64>, String> {
    match params.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_duration_ns(v).map(Some).ok_or_else(|| format!("{key}: {v:?} is not a duration like 1.2s")),
    }
}

fn limit(params: &HashMap<String, String>, key: &str) -> Result<usize, String> {
    match params.get(key).filter(|v| !v.is_empty()) {
        None => Ok(20),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= 10_000 => Ok(n),
            _ => Err(format!("{key}: {v:?} must be a number up to 10000")),
        },
    }
}

/// `GET /api/services`.
pub async fn v1_services(State(store): State<Arc<TraceStore>>) -> Json<Value> {
    let services = store.services();
    let total = services.len();
    Json(envelope(json!(services), total))
}

/// `GET /api/services/{service}/operations`.
pub async fn v1_service_operations(State(store): State<Arc<TraceStore>>, Path(service): Path<String>) -> Json<Value> {
    let mut names: Vec<String> = store.operations(&service).into_iter().map(|(n, _)| n).collect();
    names.dedup();
    let total = names.len();
    Json(envelope(json!(names), total))
}

/// Returns `{name, spanKind}` of every operation of `service`, of span kind `kind` when given.
fn operations(store: &TraceStore, service: &str, kind: Option<&String>) -> Vec<Value> {
    let kind = kind.filter(|k| !k.is_empty());
    store
        .operations(service)
        .into_iter()
        .filter(|(_, k)| kind.is_none_or(|want| want == kind_name(*k)))
        .map(|(name, k)| json!({ "name": name, "spanKind": kind_name(k) }))
        .collect()
}

/// `GET /api/operations?service=&spanKind=`.
pub async fn v1_operations(State(store): State<Arc<TraceStore>>, Query(p): Params) -> Response {
    let Some(service) = p.get("service").filter(|s| !s.is_empty()) else {
        return bad_request("service: parameter required".into());
    };
    let ops = operations(&store, service, p.get("spanKind"));
    let total = ops.len();
    Json(envelope(json!(ops), total)).into_response()
}

/// `GET /api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&limit=`.
pub async fn v1_search(State(store): State<Arc<TraceStore>>, Query(p): Params) -> Response {
    let query = match v1_query(&p) {
        Ok(q) => q,
        Err(message) => return bad_request(message),
    };
    let found = match off_workers(store, move |s| s.search(&query)).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let traces: Vec<Value> = found.iter().map(v1_trace).collect();
    let total = traces.len();
    Json(envelope(json!(traces), total)).into_response()
}

/// Reads the v1 search parameters (`GET /api/traces`) into a query; public for the fuzz targets.
#[doc(hidden)]
pub fn v1_query(p: &HashMap<String, String>) -> Result<TraceQuery, String> {
    let tags = match p.get("tags").filter(|t| !t.is_empty()) {
        None => Vec::new(),
        Some(t) => match serde_json::from_str::<HashMap<String, Value>>(t) {
            Ok(map) => map
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect(),
            Err(_) => return Err(format!("tags: {t:?} is not a JSON object")),
        },
    };
    Ok(TraceQuery {
        service: p.get("service").filter(|s| !s.is_empty()).cloned(),
        operation: p.get("operation").filter(|s| !s.is_empty()).cloned(),
        tags,
        min_duration_ns: duration(p, "minDuration")?,
        max_duration_ns: duration(p, "maxDuration")?,
        start_min_ns: whole(p, "start", 1_000, "a time in microseconds")?,
        start_max_ns: whole(p, "end", 1_000, "a time in microseconds")?,
        errors_only: p.get("errors").is_some_and(|v| v == "true"),
        limit: limit(p, "limit")?,
    })
}

/// `GET /api/traces/{id}`.
pub async fn v1_trace_by_id(State(store): State<Arc<TraceStore>>, Path(id): Path<String>) -> Response {
    let Some(trace_id) = parse_trace_id(&id) else {
        return bad_request(format!("trace id {id:?} is not hex"));
    };
    match store.trace(&trace_id) {
        Some(t) => Json(envelope(json!([v1_trace(&t)]), 1)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(error(404, "trace not found"))).into_response(),
    }
}

/// `GET /api/dependencies?endTs=&lookback=` (milliseconds; without them, every stored trace).
pub async fn v1_dependencies(State(store): State<Arc<TraceStore>>, Query(p): Params) -> Response {
    let ms = |key| whole(&p, key, 1_000_000, "a number of milliseconds");
    let (end_ns, lookback_ns) = match (ms("endTs"), ms("lookback")) {
        (Ok(end), Ok(lookback)) => (end.unwrap_or(u64::MAX), lookback.unwrap_or(u64::MAX)),
        (Err(e), _) | (_, Err(e)) => return bad_request(e),
    };
    let edges = match off_workers(store, move |s| s.dependencies(end_ns.saturating_sub(lookback_ns), end_ns)).await {
        Ok(edges) => edges,
        Err(response) => return response,
    };
    let edges: Vec<Value> = edges
        .into_iter()
        .map(|(parent, child, calls)| json!({ "parent": parent, "child": child, "callCount": calls }))
        .collect();
    let total = edges.len();
    Json(envelope(json!(edges), total)).into_response()
}

/// `GET /api/v3/services`.
pub async fn v3_services(State(store): State<Arc<TraceStore>>) -> Json<Value> {
    Json(json!({ "services": store.services() }))
}

/// `GET /api/v3/operations?service=&span_kind=`.
pub async fn v3_operations(State(store): State<Arc<TraceStore>>, Query(p): Params) -> Response {
    let Some(service) = p.get("service").filter(|s| !s.is_empty()) else {
        return bad_request("service: parameter required".into());
    };
    Json(json!({ "operations": operations(&store, service, p.get("span_kind")) })).into_response()
}

/// `GET /api/v3/traces/{id}`.
pub async fn v3_trace_by_id(State(store): State<Arc<TraceStore>>, Path(id): Path<String>) -> Response {
    let Some(trace_id) = parse_trace_id(&id) else {
        return bad_request(format!("trace id {id:?} is not hex"));
    };
    match store.trace(&trace_id) {
        Some(t) => Json(json!({ "result": v3_traces(&[t]) })).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": { "httpCode": 404, "message": "trace not found" } })))
            .into_response(),
    }
}

/// Reads the v3 search parameters (`GET /api/v3/traces`) into a query; public for the fuzz
/// targets.
#[doc(hidden)]
pub fn v3_query(p: &HashMap<String, String>) -> Result<TraceQuery, String> {
    let time = |key: &str| -> Result<Option<u64>, String> {
        match p.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_rfc3339_ns(v).map(Some).ok_or_else(|| format!("{key}: {v:?} is not RFC 3339")),
        }
    };
    let tags =
        p.iter().filter_map(|(k, v)| k.strip_prefix("query.attributes.").map(|k| (k.to_string(), v.clone()))).collect();
    Ok(TraceQuery {
        service: p.get("query.service_name").filter(|s| !s.is_empty()).cloned(),
        operation: p.get("query.operation_name").filter(|s| !s.is_empty()).cloned(),
        tags,
        min_duration_ns: duration(p, "query.duration_min")?,
        max_duration_ns: duration(p, "query.duration_max")?,
        start_min_ns: time("query.start_time_min")?,
        start_max_ns: time("query.start_time_max")?,
        errors_only: false,
        limit: limit(p, "query.search_depth")?,
    })
}

/// `GET /api/v3/traces?query.service_name=&query.start_time_min=&...`.
pub async fn v3_search(State(store): State<Arc<TraceStore>>, Query(p): Params) -> Response {
    let query = match v3_query(&p) {
        Ok(q) => q,
        Err(message) => return bad_request(message),
    };
    match off_workers(store, move |s| s.search(&query)).await {
        Ok(found) => Json(json!({ "result": v3_traces(&found) })).into_response(),
        Err(response) => response,
    }
}

/// `GET /api/v3/trace-summaries?...` (same parameters as the search): one line per trace.
pub async fn v3_summaries(State(store): State<Arc<TraceStore>>, Query(p): Params) -> Response {
    let query = match v3_query(&p) {
        Ok(q) => q,
        Err(message) => return bad_request(message),
    };
    let found = match off_workers(store, move |s| s.search(&query)).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let summaries: Vec<Value> = found
        .iter()
        .map(|t| {
            let root = t.spans.iter().zip(&t.services).find(|(s, _)| s.span.parent_span_id.is_empty());
            let mut services = t.services.clone();
            services.sort();
            services.dedup();
            json!({
                "traceId": jaeger::hex(&t.trace_id),
                "rootServiceName": root.map(|(_, s)| s.clone()).unwrap_or_default(),
                "rootSpanName": root.map(|(s, _)| s.span.name.clone()).unwrap_or_default(),
                "startTimeUnixNano": t.start_ns().to_string(),
                "durationNanos": t.duration_ns().to_string(),
                "spanCount": t.spans.len(),
                "errorCount": t.spans.iter().filter(|s| s.span.status.as_ref().is_some_and(|st| st.code == 2)).count(),
                "services": services,
            })
        })
        .collect();
    Json(json!({ "summaries": summaries })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration_ns("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration_ns("100ms"), Some(100_000_000));
        assert_eq!(parse_duration_ns("20us"), Some(20_000));
        assert_eq!(parse_duration_ns("2m"), Some(120_000_000_000));
        assert_eq!(parse_duration_ns("fast"), None);
        assert_eq!(parse_duration_ns("10parsecs"), None);
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_rfc3339_ns("2026-11-28T10:00:00.5Z"), Some(1_795_860_000_500_000_000));
        assert_eq!(parse_rfc3339_ns("2026-11-28T11:00:00+01:00"), Some(1_795_860_000_000_000_000));
        assert_eq!(parse_rfc3339_ns("2026-13-28T10:00:00Z"), None);
        assert_eq!(parse_rfc3339_ns("yesterday"), None);
        assert_eq!(parse_rfc3339_ns("2026-11-28T10:00:00+-1:00"), None);
        assert_eq!(parse_rfc3339_ns("2554-01-01T00:00:00Z"), Some(18_429_292_800_000_000_000));
        assert_eq!(parse_rfc3339_ns("9999-12-31T23:59:59Z"), None, "beyond u64 nanoseconds");
        assert_eq!(parse_rfc3339_ns("1969-12-31T23:59:59Z"), None, "before the epoch");
        assert_eq!(parse_rfc3339_ns("2026-+1-28T10:00:00Z"), None);
        assert_eq!(parse_rfc3339_ns("2026-11-28T10:00:00+0100"), None);
        // A multi-byte character anywhere is refused, never a panic (it was, in the offset).
        assert_eq!(parse_rfc3339_ns("2026-11-28T10:00:00+0é00"), None);
        for valid in ["2026-11-28T10:00:00.5Z", "2026-11-28T11:00:00+01:00"] {
            for at in 0..=valid.len() {
                for odd in ["é", "€", "😀"] {
                    let text = format!("{}{odd}{}", &valid[..at], &valid[at..]);
                    assert_eq!(parse_rfc3339_ns(&text), None, "{text}");
                    let text = format!("{}{odd}{}", &valid[..at], &valid[(at + 1).min(valid.len())..]);
                    assert_eq!(parse_rfc3339_ns(&text), None, "{text}");
                }
            }
        }
    }
}
