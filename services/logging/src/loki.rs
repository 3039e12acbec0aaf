//! The Loki HTTP API, so that Grafana's Loki data source and shippers speaking Loki's push API
//! (Promtail, Grafana Alloy, Vector, Fluent Bit) work unchanged: `POST /loki/api/v1/push`
//! (protobuf `logproto.PushRequest` in a snappy block, or JSON), `GET /loki/api/v1/query_range`,
//! `/query`, `/labels`, `/label/{name}/values`, `/series` and `/ready`. The tenant is the
//! `X-Scope-OrgID` header, `fake` without one (Loki's single-tenant mode). Answers follow
//! Loki's documented JSON: `{"status":"success","data":{"resultType":...,"result":[...]}}`,
//! entry timestamps as strings of unix ns, metric points as `[seconds, "value"]`.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use meshwork_common::ServiceError;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::engine::{IncomingEntry, IncomingStream, PushOutcome};
use crate::labels::LabelSet;
use crate::query::{Direction, Stats};
use crate::service::{Logging, QueryParams, QueryResult};

/// Loki's push protobuf (`pkg/push/push.proto`, package `logproto`), by its field numbers.
pub mod logproto {
    /// `logproto.PushRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        /// The streams.
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    /// `logproto.StreamAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        /// Labels in LogQL form, `{a="b"}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        /// Entries.
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        /// The client's hash of the labels (ignored).
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    /// `logproto.LabelPairAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        /// Name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `logproto.EntryAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        /// When.
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<prost_types::Timestamp>,
        /// The line.
        #[prost(string, tag = "2")]
        pub line: String,
        /// Structured metadata.
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }
}

/// Tenant of requests without `X-Scope-OrgID` (Loki's `auth_enabled: false` tenant).
pub const DEFAULT_TENANT: &str = "fake";

/// Largest push body accepted, compressed or not.
const MAX_BODY: usize = 64 << 20;

/// Returns the router of the Loki HTTP API over `logging`.
pub fn loki_router(logging: Arc<Logging>) -> Router {
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .route("/loki/api/v1/query_range", get(query_range).post(query_range))
        .route("/loki/api/v1/query", get(query).post(query))
        .route("/loki/api/v1/labels", get(labels))
        .route("/loki/api/v1/label", get(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values))
        .route("/loki/api/v1/series", get(series).post(series))
        .route("/ready", get(|| async { "ready\n" }))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(logging)
}

fn tenant(headers: &HeaderMap) -> String {
    headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_TENANT)
        .to_string()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut m = message.into();
    m.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m).into_response()
}

fn service_error(e: ServiceError) -> Response {
    let status = match &e {
        ServiceError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        ServiceError::NotFound { .. } => StatusCode::NOT_FOUND,
        ServiceError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

fn push_answer(o: PushOutcome) -> Response {
    if o.rejected_total() == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    // Loki answers a partly rejected push with 400 and what was wrong; the rest is stored.
    let reasons: Vec<String> = o.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "{} entries accepted, {} rejected ({}): {}",
            o.accepted,
            o.rejected_total(),
            reasons.join(", "),
            o.errors.join("; ")
        ),
    )
}

/// Decodes a push body: protobuf in a snappy block, or JSON (optionally gzip).
pub fn decode_push(headers: &HeaderMap, body: &[u8]) -> Result<Vec<IncomingStream>, String> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let gz = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body: Vec<u8> = if gz {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(MAX_BODY as u64 * 4)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip body: {e}"))?;
        out
    } else {
        body.to_vec()
    };
    if ctype.starts_with("application/json") {
        return decode_json_push(&body);
    }
    let len = snap::raw::decompress_len(&body).map_err(|e| format!("snappy body: {e}"))?;
    if len > MAX_BODY * 4 {
        return Err("push body too large".into());
    }
    let raw = snap::raw::Decoder::new().decompress_vec(&body).map_err(|e| format!("snappy body: {e}"))?;
    let req = logproto::PushRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf body: {e}"))?;
    Ok(req
        .streams
        .into_iter()
        .map(|s| IncomingStream {
            labels: LabelSet::parse(&s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| IncomingEntry {
                    ts: e.timestamp.and_then(|t| {
                        t.seconds.checked_mul(1_000_000_000).and_then(|s| s.checked_add(i64::from(t.nanos)))
                    }),
                    line: e.line,
                    metadata: e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect(),
                })
                .collect(),
        })
        .collect())
}

fn decode_json_push(body: &[u8]) -> Result<Vec<IncomingStream>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("JSON body: {e}"))?;
    let streams = v.get("streams").and_then(Value::as_array).ok_or("JSON body: `streams` must be an array")?;
    let mut out = Vec::new();
    for s in streams {
        let labels = match s.get("stream").and_then(Value::as_object) {
            Some(m) => LabelSet::from_pairs(
                m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))),
            ),
            None => Err(crate::labels::LabelError::Malformed("`stream` must be an object of labels".into())),
        };
        let mut entries = Vec::new();
        for e in s.get("values").and_then(Value::as_array).ok_or("JSON body: `values` must be an array")? {
            let arr = e.as_array().ok_or("JSON body: each value must be [ts, line, {metadata}?]")?;
            let ts = match arr.first() {
                Some(Value::String(s)) => s.parse::<i64>().ok(),
                Some(Value::Number(n)) => n.as_i64(),
                _ => None,
            };
            let line =
                arr.get(1).and_then(Value::as_str).ok_or("JSON body: a value's line must be a string")?.to_string();
            let metadata = arr
                .get(2)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            entries.push(IncomingEntry { ts, line, metadata });
        }
        out.push(IncomingStream { labels, entries });
    }
    Ok(out)
}

async fn push(State(logging): State<Arc<Logging>>, headers: HeaderMap, body: Bytes) -> Response {
    let streams = match decode_push(&headers, &body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match logging.push(&tenant(&headers), streams).await {
        Ok(o) => push_answer(o),
        Err(e) => service_error(e),
    }
}

/// Splits a raw query string into decoded pairs (repeated keys kept, `+` as space).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[st..i];
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac = padded.parse().ok()?;
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            // `get`: a multi-byte character inside the offset is refused, not a panic.
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600 + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// Parses a Loki time parameter: unix ns, unix seconds (10 digits or fewer, or with a
/// fraction) or RFC 3339.
pub fn parse_time(field: &str, v: &str) -> Result<i64, ServiceError> {
    let bad = || ServiceError::invalid(field, format!("{v:?} is not unix seconds, unix nanoseconds or RFC 3339"));
    if v.contains('.') && !v.contains('-') {
        let f: f64 = v.parse().map_err(|_| bad())?;
        return Ok((f * 1e9).round() as i64);
    }
    match v.parse::<i64>() {
        Ok(n) if v.trim_start_matches('-').len() <= 10 => n.checked_mul(1_000_000_000).ok_or_else(bad),
        Ok(n) => Ok(n),
        Err(_) => rfc3339_ns(v).ok_or_else(bad),
    }
}

fn parse_step(v: &str) -> Result<Duration, ServiceError> {
    let bad = || ServiceError::invalid("step", format!("{v:?} is not a duration (`15s`) or seconds"));
    if let Ok(f) = v.parse::<f64>() {
        if !(f.is_finite() && f > 0.0) {
            return Err(bad());
        }
        return Duration::try_from_secs_f64(f).map_err(|_| bad());
    }
    crate::logql::parser::duration(v).ok_or_else(bad)
}

fn common(pairs: &[(String, String)], headers: &HeaderMap, range: bool) -> Result<QueryParams, ServiceError> {
    let logql = param(pairs, "query").ok_or_else(|| ServiceError::invalid("query", "is required"))?.to_string();
    let limit = match param(pairs, "limit") {
        Some(l) => l.parse::<i64>().map_err(|_| ServiceError::invalid("limit", "must be a whole number"))?,
        None => 0,
    };
    let direction = match param(pairs, "direction") {
        None | Some("backward") | Some("BACKWARD") => Direction::Backward,
        Some("forward") | Some("FORWARD") => Direction::Forward,
        Some(_) => return Err(ServiceError::invalid("direction", "must be forward or backward")),
    };
    let (start, end) = if range {
        (
            param(pairs, "start").map(|v| parse_time("start", v)).transpose()?,
            param(pairs, "end").map(|v| parse_time("end", v)).transpose()?,
        )
    } else {
        (None, param(pairs, "time").map(|v| parse_time("time", v)).transpose()?)
    };
    let step = if range { param(pairs, "step").map(parse_step).transpose()? } else { None };
    Ok(QueryParams { tenant: tenant(headers), logql, start, end, limit, direction, step, range })
}

fn labels_json(l: &LabelSet) -> Value {
    Value::Object(l.pairs().iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
}

fn stats_json(s: &Stats, returned: usize) -> Value {
    let secs = s.exec_ns as f64 / 1e9;
    let per_sec = |n: u64| if secs > 0.0 { (n as f64 / secs) as u64 } else { 0 };
    json!({
        "summary": {
            "bytesProcessedPerSecond": per_sec(s.bytes_scanned),
            "linesProcessedPerSecond": per_sec(s.lines_scanned),
            "totalBytesProcessed": s.bytes_scanned,
            "totalLinesProcessed": s.lines_scanned,
            "execTime": secs,
            "queueTime": 0,
            "subqueries": 0,
            "totalEntriesReturned": returned,
            "splits": 0,
            "shards": 0,
        },
        "querier": { "store": { "totalChunksRef": s.chunks_total, "totalChunksDownloaded": s.chunks_total - s.chunks_skipped_by_bloom } },
    })
}

fn seconds(ns: i64) -> Value {
    // Prometheus-style sample times: seconds as a number, to the millisecond.
    json!((ns as f64 / 1e6).round() / 1e3)
}

fn value_string(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// Renders a query result as Loki's JSON answer.
pub fn result_json(r: &QueryResult) -> Value {
    let (result_type, result, stats) = match r {
        QueryResult::Streams(streams, stats) => {
            let n = streams.iter().map(|s| s.1.len()).sum();
            let result: Vec<Value> = streams
                .iter()
                .map(|(l, es)| json!({ "stream": labels_json(l), "values": es.iter().map(|(t, line)| json!([t.to_string(), line])).collect::<Vec<_>>() }))
                .collect();
            ("streams", result, stats_json(stats, n))
        }
        QueryResult::Matrix(series, stats) => {
            let result = series
                .iter()
                .map(|(l, pts)| json!({ "metric": labels_json(l), "values": pts.iter().map(|(t, v)| json!([seconds(*t), value_string(*v)])).collect::<Vec<_>>() }))
                .collect();
            ("matrix", result, stats_json(stats, 0))
        }
        QueryResult::Vector(series, stats) => {
            let result = series
                .iter()
                .map(|(l, (t, v))| json!({ "metric": labels_json(l), "value": [seconds(*t), value_string(*v)] }))
                .collect();
            ("vector", result, stats_json(stats, 0))
        }
    };
    json!({ "status": "success", "data": { "resultType": result_type, "result": result, "stats": stats } })
}

fn json_response(v: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], v.to_string()).into_response()
}

fn pairs_with_form(raw: Option<String>, headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let mut pairs = query_pairs(raw.as_deref());
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        pairs.extend(query_pairs(std::str::from_utf8(body).ok()));
    }
    pairs
}

async fn query_range(
    State(logging): State<Arc<Logging>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let pairs = pairs_with_form(raw, &headers, &body);
    let params = match common(&pairs, &headers, true) {
        Ok(p) => p,
        Err(e) => return service_error(e),
    };
    match logging.query(params).await {
        Ok(r) => json_response(result_json(&r)),
        Err(e) => service_error(e),
    }
}

/// Grafana's Loki data source checks a connection with this query and expects `2`.
const HEALTH_QUERY: &str = "vector(1)+vector(1)";

async fn buildinfo() -> Response {
    // Grafana reads the version to pick features; this API answers as a Loki 3.0 does.
    json_response(
        json!({"version": "3.0.0", "revision": "meshwork", "branch": "main", "buildUser": "", "buildDate": "", "goVersion": ""}),
    )
}

async fn query(
    State(logging): State<Arc<Logging>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let pairs = pairs_with_form(raw, &headers, &body);
    let params = match common(&pairs, &headers, false) {
        Ok(p) => p,
        Err(e) => return service_error(e),
    };
    if params.logql.chars().filter(|c| !c.is_whitespace()).collect::<String>() == HEALTH_QUERY {
        let at = match params.end {
            Some(t) => t,
            None => logging.engine().await.map(|e| e.now_ns()).unwrap_or(0),
        };
        return json_response(result_json(&QueryResult::Vector(
            vec![(LabelSet::default(), (at, 2.0))],
            Stats::default(),
        )));
    }
    match logging.query(params).await {
        Ok(r) => json_response(result_json(&r)),
        Err(e) => service_error(e),
    }
}

fn range_params(pairs: &[(String, String)]) -> Result<(Option<i64>, Option<i64>), ServiceError> {
    Ok((
        param(pairs, "start").map(|v| parse_time("start", v)).transpose()?,
        param(pairs, "end").map(|v| parse_time("end", v)).transpose()?,
    ))
}

async fn labels(State(logging): State<Arc<Logging>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let pairs = query_pairs(raw.as_deref());
    let result = match range_params(&pairs) {
        Ok((start, end)) => logging.labels(&tenant(&headers), start, end).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(names) => json_response(json!({ "status": "success", "data": names })),
        Err(e) => service_error(e),
    }
}

async fn label_values(
    State(logging): State<Arc<Logging>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = query_pairs(raw.as_deref());
    let result = match range_params(&pairs) {
        Ok((start, end)) => logging.label_values(&tenant(&headers), &name, start, end).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(values) => json_response(json!({ "status": "success", "data": values })),
        Err(e) => service_error(e),
    }
}

async fn series(
    State(logging): State<Arc<Logging>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let pairs = pairs_with_form(raw, &headers, &body);
    let selectors: Vec<String> =
        pairs.iter().filter(|(k, _)| k == "match[]" || k == "match").map(|(_, v)| v.clone()).collect();
    let result = match range_params(&pairs) {
        Ok((start, end)) => logging.series(&tenant(&headers), &selectors, start, end).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(series) => {
            json_response(json!({ "status": "success", "data": series.iter().map(labels_json).collect::<Vec<_>>() }))
        }
        Err(e) => service_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form() {
        assert_eq!(parse_time("t", "1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_time("t", "1700000000000000123").unwrap(), 1_700_000_000_000_000_123);
        assert_eq!(parse_time("t", "1700000000.5").unwrap(), 1_700_000_000_500_000_000);
        assert_eq!(parse_time("t", "2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_time("t", "2023-11-14T23:13:20.25+01:00").unwrap(), 1_700_000_000_250_000_000);
        assert!(parse_time("t", "yesterday").is_err());
        assert_eq!(parse_step("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_step("0.5").unwrap(), Duration::from_millis(500));
        // A multi-byte character in the offset (fuzz/corpus/logql/regression-offset-multibyte)
        // and steps too long for a `Duration` panicked.
        assert!(parse_time("t", "2023-11-14T22:13:20+1\u{e9}00").is_err());
        assert!(parse_step("1e20").is_err());
        assert!(parse_step("99999999999999999999y").is_err());
    }

    #[test]
    fn query_strings_decode() {
        let p = query_pairs(Some("query=%7Bapp%3D%22x%22%7D+%7C%3D+%22a%22&match[]=a&match[]=b"));
        assert_eq!(p[0], ("query".to_string(), r#"{app="x"} |= "a""#.to_string()));
        assert_eq!(p.len(), 3);
    }
}
