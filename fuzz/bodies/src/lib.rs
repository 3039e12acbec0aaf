//! The bodies of meshwork's fuzz targets, one plain function per target, so that the same code
//! runs under libFuzzer on nightly (`fuzz/fuzz_targets/<target>.rs` calls it) and on stable,
//! where `tests/corpus.rs` replays every committed input of `fuzz/corpus/<target>/` through it.
//! Each body feeds bytes from outside to a parser and panics only when a law is broken: the
//! parser panicked, or it disagrees with itself (chunking, round trips, a reference decoder).
//! Refusing an input is never a finding.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use meshwork_collector::otlp::Export;
use meshwork_collector::{StoreLimits, TraceQuery, TraceStore, api, jaeger};
use meshwork_gateway::GatewayConfig;
use meshwork_gateway::fuzzing::{MessageMeter, WebCall, WebMode, is_grpc_content_type, trailer_frame, web_mode};
use meshwork_identity::{ApiKeys, Identity, JwtConfig, JwtVerifier, jwks::Jwks};
use meshwork_telemetry::grpc_timeout::{format_grpc_timeout, parse_grpc_timeout};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// A target: its name (the directory of its corpus and of its `fuzz_targets/<name>.rs`) and
/// its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    ("grpc_framing", grpc_framing),
    ("grpc_timeout", grpc_timeout),
    ("grpc_status", grpc_status),
    ("grpc_message", grpc_message),
    ("grpc_web_text", grpc_web_text),
    ("grpc_web_binary", grpc_web_binary),
    ("gateway_config", gateway_config),
    ("otlp_protobuf", otlp_protobuf),
    ("otlp_json", otlp_json),
    ("jaeger_query", jaeger_query),
    ("urlshortener_validate", urlshortener_validate),
    ("jwt", jwt),
    ("jwks", jwks),
    ("api_keys", api_keys),
    ("vrplib", vrplib),
    ("logql", logql),
    ("loki_push", loki_push),
    ("gaen_export", gaen_export),
    ("h2_frames", h2_frames),
    ("hpack", hpack),
];

/// Splits `data` into chunks whose sizes come from its first byte (1 to 64, or one chunk),
/// the rest being the input: how a parser that follows a stream sees arbitrary network reads.
fn chunked(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let size = match first % 65 {
        0 => rest.len().max(1),
        n => usize::from(n),
    };
    (rest.chunks(size).collect(), rest)
}

/// gRPC length-prefixed framing (`MessageMeter`, which enforces the message size caps): any
/// chunking of a body finds the same first oversized message as the body in one piece.
pub fn grpc_framing(data: &[u8]) {
    let (chunks, whole) = chunked(data);
    // A cap from the input too, small enough that the fuzzer reaches both sides of it.
    let cap = u32::from(whole.first().copied().unwrap_or(0)) * 3;
    let mut one = MessageMeter::default();
    let expected = one.feed(whole, cap);
    let mut meter = MessageMeter::default();
    let mut got = Ok(());
    for chunk in chunks {
        got = meter.feed(chunk, cap);
        if got.is_err() {
            break;
        }
    }
    assert_eq!(got, expected, "chunking changed the framing verdict");
}

/// `grpc-timeout` parsing: a parsed timeout formats back to a value that parses to at least it
/// (formatting rounds up to its unit), and any duration formats to a value that parses.
pub fn grpc_timeout(data: &[u8]) {
    if let Some(d) = parse_grpc_timeout(data) {
        let again = parse_grpc_timeout(format_grpc_timeout(d).as_bytes());
        assert!(again.is_some_and(|a| a >= d), "{d:?} formatted does not parse back to at least itself");
    }
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
        let nanos = u32::from_le_bytes(data[8..12].try_into().unwrap_or([0; 4])) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let text = format_grpc_timeout(d);
        assert!(text.len() <= 9, "{text:?} has more than 8 digits");
        assert!(parse_grpc_timeout(text.as_bytes()).is_some(), "{text:?} formatted from {d:?} does not parse");
    }
}

/// `grpc-status` parsing (the upstream's trailer the gateway reads for metrics, retries and
/// outlier detection): a value is accepted exactly when it is 1-4 ASCII digits, as its number.
pub fn grpc_status(data: &[u8]) {
    let got = meshwork_gateway::fuzzing::parse_grpc_status(data);
    let expected = (!data.is_empty() && data.len() <= 4 && data.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(data).ok().and_then(|s| s.parse::<u16>().ok()))
        .flatten();
    assert_eq!(got, expected);
}

/// `grpc-message` encoding (any text, e.g. an upstream's error, becomes a header value): the
/// value is always a valid header value and percent-decodes back to the text.
pub fn grpc_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let encoded = meshwork_gateway::fuzzing::encode_grpc_message(&text);
    assert!(HeaderValue::from_str(&encoded).is_ok(), "{encoded:?} is not a header value");
    assert_eq!(meshwork_gateway::fuzzing::grpc_message_value(&text).as_bytes(), encoded.as_bytes());
    assert_eq!(percent_decode(encoded.as_bytes()), text.as_bytes(), "grpc-message does not round-trip");
}

/// Decodes `%XX` escapes (the reading side of the gRPC spec's `grpc-message` encoding).
fn percent_decode(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    while let Some((&b, rest)) = bytes.split_first() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (b, rest) {
            (b'%', [h, l, tail @ ..]) if hex(*h).is_some() && hex(*l).is_some() => {
                out.push((hex(*h).unwrap_or(0) * 16 + hex(*l).unwrap_or(0)) as u8);
                bytes = tail;
            }
            _ => {
                out.push(b);
                bytes = rest;
            }
        }
    }
    out
}

/// gRPC-Web text mode: a base64 request body decodes to the same bytes (or fails the same way)
/// whatever its chunking, and a response piece encodes to base64 of itself.
pub fn grpc_web_text(data: &[u8]) {
    let (chunks, whole) = chunked(data);
    let mut one = WebCall::new(WebMode::Text, b"", None);
    let expected = one.decode_request(whole, true);
    let mut call = WebCall::new(WebMode::Text, b"", None);
    let mut got = Vec::new();
    let mut failed = false;
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        match call.decode_request(chunk, i == last) {
            Ok(bytes) => got.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if chunks.is_empty() {
        got.extend_from_slice(&call.decode_request(b"", true).unwrap_or_default());
    }
    match expected {
        // Decoding is incremental: a chunking may fail early only where the whole body fails.
        Ok(bytes) => {
            assert!(!failed, "a chunking failed where the whole body decodes");
            assert_eq!(got, bytes.as_ref(), "chunking changed the decoded body");
        }
        Err(_) => assert!(failed || chunks.is_empty(), "a chunking decoded a body that is not base64"),
    }
    let encoded = one.encode_response(whole);
    assert_eq!(STANDARD.decode(&encoded).ok().as_deref(), Some(whole), "text response does not round-trip");
}

/// gRPC-Web binary mode and its edges: the request `content-type` (up to the first newline) is
/// classified and translated into valid header values, then the rest, read as `name:value`
/// lines, becomes trailers whose trailer frame (`0x80`, length, lines) parses back to them, in
/// both modes.
pub fn grpc_web_binary(data: &[u8]) {
    let (content_type, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    // The gateway sees the content type of a request it parsed: a valid header value.
    let web = HeaderValue::from_bytes(content_type).ok().and_then(|_| web_mode(content_type));
    assert!(!(web.is_some() && is_grpc_content_type(content_type)), "both gRPC and gRPC-Web");
    if let Some((mode, suffix)) = web {
        let call = WebCall::new(mode, suffix, None);
        assert!(call.upstream_content_type.as_bytes().starts_with(b"application/grpc"));
        let web: &[u8] = if mode == WebMode::Text { b"application/grpc-web-text" } else { b"application/grpc-web" };
        assert!(call.response_content_type.as_bytes().starts_with(web));
    }
    let mut trailers = HeaderMap::new();
    for line in rest.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..]))
        {
            trailers.append(name, value);
        }
    }
    let frame = trailer_frame(&trailers);
    assert_eq!(parse_trailer_frame(&frame), Some(pairs(&trailers)), "trailer frame does not parse back");
    let text = WebCall::new(WebMode::Text, b"", None).trailer_frame(&trailers);
    assert_eq!(STANDARD.decode(&text).ok().as_deref(), Some(frame.as_ref()), "text trailer frame is not base64 of it");
    // The binary body passes through the same framing as native gRPC.
    grpc_framing(rest);
}

fn pairs(map: &HeaderMap) -> Vec<(Vec<u8>, Vec<u8>)> {
    map.iter().map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

/// Reads a gRPC-Web trailer frame as a browser client does; `None` when it is not one.
fn parse_trailer_frame(frame: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let (&flag, rest) = frame.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let body = rest.get(4..)?;
    if flag != 0x80 || body.len() != len {
        return None;
    }
    let mut out = Vec::new();
    let mut lines = body;
    while !lines.is_empty() {
        let end = lines.windows(2).position(|w| w == b"\r\n")?;
        let line = &lines[..end];
        let colon = line.iter().position(|&b| b == b':')?;
        out.push((line[..colon].to_vec(), line[colon + 1..].to_vec()));
        lines = &lines[end + 2..];
    }
    Some(out)
}

/// The gateway's TOML configuration: parsing and validation answer errors, never a panic.
/// Sections that name files (`descriptor_sets`, `[tls]`, `[auth]`, pools' `tls`) are dropped
/// before validating, so that the fuzzer does not read files of this machine (`/dev/zero`).
pub fn gateway_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mut config) = GatewayConfig::from_toml_str(text) else { return };
    config.descriptor_sets.clear();
    config.tls = None;
    config.auth = None;
    for pool in config.pools.values_mut() {
        pool.tls = None;
    }
    if let Err(e) = config.validate() {
        // Every message is one line.
        assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
    }
}

/// A trace store small enough that ingesting is cheap, with one query that reads everything.
fn ingest_and_query(export: Export) {
    let store =
        TraceStore::new(StoreLimits { max_spans: 1000, max_age: Duration::from_secs(3600), max_spans_per_trace: 100 });
    store.ingest(export.index);
    for trace in store.search(&TraceQuery { limit: 100, ..TraceQuery::default() }) {
        jaeger::v1_trace(&trace);
        jaeger::v3_traces(std::slice::from_ref(&trace));
    }
    store.dependencies(0, u64::MAX);
}

/// The OTLP receivers' protobuf body (`ExportTraceServiceRequest`, gRPC and HTTP): the
/// collector's own wire indexer accepts exactly what prost's decoder accepts (as its docs
/// promise), and an accepted export is ingested and rendered without a panic.
pub fn otlp_protobuf(data: &[u8]) {
    let ours = Export::decode(Bytes::copy_from_slice(data));
    let prost = ExportTraceServiceRequest::decode(data);
    assert_eq!(ours.is_ok(), prost.is_ok(), "indexer and prost disagree: {:?} vs {:?}", ours.err(), prost.err());
    if let Ok(export) = ours {
        ingest_and_query(export);
    }
}

/// The OTLP HTTP receiver's JSON body: parsed, encoded, indexed, ingested and rendered.
pub fn otlp_json(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) else { return };
    if let Ok(export) = Export::encode(request.resource_spans) {
        ingest_and_query(export);
    }
}

/// The Jaeger query API's parameters: the input as a query string (percent-decoded as axum's
/// `Query` does), read by the v1 and v3 searches, and every value tried as a trace id, a
/// duration and an RFC 3339 time.
pub fn jaeger_query(data: &[u8]) {
    let params: HashMap<String, String> = url::form_urlencoded::parse(data).into_owned().collect();
    let _ = api::v1_query(&params);
    let _ = api::v3_query(&params);
    for value in params.values() {
        if let Some(id) = jaeger::parse_trace_id(value) {
            assert_eq!(jaeger::parse_trace_id(&jaeger::hex(&id)), Some(id));
        }
        let _ = api::parse_duration_ns(value);
        let _ = api::parse_rfc3339_ns(value);
    }
}

/// The URL shortener's validation of a long URL, a custom alias, a code and a referrer: a
/// normalised URL is itself valid and normalises to itself.
pub fn urlshortener_validate(data: &[u8]) {
    use meshwork_urlshortener::validate;
    let text = String::from_utf8_lossy(data);
    if let Ok(url) = validate::long_url(&text) {
        assert_eq!(validate::long_url(&url).ok().as_deref(), Some(url.as_str()), "normalising {text:?} is not stable");
    }
    let _ = validate::custom_alias(&text);
    let _ = validate::code(&text);
    let _ = validate::referrer(&text);
}

/// The seed of the Ed25519 key that signs tokens in [`jwt`] (a fixed, public test key).
const JWT_SEED: [u8; 32] = [7; 32];

static SIGNER: LazyLock<ring::signature::Ed25519KeyPair> = LazyLock::new(|| {
    // A 32-byte seed is always a valid Ed25519 private key.
    ring::signature::Ed25519KeyPair::from_seed_unchecked(&JWT_SEED).unwrap_or_else(|_| unreachable!())
});

static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| {
    use ring::signature::KeyPair;
    let x = URL_SAFE_NO_PAD.encode(SIGNER.public_key().as_ref());
    let jwks = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"fuzz","x":"{x}"}}]}}"#);
    let jwks = Jwks::from_json(&jwks).unwrap_or_else(|e| panic!("the fuzz JWKS is valid: {e}"));
    JwtVerifier::new(jwks, JwtConfig::new("meshwork-fuzz", vec!["meshwork".into()]))
});

/// JWT verification. With a first byte below 0x80 the rest is a token as a client sends it.
/// Otherwise the rest is a header and a payload (split at the first newline) that are
/// base64url-encoded and signed with the verifier's key, so that the claims checks behind the
/// signature are fuzzed too; a token that verifies carries a valid identity.
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let token = if mode < 0x80 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (&br#"{"alg":"EdDSA","kid":"fuzz"}"#[..], rest),
        };
        let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = SIGNER.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    };
    if let Ok((identity, until)) = VERIFIER.verify_until(&token, now) {
        assert!(until >= now, "a token valid until {until:?} was accepted at {now:?}");
        assert!(meshwork_identity::check_subject(&identity.subject).is_ok());
        assert!(meshwork_identity::check_roles(&identity.roles).is_ok());
        // The identity the gateway forwards to services decodes back to itself.
        assert_eq!(Identity::decode(identity.encode().as_bytes()).ok(), Some(identity));
    }
}

/// A JWKS document (`[auth] jwks_file`, or fetched): keys are parsed and checked, errors are
/// returned, a parsed set has keys.
pub fn jwks(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(set) = Jwks::from_json(text) {
        assert!(!set.is_empty());
        for key in set.keys() {
            let _ = key.verify(b"message", b"signature");
        }
    }
}

/// The API key file (TOML or JSON, by the first byte's low bit), a key checked against it,
/// and the `meshwork-identity` header a service reads.
pub fn api_keys(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    if let Ok(keys) = ApiKeys::parse(&text, mode & 1 == 1) {
        for line in text.lines() {
            let _ = keys.verify(line.trim());
        }
    }
    let _ = keys_verify_raw(&text);
    if let Ok(identity) = Identity::decode(rest) {
        assert_eq!(Identity::decode(identity.encode().as_bytes()).ok(), Some(identity));
    }
}

/// Checks `text` as a presented key against an empty key file (the hash and the constant-time
/// comparison run on any text).
fn keys_verify_raw(text: &str) -> bool {
    static EMPTY: LazyLock<ApiKeys> = LazyLock::new(ApiKeys::default);
    EMPTY.verify(text).is_ok()
}

/// Reads every committed corpus file of every target (`fuzz/corpus/<target>/*`), in a stable
/// order; the replay test and `scripts/fuzz.sh` agree on this layout.
pub fn corpus(root: &std::path::Path) -> std::io::Result<BTreeMap<&'static str, Vec<std::path::PathBuf>>> {
    let mut out = BTreeMap::new();
    for (name, _) in TARGETS {
        let dir = root.join(name);
        let mut files = Vec::new();
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        files.sort();
        out.insert(*name, files);
    }
    Ok(out)
}

/// VRPLIB instances and solutions (`meshwork route-bench` reads them): any text parses to a
/// problem or an error, never a panic nor an allocation past the dimension cap; a parsed
/// problem is consistent (one demand per node, a symmetric matrix with a zero diagonal), and
/// the savings construction over it passes the independent solution checker.
pub fn vrplib(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = meshwork_routing::vrplib::parse_solution(&text);
    let Ok(problem) = meshwork_routing::vrplib::parse_instance(&text) else { return };
    let n = problem.len();
    assert_eq!(problem.demand.len(), n, "one demand per node");
    for i in 0..n {
        assert_eq!(problem.dist.get(i, i), 0, "zero diagonal");
        for j in 0..i {
            assert_eq!(problem.dist.get(i, j), problem.dist.get(j, i), "symmetric distances");
        }
    }
    if n <= 200 {
        let routes = meshwork_routing::construct::savings(&problem);
        let cost: i64 = routes
            .iter()
            .map(|r| {
                let mut prev = 0;
                let mut c = 0i64;
                for &v in r.iter().chain(std::iter::once(&0)) {
                    c = c.saturating_add(problem.dist.get(prev, v));
                    prev = v;
                }
                c
            })
            .fold(0i64, i64::saturating_add);
        if let Err(v) = meshwork_routing::check(&problem, &routes, cost) {
            panic!("the savings construction fails the checker: {v:?}");
        }
    }
}

/// Log lines every parsed LogQL pipeline runs over, besides the input's own: the plain, JSON
/// and logfmt lines of the logging crate's pipeline tests.
const LOGQL_LINES: &[&str] = &[
    "error a",
    "ok b error",
    "fine",
    "baab",
    r#"{"status":500,"req":{"method":"GET"},"app":"y"}"#,
    r#"{"status":200,"req":{"method":"PUT"}}"#,
    r#"level=error msg="disk full" dur=1.5"#,
    "level=info msg=ok dur=0.2",
];

/// LogQL (the Loki API's `query`, the gRPC API's `logql`). The input up to its first NUL byte
/// is the query; what follows, split at newlines, are more log lines. A refused query names a
/// column inside the text (1-based, characters). A parsed query's pipeline runs over the lines
/// in one block (the engine's whole-block search for the first `|=` term) and finds exactly
/// the hits of a line-by-line scan, and within a time range exactly those in it; a metric
/// query evaluates over fixed series to finite, non-negative points at the asked steps. The
/// text is also read as the API's other parameters: a duration (`step`) and a time.
pub fn logql(data: &[u8]) {
    use meshwork_logging::logql::{self, Query};
    let (query, lines) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let text = String::from_utf8_lossy(query);
    let parsed = logql::parse(&text);
    match &parsed {
        Err(e) => {
            let chars = text.chars().count();
            assert!(
                (1..=chars + 1).contains(&e.column),
                "column {} outside a text of {chars} characters: {e}",
                e.column
            );
        }
        Ok(Query::Log(log)) => logql_pipeline(log, lines),
        Ok(Query::Metric(metric)) => {
            logql_pipeline(metric.source().0, lines);
            logql_metric(metric);
        }
    }
    if let Err(e) = logql::parse_selector(&text) {
        assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "selector column {} out of the text", e.column);
    }
    let _ = logql::parser::duration(&text);
    let _ = meshwork_logging::loki::parse_time("time", &text);
    for word in text.split_whitespace() {
        let _ = logql::parser::duration(word);
        let _ = meshwork_logging::loki::parse_time("time", word);
    }
}

/// The labels of the stream the LogQL target's lines belong to.
static LOGQL_STREAM: LazyLock<meshwork_logging::labels::LabelSet> = LazyLock::new(|| {
    meshwork_logging::labels::LabelSet::parse(r#"{app="x", host="a"}"#)
        .unwrap_or_else(|e| panic!("the fuzz stream's labels parse: {e}"))
});

fn logql_pipeline(query: &meshwork_logging::logql::LogQuery, extra: &[u8]) {
    use meshwork_logging::chunk::Columns;
    use meshwork_logging::logql::pipeline::Pipeline;
    let extra = String::from_utf8_lossy(extra);
    let lines: Vec<&str> = LOGQL_LINES.iter().copied().chain(extra.split('\n')).collect();
    let meta = [("trace_id".to_string(), "abc123".to_string())];
    let meta_of = |i: usize| if i.is_multiple_of(3) { &meta[..] } else { &[][..] };
    let mut block = Columns::default();
    for (i, line) in lines.iter().enumerate() {
        block.push(i as i64, line, meta_of(i));
    }
    let pipeline = Pipeline::new(query);
    let mut whole = Vec::new();
    let stats = pipeline.scan(&LOGQL_STREAM, &block, 0, i64::MAX, |h| whole.push(h));
    assert_eq!(stats.lines, lines.len() as u64, "every line is in range");
    let mut by_line = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut single = Columns::default();
        single.push(i as i64, line, meta_of(i));
        pipeline.scan(&LOGQL_STREAM, &single, 0, i64::MAX, |h| by_line.push(h));
    }
    assert_eq!(whole, by_line, "the whole-block search and a line-by-line scan disagree");
    let (start, end) = (2, 6);
    let mut ranged = Vec::new();
    let stats = pipeline.scan(&LOGQL_STREAM, &block, start, end, |h| ranged.push(h));
    let expected: Vec<_> = whole.iter().filter(|h| (start..end).contains(&h.ts)).cloned().collect();
    assert_eq!(ranged, expected, "a time range changed the hits inside it");
    assert_eq!(stats.lines, (end - start) as u64, "lines in range");
}

fn logql_metric(query: &meshwork_logging::logql::MetricQuery) {
    use meshwork_logging::labels::LabelSet;
    const S: i64 = 1_000_000_000;
    static SAMPLES: LazyLock<HashMap<LabelSet, Vec<(i64, u64)>>> = LazyLock::new(|| {
        let series =
            |labels: &str| LabelSet::parse(labels).unwrap_or_else(|e| panic!("the fuzz series' labels parse: {e}"));
        HashMap::from([
            (series(r#"{app="x", host="a"}"#), vec![(S, 10), (2 * S, 10), (3 * S, 5)]),
            (series(r#"{app="x", host="b", level="error"}"#), vec![(3 * S, 1), (3 * S, 7)]),
        ])
    });
    let steps = [0, 2 * S, 4 * S, 600 * S];
    for (labels, points) in meshwork_logging::logql::metric::evaluate(query, &SAMPLES, &steps) {
        for (t, v) in points {
            assert!(steps.contains(&t), "{labels:?}: a point at {t}, not a step");
            assert!(v.is_finite() && v >= 0.0, "{labels:?}: {v} at {t}");
        }
    }
}

/// "Now" of the log store the Loki push target validates against (2023-11-14).
const LOKI_NOW_NS: i64 = 1_700_000_000_000_000_000;

/// The runtime the Loki push target's service runs on.
static LOKI_RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a current-thread runtime builds: {e}"))
});

/// The log service the pushes are validated by: memory store, clock at [`LOKI_NOW_NS`], and a
/// rate limit that refuses any push with an entry left after validation (a negative burst),
/// so that validation runs in full and nothing is ever stored across executions.
static LOKI_SERVICE: LazyLock<std::sync::Arc<meshwork_logging::service::Logging>> = LazyLock::new(|| {
    let _runtime = LOKI_RUNTIME.enter();
    let store: meshwork_storage::DynStore = std::sync::Arc::new(meshwork_storage::memory::MemoryStore::new());
    let clock = std::sync::Arc::new(meshwork_common::ManualClock::at_unix_ns(LOKI_NOW_NS));
    let config =
        meshwork_logging::Config { rate_bytes_per_sec: 0.0, burst_bytes: -1.0, ..meshwork_logging::Config::default() };
    meshwork_logging::service::Logging::new(store, clock, config)
});

/// Loki push bodies (`POST /loki/api/v1/push`), by the first byte: bit 0 clear, the rest is a
/// JSON body; set, protobuf, where bit 1 says whether the rest is the body as sent (snappy) or
/// the `PushRequest` message that is snappy-compressed here (and then the body decodes exactly
/// when prost decodes the message). Bit 2 also sends the body gzip-compressed, which must
/// decode to the same streams. Decoding never panics; decoded streams go through the service's
/// validation (tenant, entry count, labels, timestamps, line length, metadata), which either
/// refuses every entry, counting each once, or leaves some to store.
pub fn loki_push(data: &[u8]) {
    use meshwork_logging::loki::{decode_push, logproto};
    let Some((&mode, rest)) = data.split_first() else { return };
    let json = mode & 1 == 0;
    let mut headers = HeaderMap::new();
    let ctype = if json { "application/json" } else { "application/x-protobuf" };
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    let body = if !json && mode & 2 != 0 {
        snap::raw::Encoder::new().compress_vec(rest).unwrap_or_default()
    } else {
        rest.to_vec()
    };
    let decoded = decode_push(&headers, &body);
    if !json && mode & 2 != 0 {
        assert_eq!(
            decoded.is_ok(),
            logproto::PushRequest::decode(rest).is_ok(),
            "a snappy-compressed message decodes differently: {:?}",
            decoded.as_ref().err()
        );
    }
    if mode & 4 != 0 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &body).unwrap_or_else(|e| panic!("gzip into memory: {e}"));
        let gz = gz.finish().unwrap_or_else(|e| panic!("gzip into memory: {e}"));
        headers.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let unzipped = decode_push(&headers, &gz);
        assert_eq!(format!("{unzipped:?}"), format!("{decoded:?}"), "gzip changed the decoded push");
    }
    let Ok(streams) = decoded else { return };
    let entries: usize = streams.iter().map(|s| s.entries.len()).sum();
    match LOKI_RUNTIME.block_on(LOKI_SERVICE.push("fuzz", streams)) {
        Ok(outcome) => {
            assert_eq!(outcome.accepted, 0, "the fuzz service stores nothing");
            assert_eq!(outcome.rejected_total(), entries as u64, "every entry refused once: {outcome:?}");
            assert!(outcome.errors.len() <= 10, "at most ten error details");
        }
        // Some entries passed validation; the negative burst refused to store them.
        Err(meshwork_common::ServiceError::ResourceExhausted(_)) => {}
        Err(meshwork_common::ServiceError::InvalidArgument { field, .. }) => {
            assert!(field == "streams" && entries > meshwork_logging::validate::MAX_PUSH_ENTRIES, "refused: {field}");
        }
        Err(e) => panic!("push failed: {e}"),
    }
}

/// The first day of the GAEN target's fixed keys (a Unix day).
const GAEN_DAY: u32 = 20_000;

/// The P-256 key the GAEN target signs and verifies with (a fixed, public test key).
static GAEN_SIGNER: LazyLock<p256::ecdsa::SigningKey> = LazyLock::new(|| {
    p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap_or_else(|e| panic!("a fixed scalar is a key: {e}"))
});

/// The export of the device test's three keys (`gaen/tests/device.rs`).
static GAEN_EXPORT: LazyLock<meshwork_gaen::export::TemporaryExposureKeyExport> = LazyLock::new(|| {
    use meshwork_gaen::export::{ReportType, TemporaryExposureKey, TemporaryExposureKeyExport, signature_info};
    let key = |byte: u8, day: u32, onset: i32, report: ReportType| TemporaryExposureKey {
        key_data: Some(vec![byte; 16]),
        transmission_risk_level: None,
        rolling_start_interval_number: Some((day * 144) as i32),
        rolling_period: None,
        report_type: Some(report as i32),
        days_since_onset_of_symptoms: Some(onset),
    };
    TemporaryExposureKeyExport {
        start_timestamp: Some(0),
        end_timestamp: Some(3600),
        region: Some("US".into()),
        batch_num: Some(1),
        batch_size: Some(1),
        signature_infos: vec![signature_info("v1", "310")],
        keys: vec![
            key(1, GAEN_DAY, 0, ReportType::ConfirmedTest),
            key(2, GAEN_DAY + 1, -4, ReportType::SelfReport),
            key(3, GAEN_DAY + 2, 12, ReportType::ConfirmedTest),
        ],
        revised_keys: vec![],
    }
});

/// GAEN key exports as `meshwork exposure-check` reads them, by the first byte (mod 5): a zip
/// archive (read, verified with the fuzz key, opened); an `export.bin` body (after the header,
/// which the body adds); an `export.sig` verified against the fixed export; a PEM public key;
/// an observed file (JSON lines) checked against the fixed export's keys. Nothing panics. A
/// parsed export re-encodes to itself, its usable keys' RPIs are found in its index, and (with
/// 1 to 8 keys) the archive the crate builds, signs and zips from it opens, verifies and gives
/// back the same keys sorted. A report's matches, days and verdict agree with each other.
pub fn gaen_export(data: &[u8]) {
    use meshwork_gaen::export::{self, TekSignatureList};
    let Some((&mode, rest)) = data.split_first() else { return };
    let verifying = GAEN_SIGNER.verifying_key();
    match mode % 5 {
        0 => {
            if let Ok((bin, sig)) = export::read_archive(rest) {
                let _ = export::verify_bin(&bin, &sig, verifying);
                if let Ok(parsed) = export::decode_bin(&bin) {
                    gaen_export_laws(&parsed);
                }
            }
            let _ = export::open_archive(rest, Some(verifying));
        }
        1 => {
            let bin = [export::EXPORT_HEADER.as_slice(), rest].concat();
            if let Ok(parsed) = export::decode_bin(&bin) {
                gaen_export_laws(&parsed);
            }
        }
        2 => {
            static BIN: LazyLock<Vec<u8>> = LazyLock::new(|| meshwork_gaen::export::encode_bin(&GAEN_EXPORT));
            if let Ok(sig) = TekSignatureList::decode(rest) {
                let _ = export::verify_bin(&BIN, &sig, verifying);
            }
        }
        3 => {
            let _ = export::verifying_key_from_pem(&String::from_utf8_lossy(rest));
        }
        _ => gaen_observations(&String::from_utf8_lossy(rest)),
    }
}

fn gaen_export_laws(parsed: &meshwork_gaen::export::TemporaryExposureKeyExport) {
    use meshwork_gaen::export;
    let again = export::decode_bin(&export::encode_bin(parsed));
    assert_eq!(again.as_ref().ok(), Some(parsed), "an export does not re-encode to itself: {:?}", again.as_ref().err());
    let total = parsed.keys.len() + parsed.revised_keys.len();
    if total <= 16 {
        let index = meshwork_gaen::KeyIndex::from_exports(std::slice::from_ref(parsed));
        assert!(index.keys().len() + index.skipped <= total, "more keys indexed or skipped than given");
        for key in index.keys() {
            let rpi = meshwork_gaen::crypto::rpi(&key.key, key.rolling_start);
            let found = index.lookup(&rpi).map(|(k, interval)| (k.key, interval));
            assert_eq!(found, Some((key.key, key.rolling_start)), "a key's first RPI is not found");
        }
    }
    if (1..=8).contains(&parsed.keys.len()) {
        let info = export::signature_info("v1", "310");
        let region = parsed.region.as_deref().unwrap_or_default();
        let (start, end) = (parsed.start_timestamp.unwrap_or(0), parsed.end_timestamp.unwrap_or(0));
        let archive = export::build_archive(parsed.keys.clone(), start, end, region, &GAEN_SIGNER, &info)
            .unwrap_or_else(|e| panic!("the crate cannot write an export it parsed: {e}"));
        let opened = export::open_archive(&archive, Some(GAEN_SIGNER.verifying_key()))
            .unwrap_or_else(|e| panic!("an archive the crate wrote does not open: {e}"));
        let mut sorted = parsed.keys.clone();
        sorted.sort_by(|a, b| a.key_data.cmp(&b.key_data));
        assert_eq!(opened.keys, sorted, "the written archive gives other keys back");
    }
}

fn gaen_observations(text: &str) {
    static INDEX: LazyLock<meshwork_gaen::KeyIndex> =
        LazyLock::new(|| meshwork_gaen::KeyIndex::from_exports(std::slice::from_ref(&*GAEN_EXPORT)));
    let Ok(sightings) = meshwork_gaen::matching::parse_observations(text) else { return };
    let report = meshwork_gaen::matching::check(&INDEX, &sightings, &meshwork_gaen::RiskConfig::default());
    assert_eq!(report.observations, sightings.len());
    assert!(report.matched <= report.observations, "more matches than sightings");
    assert!(report.days.windows(2).all(|w| w[0].day < w[1].day), "days not oldest first, once each");
    assert_eq!(report.exposed, report.days.iter().any(|d| d.exposed), "verdict and days disagree");
}

/// HTTP/2 frames as the gateway's relay reads them off a socket (`meshwork_h2relay::frame`):
/// any chunking of the bytes gives the same frames, then the same error or the same wait for
/// more, as the bytes in one piece; never a panic.
pub fn h2_frames(data: &[u8]) {
    use bytes::BytesMut;
    use meshwork_h2relay::frame;
    // The largest frame allowed, from the input: both sides of the limit are reached.
    let max = 16_384 + u32::from(data.first().copied().unwrap_or(0)) * 64;
    let (chunks, whole) = chunked(data);
    let read_all = |pieces: &[&[u8]]| {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match frame::decode(&mut buf, max) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    };
    assert_eq!(read_all(&chunks), read_all(&[whole]), "chunking changed the frames");
}

/// HPACK header blocks (`meshwork_h2relay::hpack`), two on one connection so that the second
/// refers to the first's table entries: a decoder with a list bound never panics, and a list
/// it decodes re-encodes and decodes back to itself.
pub fn hpack(data: &[u8]) {
    use bytes::{Bytes, BytesMut};
    use meshwork_h2relay::hpack::{Decoder, Encoder, HeaderList};
    let Some((&split, rest)) = data.split_first() else { return };
    // Two blocks on one connection, so dynamic table entries of the first are referenced by
    // the second.
    let at = usize::from(split).min(rest.len());
    let (first, second) = rest.split_at(at);
    let mut decoder = Decoder::new(4_096, 1_024);
    for block in [first, second] {
        let mut list = HeaderList::new();
        if decoder.decode(&Bytes::copy_from_slice(block), &mut list).is_err() {
            return;
        }
        let mut encoder = Encoder::default();
        let mut encoded = BytesMut::new();
        encoder.encode(list.iter().map(|(n, v)| (n, v)), &mut encoded);
        let mut again = HeaderList::new();
        Decoder::new(4_096, usize::MAX).decode(&encoded.freeze(), &mut again).expect("our own encoding decodes");
        assert_eq!(again, list, "re-encoding changed the list");
    }
}
