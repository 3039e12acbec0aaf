//! End to end: traces. One gRPC call through the real `meshwork up` (gateway -> service ->
//! storage) becomes one trace in the embedded trace backend, child of the caller's
//! `traceparent`, visible through the Jaeger v1 and v3 APIs and in the web page rendered by
//! headless Chromium; OTLP/HTTP accepts JSON and gzip, OTLP/gRPC gzip, and both keep what they
//! took over a restart; an exporter pointed at a dead collector never holds calls up; the query
//! API answers odd input with a status, never a dropped connection.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Mesh, free_addr, grpcurl, http_get};

const SVC: &str = "meshwork.urlshortener.v1.UrlShortener";

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = http_get(addr, path, &[]);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls `/api/traces/{id}` until `count` spans named `op` show up (one process's spans may
/// arrive in separate export batches).
fn wait_for_trace(ui: SocketAddr, trace_id: &str, op: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get_json(ui, &format!("/api/traces/{trace_id}"));
        let named =
            body["data"][0]["spans"].as_array().map_or(0, |s| s.iter().filter(|s| s["operationName"] == op).count());
        if status == 200 && named >= count {
            return body["data"][0].clone();
        }
        assert!(Instant::now() < deadline, "trace {trace_id} with {op} never arrived (last: {status} {body})");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `meshwork traces` alone on free ports, keeping its traces in `dir`; returns it with its
/// OTLP/gRPC, OTLP/HTTP and query addresses.
fn trace_backend(dir: &std::path::Path) -> (Mesh, SocketAddr, SocketAddr, SocketAddr) {
    let (grpc, http, ui) = (free_addr(), free_addr(), free_addr());
    let (g, h, u) = (grpc.to_string(), http.to_string(), ui.to_string());
    let d = dir.display().to_string();
    let args = ["traces", "--otlp-grpc", &g, "--otlp-http", &h, "--trace-ui", &u, "--data-dir", &d];
    (Mesh::start(&args, ui, "meshwork traces ready"), grpc, http, ui)
}

#[test]
fn one_call_is_one_trace_visible_in_both_apis_and_the_web_page() {
    let dir = tempfile::tempdir().unwrap();
    let (mesh, ui) = Mesh::up_with_traces(dir.path());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("traceparent: 00-{trace_id}-{caller_span}-01");
    let body = r#"{"long_url":"https://example.com/traced"}"#;
    let (ok, _, err) = grpcurl(mesh.addr, &["-H", &traceparent, "-d", body], &[&format!("{SVC}/Shorten")]);
    assert!(ok, "{err}");

    let op = format!("{SVC}/Shorten");
    // Gateway SERVER, gateway CLIENT and service SERVER all carry the method's name.
    let trace = wait_for_trace(ui, trace_id, &op, 3);
    let spans = trace["spans"].as_array().unwrap();
    let service_of = |span: &Value| trace["processes"][span["processID"].as_str().unwrap()]["serviceName"].clone();
    let tag = |span: &Value, key: &str| {
        span["tags"].as_array().unwrap().iter().find(|t| t["key"] == key).map(|t| t["value"].clone())
    };
    let kind = |span: &Value| tag(span, "span.kind");
    let parent = |span: &Value| span["references"][0]["spanID"].clone();
    // caller -> gateway SERVER -> gateway CLIENT (one per attempt) -> service SERVER -> storage INTERNAL
    let gateway_server = spans
        .iter()
        .find(|s| service_of(s) == "gateway" && kind(s) == Some(Value::from("server")))
        .unwrap_or_else(|| panic!("no gateway server span in {trace}"));
    assert_eq!(gateway_server["operationName"], op.as_str());
    assert_eq!(parent(gateway_server), caller_span, "the gateway span is a child of the caller's span");
    assert_eq!(tag(gateway_server, "rpc.grpc.status_code"), Some(Value::from(0)));
    let gateway_client = spans
        .iter()
        .find(|s| service_of(s) == "gateway" && kind(s) == Some(Value::from("client")))
        .unwrap_or_else(|| panic!("no gateway client span in {trace}"));
    assert_eq!(parent(gateway_client), gateway_server["spanID"]);
    assert_eq!(gateway_client["operationName"], op.as_str());
    assert_eq!(tag(gateway_client, "meshwork.attempt"), Some(Value::from(1)));
    assert_eq!(tag(gateway_client, "server.address"), Some(Value::from("127.0.0.1")));
    let server = spans
        .iter()
        .find(|s| s["operationName"] == op.as_str() && service_of(s) == "urlshortener")
        .unwrap_or_else(|| panic!("no service span in {trace}"));
    assert_eq!(server["traceID"], trace_id);
    assert_eq!(server["references"][0]["refType"], "CHILD_OF");
    assert_eq!(parent(server), gateway_client["spanID"], "the service span is a child of the gateway's attempt");
    let (_, deps) = get_json(ui, "/api/dependencies");
    assert!(
        deps["data"].as_array().unwrap().iter().any(|d| d["parent"] == "gateway" && d["child"] == "urlshortener"),
        "{deps}"
    );
    assert_eq!(tag(server, "rpc.system"), Some(Value::from("grpc")));
    assert_eq!(tag(server, "rpc.method"), Some(Value::from("Shorten")));
    assert_eq!(tag(server, "rpc.grpc.status_code"), Some(Value::from(0)));
    assert_eq!(tag(server, "span.kind"), Some(Value::from("server")));
    // Storage spans are children of the service span, under the same service, values never recorded.
    let server_id = server["spanID"].as_str().unwrap();
    let storage: Vec<&Value> =
        spans.iter().filter(|s| s["operationName"].as_str().unwrap_or("").starts_with("storage.")).collect();
    assert!(!storage.is_empty(), "no storage spans in {trace}");
    for s in &storage {
        assert_eq!(s["references"][0]["spanID"], server_id);
        assert_eq!(trace["processes"][s["processID"].as_str().unwrap()]["serviceName"], "urlshortener");
        assert_eq!(tag(s, "span.kind"), Some(Value::from("internal")));
        assert!(tag(s, "db.system").is_some() && tag(s, "meshwork.key_prefix").is_some());
        assert!(!s.to_string().contains("https://example.com/traced"), "a value leaked into a span: {s}");
    }

    // v1 search, services, operations.
    let (_, services) = get_json(ui, "/api/services");
    assert!(services["data"].as_array().unwrap().iter().any(|s| s == "urlshortener"), "{services}");
    assert_eq!(services["errors"], Value::Null);
    let (_, ops) = get_json(ui, "/api/services/urlshortener/operations");
    assert!(ops["data"].as_array().unwrap().iter().any(|o| o == op.as_str()), "{ops}");
    let (_, found) = get_json(ui, &format!("/api/traces?service=urlshortener&operation={op}&limit=5"));
    assert!(found["data"].as_array().unwrap().iter().any(|t| t["traceID"] == trace_id), "{found}");
    let (_, none) = get_json(ui, "/api/traces?service=urlshortener&minDuration=1h");
    assert_eq!(none["data"].as_array().map(Vec::len), Some(0));
    let (status, _) = get_json(ui, "/api/traces/00000000000000000000000000000abc");
    assert_eq!(status, 404);
    let (status, _) = get_json(ui, "/api/traces?service=urlshortener&minDuration=soon");
    assert_eq!(status, 400);
    // Dependencies: a window in milliseconds; a malformed one is refused by name, not read as none.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let (_, recent) = get_json(ui, &format!("/api/dependencies?endTs={now_ms}&lookback=3600000"));
    assert!(
        recent["data"].as_array().unwrap().iter().any(|d| d["parent"] == "gateway" && d["child"] == "urlshortener"),
        "{recent}"
    );
    let (_, old) = get_json(ui, &format!("/api/dependencies?endTs={}&lookback=60000", now_ms - 7_200_000));
    assert_eq!(old["data"].as_array().map(Vec::len), Some(0), "{old}");
    for bad in ["endTs=yesterday", "endTs=1&lookback=-5"] {
        let (status, body) = get_json(ui, &format!("/api/dependencies?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        let name = bad.rsplit('&').next().unwrap().split('=').next().unwrap();
        assert!(body["errors"][0]["msg"].as_str().unwrap().starts_with(&format!("{name}: ")), "{body}");
    }
    // v3.
    let (_, v3) = get_json(ui, &format!("/api/v3/traces/{trace_id}"));
    let v3_spans: Vec<&Value> = v3["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap().iter().flat_map(|ss| ss["spans"].as_array().unwrap()))
        .collect();
    assert_eq!(v3_spans.len(), spans.len());
    assert!(v3_spans.iter().all(|s| s["traceId"] == trace_id));
    let (_, v3_services) = get_json(ui, "/api/v3/services");
    assert!(v3_services["services"].as_array().unwrap().iter().any(|s| s == "urlshortener"));

    // The web page, rendered by headless Chromium, shows the waterfall of the trace.
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{ui}/#trace={trace_id}");
    let chromium = |extra: &[String]| {
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--window-size=1280,900", "--virtual-time-budget=8000"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium (installed by scripts/install-deps.sh)")
    };
    let dom = chromium(&["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("data-ready=\"true\""), "page did not finish loading:\n{dom}");
    assert!(dom.contains(&format!("Trace <code>{trace_id}</code>")), "no waterfall for the trace:\n{dom}");
    assert!(dom.contains("UrlShortener/Shorten") && dom.contains("storage."), "waterfall lacks spans:\n{dom}");
    assert!(dom.contains(">gateway<"), "waterfall lacks the gateway's spans:\n{dom}");
    let shot = artifacts.join("trace-waterfall.png");
    let out = chromium(&[format!("--screenshot={}", shot.display())]);
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let span_count = spans.len();
    assert!(mesh.terminate(Duration::from_secs(30)).success());

    // The trace backend keeps its traces in the embedded store: a restart still shows the trace.
    let (mesh, ui) = Mesh::up_with_traces(dir.path());
    let (status, again) = get_json(ui, &format!("/api/traces/{trace_id}"));
    assert_eq!(status, 200, "trace lost across a restart: {again}");
    assert!(again["data"][0]["spans"].as_array().unwrap().len() >= span_count, "{again}");
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}

/// Odd values in every parameter and path segment of the query API get an answer (200, 400 or
/// 404), never a dropped connection (a handler that panicked) or a 5xx. A multi-byte character
/// in a time's offset once panicked the handler.
#[test]
fn the_query_api_answers_odd_input_with_a_status() {
    let dir = tempfile::tempdir().unwrap();
    let (_backend, _, _, ui) = trace_backend(dir.path());
    let long = ["a".repeat(2000), "0".repeat(33), "é".repeat(16)];
    let mut odd: Vec<&str> = vec![
        "",
        "é",
        "😀",
        "-1",
        "0",
        "1e400",
        "NaN",
        "true",
        "{}",
        "{\"a\":1}",
        "[]",
        "%",
        "\u{0}",
        "18446744073709551616",
        "99999999999999999999999",
        "1.5s",
        "-1s",
        "9999999999h",
        "1.5parsecs",
        "2026-11-28T10:00:00Z",
        "2026-11-28T10:00:00+0é00",
        "9999-12-31T23:59:59Z",
        "2026-11-28T10:00:00.é5Z",
    ];
    odd.extend(long.iter().map(String::as_str));
    // Percent-encodes everything but letters and digits.
    let encode = |text: &str| {
        text.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    let searches: [(&str, &[&str]); 6] = [
        (
            "/api/traces?service=x",
            &["operation", "tags", "minDuration", "maxDuration", "start", "end", "limit", "errors"],
        ),
        ("/api/dependencies?x=", &["endTs", "lookback"]),
        ("/api/operations?service=x", &["spanKind"]),
        ("/api/v3/operations?service=x", &["span_kind"]),
        (
            "/api/v3/traces?query.service_name=x",
            &[
                "query.operation_name",
                "query.start_time_min",
                "query.start_time_max",
                "query.duration_min",
                "query.duration_max",
                "query.search_depth",
            ],
        ),
        (
            "/api/v3/trace-summaries?query.service_name=x",
            &["query.start_time_min", "query.search_depth", "query.duration_min"],
        ),
    ];
    let mut asked = 0;
    let mut check = |path: String| {
        let (status, _, body) = http_get(ui, &path, &[]);
        assert!(matches!(status, 200 | 400 | 404), "{path}: {status} {body}");
        asked += 1;
    };
    for (search, keys) in searches {
        for key in keys {
            for value in &odd {
                check(format!("{search}&{key}={}", encode(value)));
            }
        }
    }
    for value in &odd {
        let segment = encode(value);
        check(format!("/api/traces/{segment}"));
        check(format!("/api/v3/traces/{segment}"));
        check(format!("/api/services/{segment}/operations"));
    }
    assert!(asked > 600, "{asked}");
}

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn otlp_http_takes_json_and_gzip_and_the_trace_view_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, _, http, ui) = trace_backend(dir.path());
    let export = |trace: &str, name: &str| {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"json-svc"}}}}]}},
            "scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"0102030405060708","name":"{name}","kind":2,
            "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000005000000",
            "attributes":[{{"key":"http.route","value":{{"stringValue":"/x"}}}}]}}]}}]}}]}}"#
        )
    };
    let plain = export("11111111111111111111111111111111", "plain-json");
    assert_eq!(post(http, "/v1/traces", &[("Content-Type", "application/json")], plain.as_bytes()), 200);
    let gz = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{}' | gzip -c", export("22222222222222222222222222222222", "gzipped-json")))
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        post(http, "/v1/traces", &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")], &gz),
        200
    );
    assert_eq!(post(http, "/v1/traces", &[("Content-Type", "application/json")], b"{not json"), 400);
    let (_, t) = get_json(ui, "/api/traces/11111111111111111111111111111111");
    assert_eq!(t["data"][0]["spans"][0]["operationName"], "plain-json");
    assert_eq!(t["data"][0]["spans"][0]["duration"], 5000);
    assert_eq!(t["data"][0]["processes"]["p1"]["serviceName"], "json-svc");
    let (_, t) = get_json(ui, "/api/traces/22222222222222222222222222222222");
    assert_eq!(t["data"][0]["spans"][0]["operationName"], "gzipped-json");
    let (_, found) = get_json(ui, r#"/api/traces?service=json-svc&tags=%7B%22http.route%22%3A%22%2Fx%22%7D"#);
    assert_eq!(found["data"].as_array().map(Vec::len), Some(2));
    // A span of now, so that the age bound cannot drop it, must survive a restart.
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let recent = export("33333333333333333333333333333333", "recent-json")
        .replace("1700000000000000000", &now_ns.to_string())
        .replace("1700000000005000000", &(now_ns + 5_000_000).to_string());
    assert_eq!(post(http, "/v1/traces", &[("Content-Type", "application/json")], recent.as_bytes()), 200);
    assert!(traces.terminate(Duration::from_secs(30)).success());
    let (again, _, _, ui) = trace_backend(dir.path());
    let (status, t) = get_json(ui, "/api/traces/33333333333333333333333333333333");
    assert_eq!(status, 200, "the trace store of `meshwork traces --data-dir` lost a trace over a restart: {t}");
    assert_eq!(t["data"][0]["spans"][0]["operationName"], "recent-json");
    assert!(again.terminate(Duration::from_secs(30)).success());
}

/// A request that is not an `ExportTraceServiceRequest`: field 1 (`resource_spans`, a message)
/// as a number.
#[derive(Clone, PartialEq, prost::Message)]
struct NotAnExport {
    #[prost(uint64, tag = "1")]
    resource_spans: u64,
}

#[test]
fn otlp_grpc_and_http_protobuf_keep_exports_over_a_restart_and_reject_garbage() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use tonic::codec::CompressionEncoding;
    use tonic::codegen::http::uri::PathAndQuery;

    let dir = tempfile::tempdir().unwrap();
    let (traces, grpc, http, ui) = trace_backend(dir.path());
    let kv = |key: &str, value: &str| KeyValue {
        key: key.into(),
        key_strindex: 0,
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
    };
    // Of now, so that the age bound cannot drop it over the restart.
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let span = |trace: u8, span_id: Vec<u8>, name: &str| Span {
        trace_id: vec![trace; 16],
        span_id,
        name: name.into(),
        kind: 2,
        start_time_unix_nano: now_ns,
        end_time_unix_nano: now_ns + 7_000_000,
        attributes: vec![kv("http.route", "/y")],
        ..Default::default()
    };
    let export = |service: &str, spans: Vec<Span>| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    // The second span's id is 3 bytes long: rejected, and said so.
    let request = export(
        "grpc-svc",
        vec![span(0x44, vec![1, 2, 3, 4, 5, 6, 7, 8], "gzipped-grpc"), span(0x55, vec![1, 2, 3], "bad-id")],
    );
    // The same export format over OTLP/HTTP, as protobuf.
    let body = prost::Message::encode_to_vec(&export("http-svc", vec![span(0x66, vec![8; 8], "protobuf-http")]));
    assert_eq!(post(http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body), 200);
    assert_eq!(post(http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], b"\x0a\xff"), 400);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{grpc}")).unwrap().connect().await.unwrap();
        let mut client = TraceServiceClient::new(channel.clone()).send_compressed(CompressionEncoding::Gzip);
        let reply = client.export(request).await.unwrap().into_inner();
        assert_eq!(reply.partial_success.map(|p| p.rejected_spans), Some(1));

        let raw = tonic::client::Grpc::new(channel);
        let call = |method: &'static str| {
            let mut raw = raw.clone();
            async move {
                raw.ready().await.unwrap();
                raw.unary::<NotAnExport, ExportTraceServiceResponse, _>(
                    tonic::Request::new(NotAnExport { resource_spans: 7 }),
                    PathAndQuery::from_static(method),
                    tonic_prost::ProstCodec::default(),
                )
                .await
                .unwrap_err()
            }
        };
        let garbage = call("/opentelemetry.proto.collector.trace.v1.TraceService/Export").await;
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");
        assert!(garbage.message().contains("malformed ExportTraceServiceRequest"), "{garbage:?}");
        let unknown = call("/opentelemetry.proto.collector.trace.v1.TraceService/Import").await;
        assert_eq!(unknown.code(), tonic::Code::Unimplemented, "{unknown:?}");
    });
    let check = |ui: SocketAddr| {
        let t = wait_for_trace(ui, &"44".repeat(16), "gzipped-grpc", 1);
        assert_eq!(t["spans"][0]["duration"], 7000);
        assert_eq!(t["processes"]["p1"]["serviceName"], "grpc-svc");
        assert_eq!(get_json(ui, &format!("/api/traces/{}", "55".repeat(16))).0, 404);
        let t = wait_for_trace(ui, &"66".repeat(16), "protobuf-http", 1);
        assert_eq!(t["processes"]["p1"]["serviceName"], "http-svc");
    };
    check(ui);
    // Both exports were stored as they came, and read back the same after a restart.
    assert!(traces.terminate(Duration::from_secs(30)).success());
    let (again, _, _, ui) = trace_backend(dir.path());
    check(ui);
    assert!(again.terminate(Duration::from_secs(30)).success());
}

/// What [`calls_with_a_collector_at`] saw: how long 500 calls took and the service's counters.
struct DeadCollectorRun {
    elapsed: Duration,
    ended: f64,
    dropped: f64,
    ok: f64,
    failed: f64,
    metrics: String,
}

/// Makes 500 sampled calls to a service exporting to `collector` (a queue of 64, exports given
/// up after 20 s) and reads its span counters once `settled` holds of them (15 s at most).
fn calls_with_a_collector_at(collector: SocketAddr, settled: impl Fn(&DeadCollectorRun) -> bool) -> DeadCollectorRun {
    let addr = free_addr();
    let admin = free_addr();
    let (a, m) = (addr.to_string(), admin.to_string());
    let dir = tempfile::tempdir().unwrap();
    let store = format!("embedded:{}", dir.path().display());
    let cmd_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64".into()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "20000".into()),
        ("RUST_LOG", "warn,opentelemetry_sdk=off".into()),
    ];
    let serve = support::Mesh::start_with_env(
        &["serve", "urlshortener", "--listen", &a, "--store", &store, "--admin-listen", &m],
        addr,
        "meshwork serving",
        &cmd_env,
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let elapsed = runtime.block_on(async {
        use meshwork_proto::pb::urlshortener::v1 as pb;
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut client = pb::url_shortener_client::UrlShortenerClient::new(channel);
        let req = pb::ShortenRequest { long_url: "https://example.com/d".into(), ..Default::default() };
        let code = client.shorten(req).await.unwrap().into_inner().code;
        let started = Instant::now();
        let calls = async {
            for _ in 0..500 {
                let req = pb::ResolveRequest { code: code.clone(), ..Default::default() };
                client.resolve(req).await.expect("a call failed while the collector was down");
            }
        };
        // A blocking exporter would hold each call for its 20 s export timeout: give up early.
        tokio::time::timeout(Duration::from_secs(60), calls).await.expect("calls were held up");
        started.elapsed()
    });
    drop(runtime);
    let run = span_counters_when(admin, elapsed, settled);
    assert!(serve.terminate(Duration::from_secs(30)).success());
    run
}

/// Reads the span counters of the process whose admin port is `admin`; waits (up to 15 s) for
/// `settled` to hold of them.
fn span_counters_when(
    admin: SocketAddr,
    elapsed: Duration,
    settled: impl Fn(&DeadCollectorRun) -> bool,
) -> DeadCollectorRun {
    let started = Instant::now();
    loop {
        let run = span_counters(admin, elapsed);
        if settled(&run) || started.elapsed() > Duration::from_secs(15) {
            return run;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn span_counters(admin: SocketAddr, elapsed: Duration) -> DeadCollectorRun {
    let (_, _, metrics) = http_get(admin, "/metrics", &[]);
    let sample = |name: &str| support::metric_sample(&metrics, name).unwrap_or(-1.0);
    DeadCollectorRun {
        elapsed,
        ended: sample("meshwork_trace_spans_ended_total"),
        dropped: sample("meshwork_trace_spans_dropped_total"),
        ok: sample("meshwork_trace_spans_exported_total{result=\"ok\"}"),
        failed: sample("meshwork_trace_spans_exported_total{result=\"failed\"}"),
        metrics,
    }
}

#[test]
fn a_dead_collector_never_holds_calls_up() {
    // Nothing listens at the first address: every export is refused, retried 3 times and given
    // up at once. The second accepts connections and never answers (a hung collector, or a
    // firewall that drops packets): every export waits its full 20 s.
    let refused = free_addr();
    let hole = std::net::TcpListener::bind(free_addr()).unwrap();
    for (case, collector) in [("refused", refused), ("black hole", hole.local_addr().unwrap())] {
        // Refused exports are given up at once: wait until nothing is left queued.
        let run = calls_with_a_collector_at(collector, |r| case != "refused" || r.ended == r.failed + r.dropped);
        let DeadCollectorRun { elapsed, ended, dropped, ok, failed, metrics } = &run;
        assert!(*ended >= 500.0, "{case}: {metrics}");
        assert_eq!(*ok, 0.0, "{case}: {metrics}");
        // Every span is counted: shipped, given up, dropped, or still in the queue of 64 or in
        // the export under way (a batch of at most 64).
        let unaccounted = ended - ok - failed - dropped;
        assert!((0.0..=128.0).contains(&unaccounted), "{case}: {unaccounted} spans not counted: {metrics}");
        if case == "refused" {
            // Everything was given up or dropped, and more than the first batch was exported:
            // an export gives its batch's places in the queue back.
            assert_eq!(unaccounted, 0.0, "{metrics}");
            assert!(*failed > 64.0, "{metrics}");
        } else {
            // One export at a time, each held 20 s: the bounded queue dropped the rest.
            let given_up = ((elapsed.as_secs_f64() + 1.0) / 20.0).ceil();
            assert!(*failed <= 64.0 * given_up, "{metrics}");
            assert!(
                *dropped >= ended - 64.0 * (given_up + 2.0),
                "the queue of 64 should have dropped the rest: {metrics}"
            );
        }
    }
    drop(hole);
}

/// Starts `meshwork serve urlshortener` (store in `dir`) and a `meshwork gateway` in front of
/// it, as separate processes with their own environment, extra gateway flags and extra
/// top-level lines of the gateway's configuration; returns both and the gateway's address.
fn service_behind_gateway(
    dir: &std::path::Path,
    service_env: &[(&str, String)],
    gateway_env: &[(&str, String)],
    gateway_flags: &[&str],
    gateway_config: &str,
) -> (Mesh, Mesh, SocketAddr) {
    let store = format!("embedded:{}", dir.display());
    let service_addr = free_addr();
    let s = service_addr.to_string();
    let service = Mesh::start_with_env(
        &["serve", "urlshortener", "--listen", &s, "--store", &store],
        service_addr,
        "meshwork serving",
        service_env,
    );
    let gateway_addr = free_addr();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{gateway_addr}\"\n{gateway_config}\n[pools.urlshortener]\nendpoints = [\"{service_addr}\"]\n\
             [[routes]]\nservice = \"{SVC}\"\npool = \"urlshortener\"\n"
        ),
    )
    .unwrap();
    let mut args = vec!["gateway", "--config", config.to_str().unwrap()];
    args.extend_from_slice(gateway_flags);
    let gateway = Mesh::start_with_env(&args, gateway_addr, "gateway ready", gateway_env);
    (service, gateway, gateway_addr)
}

#[test]
fn one_trace_across_separate_gateway_and_service_processes() {
    // The trace backend alone, a service process and a gateway process, each exporting its
    // own spans over OTLP with its own service.name.
    let trace_dir = tempfile::tempdir().unwrap();
    let (traces, grpc, _, ui) = trace_backend(trace_dir.path());
    let otlp = [("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{grpc}"))];
    let dir = tempfile::tempdir().unwrap();
    let (service, gateway, gateway_addr) = service_behind_gateway(dir.path(), &otlp, &otlp, &[], "");

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let traceparent = format!("traceparent: 00-{trace_id}-{caller_span}-01");
    let (ok, _, err) = grpcurl(
        gateway_addr,
        &["-H", &traceparent, "-d", r#"{"long_url":"https://example.com/split"}"#],
        &[&format!("{SVC}/Shorten")],
    );
    assert!(ok, "{err}");
    let op = format!("{SVC}/Shorten");
    // Both processes export on their own schedule: wait until the service's span is there too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let t = wait_for_trace(ui, trace_id, &op, 3);
        let services: Vec<Value> =
            t["processes"].as_object().unwrap().values().map(|p| p["serviceName"].clone()).collect();
        let has_storage = t["spans"].as_array().unwrap().iter().any(|s| s["operationName"] == "storage.write");
        if services.contains(&Value::from("gateway")) && services.contains(&Value::from("urlshortener")) && has_storage
        {
            break t;
        }
        assert!(Instant::now() < deadline, "trace never got both processes' spans: {t}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let spans = trace["spans"].as_array().unwrap();
    let service_of = |span: &Value| trace["processes"][span["processID"].as_str().unwrap()]["serviceName"].clone();
    let by_id = |id: &Value| spans.iter().find(|s| &s["spanID"] == id).cloned();
    let parent = |span: &Value| span["references"][0]["spanID"].clone();
    // storage -> service SERVER -> gateway CLIENT -> gateway SERVER -> caller
    let storage = spans.iter().find(|s| s["operationName"] == "storage.write").unwrap();
    assert_eq!(service_of(storage), "urlshortener");
    let service_span = by_id(&parent(storage)).expect("the storage span's parent is in the trace");
    assert_eq!(service_of(&service_span), "urlshortener");
    assert_eq!(service_span["operationName"], op.as_str());
    let client = by_id(&parent(&service_span)).expect("the service span's parent (gateway attempt) is in the trace");
    assert_eq!(service_of(&client), "gateway");
    let server = by_id(&parent(&client)).expect("the gateway attempt's parent is in the trace");
    assert_eq!(service_of(&server), "gateway");
    assert_eq!(parent(&server), caller_span);

    // A caller that did not sample (flags 00) gets no spans anywhere along the path.
    let unsampled = "5b8efff798038103d269b633813fc60c";
    let header = format!("traceparent: 00-{unsampled}-eee19b7ec3c1b174-00");
    let (ok, _, err) = grpcurl(
        gateway_addr,
        &["-H", &header, "-d", r#"{"long_url":"https://example.com/unsampled"}"#],
        &[&format!("{SVC}/Shorten")],
    );
    assert!(ok, "{err}");
    // Both exporters flush every 500 ms; a sampled call's spans arrive well within this.
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = get_json(ui, &format!("/api/traces/{unsampled}"));
    assert_eq!(status, 404, "an unsampled call left spans: {body}");

    assert!(gateway.terminate(Duration::from_secs(30)).success());
    assert!(service.terminate(Duration::from_secs(30)).success());
    assert!(traces.terminate(Duration::from_secs(30)).success());
}

/// Trace ids of the traces in which `service` has spans, from the Jaeger v1 search.
fn trace_ids_of(ui: SocketAddr, service: &str) -> std::collections::BTreeSet<String> {
    let (status, body) = get_json(ui, &format!("/api/traces?service={service}&limit=5000&lookback=1h"));
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_string()).collect()
}

/// Traces sampled at the gateway and at the service when 400 calls without a `traceparent` go
/// through a gateway with 25% ratio sampling (set by flags) and these extra configuration lines,
/// to a service with this sampler (`OTEL_TRACES_SAMPLER`, ratio 0.25): the trace ids in which
/// each has spans.
fn sampled_at_gateway_and_service(
    gateway_config: &str,
    service_sampler: &str,
) -> (std::collections::BTreeSet<String>, std::collections::BTreeSet<String>) {
    let trace_dir = tempfile::tempdir().unwrap();
    let (traces, grpc, _, ui) = trace_backend(trace_dir.path());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{grpc}")),
        ("OTEL_TRACES_SAMPLER", service_sampler.to_string()),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25".to_string()),
    ];
    let dir = tempfile::tempdir().unwrap();
    // The gateway gets the same settings as flags instead of OTEL_* variables.
    let endpoint = format!("http://{grpc}");
    let flags = ["--otlp-endpoint", &endpoint, "--trace-sampling", "0.25"];
    let (service, gateway, gateway_addr) = service_behind_gateway(dir.path(), &env, &[], &flags, gateway_config);

    const CALLS: usize = 400;
    let load = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["load", "--insecure", "--call", &format!("{SVC}/Resolve"), "-d", r#"{"code":"nosuch1"}"#])
        .args(["-n", &CALLS.to_string(), "-c", "4", &gateway_addr.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run meshwork load");
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "{report}\n{}", String::from_utf8_lossy(&load.stderr));
    assert!(report.contains("NotFound"), "every Resolve of a missing code answers NOT_FOUND: {report}");

    // Both exporters flush every 500 ms; let the last batches land, then compare.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (at_gateway, at_service) = loop {
        std::thread::sleep(Duration::from_secs(2));
        let (a, b) = (trace_ids_of(ui, "gateway"), trace_ids_of(ui, "urlshortener"));
        if a == b || Instant::now() > deadline {
            break (a, b);
        }
    };
    // Binomial(400, 0.25): mean 100, standard deviation 8.7; this window is over 5 sd wide.
    assert!((55..=145).contains(&at_gateway.len()), "{} of {CALLS} calls sampled at 25%", at_gateway.len());
    assert!(gateway.terminate(Duration::from_secs(30)).success());
    assert!(service.terminate(Duration::from_secs(30)).success());
    assert!(traces.terminate(Duration::from_secs(30)).success());
    (at_gateway, at_service)
}

/// Asserts that every sampled trace holds both hops and that the service rooted none.
fn assert_whole(at_gateway: &std::collections::BTreeSet<String>, at_service: &std::collections::BTreeSet<String>) {
    let only_gateway: Vec<_> = at_gateway.difference(at_service).collect();
    let only_service: Vec<_> = at_service.difference(at_gateway).collect();
    assert!(
        only_gateway.is_empty() && only_service.is_empty(),
        "sampled traces must hold both hops, and the service must root none of its own: {} traces without the \
         service, {} without the gateway, of {}; for example {:?}",
        only_gateway.len(),
        only_service.len(),
        at_gateway.len(),
        only_gateway.first().or(only_service.first())
    );
}

#[test]
fn ratio_sampling_at_the_gateway_keeps_whole_traces() {
    // Gateway and service in separate processes, both configured for 25% parent-based ratio
    // sampling. Calls arrive without a traceparent, so the gateway roots every trace and
    // decides before building any span; the unsampled ones go upstream with a traceparent of
    // flags 00, and the service follows: every sampled trace is whole, and no call gets a trace
    // of its own at the service.
    let (at_gateway, at_service) = sampled_at_gateway_and_service("", "parentbased_traceidratio");
    assert_whole(&at_gateway, &at_service);
}

#[test]
fn without_unsampled_propagation_the_service_must_root_no_traces() {
    // `propagate_unsampled = false`: calls the gateway turns down go upstream without trace
    // headers. A service that roots no traces (parent-based, always off at the root) keeps every
    // trace whole...
    let lean = "propagate_unsampled = false";
    let (at_gateway, at_service) = sampled_at_gateway_and_service(lean, "parentbased_always_off");
    assert_whole(&at_gateway, &at_service);
    // ...while one that samples new traces itself roots some of the calls the gateway turned
    // down (about 75 of the 300), which is what the option's documentation warns of.
    let (at_gateway, at_service) = sampled_at_gateway_and_service(lean, "parentbased_traceidratio");
    let only_service = at_service.difference(&at_gateway).count();
    assert!(only_service >= 20, "{only_service} traces rooted at the service; expected about 75");
    assert!(at_gateway.is_subset(&at_service), "sampled traces still reach the service");
}
