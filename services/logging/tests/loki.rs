//! Compatibility: the Loki HTTP API answers in Loki's documented JSON shapes (golden tests of
//! `query_range` streams and matrix, `query` vector, `labels`, `label/{name}/values`, `series`,
//! `ready`), takes pushes as protobuf+snappy (a request encoded here by hand from Loki's
//! `push.proto` field numbers) and JSON, keeps tenants apart by `X-Scope-OrgID`; the OTLP
//! receiver maps resources to labels (gRPC and HTTP JSON), and the self-logs layer ships
//! `tracing` events under tenant `meshwork`. On every backend.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http_body_util::BodyExt;
use meshwork_logging::service::Logging;
use meshwork_logging::{loki_router, otlp_http_router};
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::on_every_backend;
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt;

async fn call(router: &Router, method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router.clone().oneshot(req.body(axum::body::Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

async fn get_json(router: &Router, uri: &str, tenant: &str) -> Value {
    let (status, body) = call(router, "GET", uri, &[("X-Scope-OrgID", tenant)], vec![]).await;
    assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Protobuf by hand: a varint, and a length-delimited field.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(tag: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(tag << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `logproto.PushRequest{streams: [{labels, entries: [{timestamp, line, structuredMetadata}]}]}`
/// from Loki's `pkg/push/push.proto` field numbers.
fn golden_push(labels: &str, ts_ns: i64, line: &str, meta: (&str, &str)) -> Vec<u8> {
    let mut timestamp = Vec::new();
    varint(1 << 3, &mut timestamp);
    varint((ts_ns / 1_000_000_000) as u64, &mut timestamp);
    varint(2 << 3, &mut timestamp);
    varint((ts_ns % 1_000_000_000) as u64, &mut timestamp);
    let mut pair = Vec::new();
    field(1, meta.0.as_bytes(), &mut pair);
    field(2, meta.1.as_bytes(), &mut pair);
    let mut entry = Vec::new();
    field(1, &timestamp, &mut entry);
    field(2, line.as_bytes(), &mut entry);
    field(3, &pair, &mut entry);
    let mut stream = Vec::new();
    field(1, labels.as_bytes(), &mut stream);
    field(2, &entry, &mut stream);
    let mut req = Vec::new();
    field(1, &stream, &mut req);
    req
}

fn without_stats(mut v: Value) -> Value {
    let stats = v["data"].as_object_mut().and_then(|d| d.remove("stats"));
    if let Some(stats) = stats {
        assert!(stats["summary"]["totalLinesProcessed"].is_u64(), "{stats}");
        assert!(stats["summary"]["execTime"].is_number(), "{stats}");
    }
    v
}

async fn loki_api_answers_in_lokis_shapes(backend: Backend) {
    let logging = logging(backend.store.clone(), config());
    let router = loki_router(logging.clone());
    let tenant = unique("loki");
    let s = now_ns() / 1_000_000_000;
    let (t1, t2) = ((s - 5) * 1_000_000_000 + 1, (s - 3) * 1_000_000_000 + 2);

    // JSON push, with structured metadata on one entry.
    let push = json!({"streams": [{"stream": {"job": "golden", "env": "test"}, "values": [
        [t1.to_string(), "line one"],
        [t2.to_string(), "line two", {"trace_id": "0af7651916cd43dd8448eb211c80319c"}],
    ]}]});
    let (status, body) = call(
        &router,
        "POST",
        "/loki/api/v1/push",
        &[("content-type", "application/json"), ("X-Scope-OrgID", &tenant)],
        push.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));

    let q = enc(r#"{job="golden"}"#);
    let v = get_json(
        &router,
        &format!("/loki/api/v1/query_range?query={q}&start={}&end={}&limit=10", s - 60, s + 1),
        &tenant,
    )
    .await;
    assert_eq!(
        without_stats(v),
        json!({"status": "success", "data": {"resultType": "streams", "result": [
            {"stream": {"env": "test", "job": "golden"}, "values": [[t2.to_string(), "line two"], [t1.to_string(), "line one"]]}
        ]}})
    );
    // Structured metadata is filterable as a label.
    let q =
        enc(r#"{job="golden"} | trace_id="0af7651916cd43dd8448eb211c80319c" | line_format "{{.env}}: {{.trace_id}}""#);
    let v = get_json(
        &router,
        &format!("/loki/api/v1/query_range?query={q}&start={}&end={}&direction=forward", s - 60, s + 1),
        &tenant,
    )
    .await;
    assert_eq!(v["data"]["result"][0]["values"], json!([[t2.to_string(), "test: 0af7651916cd43dd8448eb211c80319c"]]));

    let q = enc(r#"sum(count_over_time({job="golden"}[10m]))"#);
    let v = get_json(&router, &format!("/loki/api/v1/query_range?query={q}&start={s}&end={}&step=60", s + 60), &tenant)
        .await;
    assert_eq!(
        without_stats(v),
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[s as f64, "2"], [(s + 60) as f64, "2"]]}
        ]}})
    );
    let q = enc(r#"count_over_time({job="golden"} |= "two" [10m])"#);
    let v = get_json(&router, &format!("/loki/api/v1/query?query={q}&time={s}"), &tenant).await;
    assert_eq!(
        without_stats(v),
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"env": "test", "job": "golden"}, "value": [s as f64, "1"]}
        ]}})
    );
    assert_eq!(
        get_json(&router, "/loki/api/v1/labels", &tenant).await,
        json!({"status": "success", "data": ["env", "job"]})
    );
    assert_eq!(
        get_json(&router, "/loki/api/v1/label/job/values", &tenant).await,
        json!({"status": "success", "data": ["golden"]})
    );
    let m = enc(r#"{env="test"}"#);
    assert_eq!(
        get_json(&router, &format!("/loki/api/v1/series?match[]={m}"), &tenant).await,
        json!({"status": "success", "data": [{"env": "test", "job": "golden"}]})
    );
    // Another tenant (and the default one) sees nothing of it.
    assert_eq!(
        get_json(&router, "/loki/api/v1/labels", &unique("other")).await,
        json!({"status": "success", "data": []})
    );

    // A malformed query: 400 with the position.
    let (status, body) =
        call(&router, "GET", &format!("/loki/api/v1/query_range?query={}", enc(r#"{job="golden""#)), &[], vec![]).await;
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("logql: at column 14: expected"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Grafana's connection check.
    let v =
        get_json(&router, &format!("/loki/api/v1/query?query={}&time={s}", enc("vector(1)+vector(1)")), &tenant).await;
    assert_eq!(v["data"]["result"], json!([{"metric": {}, "value": [s as f64, "2"]}]));
    let (status, body) = call(&router, "GET", "/ready", &[], vec![]).await;
    assert_eq!((status, body), (200, b"ready\n".to_vec()));
}

async fn loki_protobuf_snappy_push(backend: Backend) {
    let logging = logging(backend.store.clone(), config());
    let router = loki_router(logging.clone());
    let tenant = unique("proto");
    let ts = now_ns() - 1_000_000_000;
    let raw = golden_push(r#"{job="shipper", host="h1"}"#, ts, "from a shipper", ("trace_id", "abc123"));
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let (status, resp) = call(
        &router,
        "POST",
        "/loki/api/v1/push",
        &[("content-type", "application/x-protobuf"), ("X-Scope-OrgID", &tenant)],
        body,
    )
    .await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));
    let got = support::lines(&logging, &tenant, r#"{job="shipper"} | trace_id="abc123""#).await.unwrap();
    assert_eq!(got, vec!["from a shipper"]);
    // A push with a bad entry is partly stored and answered 400 with the counts.
    let old = golden_push(r#"{job="shipper"}"#, 1_000_000_000, "ancient", ("k", "v"));
    let (status, resp) = call(
        &router,
        "POST",
        "/loki/api/v1/push",
        &[("content-type", "application/x-protobuf"), ("X-Scope-OrgID", &tenant)],
        snap::raw::Encoder::new().compress_vec(&old).unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&resp).contains("too_old=1"), "{}", String::from_utf8_lossy(&resp));
    let (status, _) = call(
        &router,
        "POST",
        "/loki/api/v1/push",
        &[("content-type", "application/x-protobuf")],
        b"not snappy".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(support::lines(&logging, &tenant, r#"{job="shipper"}"#).await.unwrap(), vec!["from a shipper"]);
}

async fn otlp_logs_map_to_labels_and_metadata(backend: Backend) {
    let logging = logging(backend.store.clone(), config());
    let tenant = unique("otlp");
    let service = unique("checkout");
    let router = otlp_http_router(logging.clone());
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "host.name", "value": {"stringValue": "node-1"}}
        ]},
        "scopeLogs": [{"scope": {"name": "payments"}, "logRecords": [{
            "timeUnixNano": (now_ns() - 1_000_000).to_string(),
            "severityText": "ERROR",
            "body": {"stringValue": "payment failed"},
            "attributes": [{"key": "order.id", "value": {"stringValue": "o-42"}}],
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174"
        }]}]
    }]});
    let (status, resp) = call(
        &router,
        "POST",
        "/v1/logs",
        &[("content-type", "application/json"), ("X-Scope-OrgID", &tenant)],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let q = format!(
        r#"{{service_name="{service}"}} | detected_level="error" | order_id="o-42" | line_format "{{{{.trace_id}}}} {{{{.host_name}}}}""#
    );
    assert_eq!(support::lines(&logging, &tenant, &q).await.unwrap(), vec!["5b8efff798038103d269b633813fc60c node-1"]);

    // The gRPC receiver, as the collector's OTLP port serves it.
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(meshwork_logging::OtlpLogsService::server(logging.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = LogsServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let mut req: ExportLogsServiceRequest = serde_json::from_value(body).unwrap();
    if let Some(r) = req.resource_logs[0].scope_logs[0].log_records.first_mut() {
        r.body = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("over grpc".into())),
        });
    }
    let mut request = tonic::Request::new(req);
    request.metadata_mut().insert("x-scope-orgid", tenant.parse().unwrap());
    let resp = client.export(request).await.unwrap().into_inner();
    assert!(resp.partial_success.is_none());
    let got = support::lines(&logging, &tenant, &format!(r#"{{service_name="{service}"}} |= "grpc""#)).await.unwrap();
    assert_eq!(got, vec!["over grpc"]);
    server.abort();
}

async fn self_logs_ship_tracing_events(backend: Backend) {
    use tracing_subscriber::layer::SubscriberExt;
    let logging: Arc<Logging> = logging(backend.store.clone(), config());
    let layer = meshwork_logging::self_logs(logging.clone(), Arc::new(meshwork_common::SystemClock), "meshwork");
    let marker = unique("marker");
    let subscriber = tracing_subscriber::registry().with(layer.clone());
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!(target: "meshwork_orders::service", trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", order = %marker, "payment declined");
        tracing::info!(target: "h2::proto", marker = %marker, "not a meshwork crate");
    });
    layer.log(
        "gateway",
        "info",
        format!("method=/meshwork.orders.v1.Orders/GetOrder grpc_status=0 duration_ms=3 marker={marker}"),
        None,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let q =
        format!(r#"{{service="orders", level="error"}} |= "{marker}" | trace_id="4bf92f3577b34da6a3ce929d0e0e4736""#);
    loop {
        let got = support::lines(&logging, "meshwork", &q).await.unwrap();
        if got.len() == 1 {
            assert!(got[0].starts_with("level=error msg=\"payment declined\""), "{}", got[0]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the event did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let q = format!(r#"{{service=~"meshwork|gateway"}} |= "{marker}""#);
    while support::lines(&logging, "meshwork", &q).await.unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the other lines did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(layer.dropped(), 0);
}

on_every_backend!(
    loki_api_answers_in_lokis_shapes,
    loki_protobuf_snappy_push,
    otlp_logs_map_to_labels_and_metadata,
    self_logs_ship_tracing_events
);
