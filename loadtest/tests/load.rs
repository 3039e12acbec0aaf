//! `meshwork load` against real in-process gRPC servers on 127.0.0.1:0: the URL shortener on
//! the common server builder (reflection v1 + v1alpha) and a health server with reflection
//! v1alpha only. Reports are read back from the files `-o` writes.

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use meshwork_loadtest::LoadArgs;
use meshwork_proto::pb::urlshortener::v1 as pb;
use meshwork_test_support::{TestServer, context, memory_store};
use pb::url_shortener_client::UrlShortenerClient;
use serde_json::Value;
use tokio::sync::oneshot;

const SVC: &str = "meshwork.urlshortener.v1.UrlShortener";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

fn args(flags: &[&str]) -> LoadArgs {
    let args = Cli::try_parse_from(std::iter::once("load").chain(flags.iter().copied())).unwrap().args;
    args.validate().unwrap();
    args
}

struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// The real URL shortener on a memory store (the shared test harness).
async fn shortener() -> TestServer {
    TestServer::hosting(meshwork_urlshortener::hosted, &context(memory_store())).await
}

/// A health server whose only reflection service is v1alpha (as servers of the grpcurl 1.8
/// era have).
async fn v1alpha_only() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder().add_service(health).add_service(reflection).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stopped.await;
            },
        ),
    );
    Server { addr, _stop: stop }
}

async fn client(addr: SocketAddr) -> UrlShortenerClient<tonic::transport::Channel> {
    UrlShortenerClient::connect(format!("http://{addr}")).await.unwrap()
}

async fn json_report(flags: &[&str], dir: &Path) -> Value {
    let out = dir.join("report.json");
    let mut all: Vec<&str> = flags.to_vec();
    let out_str = out.to_str().unwrap();
    all.extend(["-O", "json", "-o", out_str]);
    meshwork_loadtest::run_async(&args(&all)).await.unwrap();
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_carries_ghz_fields_and_types() {
    let server = shortener().await;
    let mut c = client(server.addr).await;
    c.shorten(pb::ShortenRequest {
        long_url: "https://example.com/a".into(),
        custom_alias: "load01".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = server.addr.to_string();
    let call = format!("{SVC}/Resolve");
    let r = json_report(
        &[
            "--insecure",
            "--call",
            &call,
            "-d",
            r#"{"code":"load01"}"#,
            "-n",
            "500",
            "-c",
            "10",
            "--connections",
            "2",
            &host,
        ],
        dir.path(),
    )
    .await;

    assert_eq!(r["count"], 500);
    for field in ["total", "average", "fastest", "slowest"] {
        assert!(r[field].as_u64().is_some_and(|v| v > 0), "{field} must be a positive integer (ns): {}", r[field]);
    }
    assert!(r["fastest"].as_u64() <= r["average"].as_u64() && r["average"].as_u64() <= r["slowest"].as_u64());
    assert!(r["rps"].as_f64().is_some_and(|v| v > 0.0));
    assert_eq!(r["statusCodeDistribution"], serde_json::json!({"OK": 500}));
    assert_eq!(r["errorDistribution"], serde_json::json!({}));
    let ld = r["latencyDistribution"].as_array().unwrap();
    let pct: Vec<f64> = ld.iter().map(|l| l["percentage"].as_f64().unwrap()).collect();
    assert_eq!(pct, vec![10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9]);
    assert!(ld[0]["percentage"].is_u64(), "integer percentages stay integers as in ghz");
    assert!(ld.iter().all(|l| l["latency"].is_u64()));
    let hist = r["histogram"].as_array().unwrap();
    assert_eq!(hist.len(), 11);
    assert!(hist.iter().all(|b| b["mark"].is_f64() && b["count"].is_u64() && b["frequency"].is_number()));
    assert_eq!(hist.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 500);
    assert_eq!(r["endReason"], "normal");
    assert!(r["date"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r["options"]["call"], call.as_str());
    assert_eq!(r["options"]["concurrency"], 10);
    assert!(r["details"].is_array());

    // The same run as HTML and as summary text.
    let html = dir.path().join("report.html");
    let html_str = html.to_str().unwrap();
    meshwork_loadtest::run_async(&args(&[
        "--insecure",
        "--call",
        &call,
        "-d",
        r#"{"code":"load01"}"#,
        "-n",
        "200",
        "-O",
        "html",
        "-o",
        html_str,
        &host,
    ]))
    .await
    .unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.matches("<svg").count() == 2, "two inline charts");
    let summary = dir.path().join("summary.txt");
    let summary_str = summary.to_str().unwrap();
    meshwork_loadtest::run_async(&args(&[
        "--insecure",
        "--call",
        &call,
        "-d",
        r#"{"code":"load01"}"#,
        "-n",
        "100",
        "-o",
        summary_str,
        &host,
    ]))
    .await
    .unwrap();
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.contains("Summary:") && text.contains("Requests/sec:") && text.contains("[OK]\t100 responses"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_on_http_200_count_by_status() {
    let server = shortener().await;
    let dir = tempfile::tempdir().unwrap();
    let host = server.addr.to_string();
    // Through a protoset this time, not reflection.
    let protoset = dir.path().join("meshwork.protoset");
    std::fs::write(&protoset, meshwork_proto::FILE_DESCRIPTOR_SET).unwrap();
    let call = format!("{SVC}/Resolve");
    let r = json_report(
        &[
            "--insecure",
            "--protoset",
            protoset.to_str().unwrap(),
            "--call",
            &call,
            "-d",
            r#"{"code":"nosuchcode"}"#,
            "-n",
            "60",
            "-c",
            "4",
            &host,
        ],
        dir.path(),
    )
    .await;
    assert_eq!(r["count"], 60);
    assert_eq!(r["statusCodeDistribution"], serde_json::json!({"NotFound": 60}));
    let errors = r["errorDistribution"].as_object().unwrap();
    assert_eq!(errors.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 60);
    assert!(errors.keys().all(|k| k.starts_with("rpc error: code = NotFound desc = ")), "{errors:?}");
    // ghz reports latencies of successful calls only.
    assert_eq!(r["latencyDistribution"], serde_json::json!([]));

    // And through the .proto source, compiled in-process (ghz's --proto / -i).
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let proto = proto_root.join("meshwork/urlshortener/v1/urlshortener.proto");
    let r = json_report(
        &[
            "--insecure",
            "--proto",
            proto.to_str().unwrap(),
            "-i",
            proto_root.to_str().unwrap(),
            "--call",
            &call,
            "-d",
            r#"{"code":"nosuchcode"}"#,
            "-n",
            "20",
            &host,
        ],
        dir.path(),
    )
    .await;
    assert_eq!(r["statusCodeDistribution"], serde_json::json!({"NotFound": 20}));

    // Bad input is caught before any call: unknown field, unknown method.
    let bad =
        args(&["--insecure", "--protoset", protoset.to_str().unwrap(), "--call", &call, "-d", r#"{"nope":1}"#, &host]);
    assert!(meshwork_loadtest::run_async(&bad).await.unwrap_err().to_string().contains("nope"));
    let bad = args(&["--insecure", "--call", &format!("{SVC}/Nope"), &host]);
    assert!(meshwork_loadtest::run_async(&bad).await.unwrap_err().to_string().contains("Nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_only_servers_work() {
    let server = v1alpha_only().await;
    // The server really has no v1 reflection.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut v1 = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let err = v1.server_reflection_info(futures::stream::iter([req])).await.map(|_| ()).unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    let dir = tempfile::tempdir().unwrap();
    let r = json_report(
        &[
            "--insecure",
            "--call",
            "grpc.health.v1.Health/Check",
            "-d",
            r#"{"service":""}"#,
            "-n",
            "100",
            &server.addr.to_string(),
        ],
        dir.path(),
    )
    .await;
    assert_eq!(r["statusCodeDistribution"], serde_json::json!({"OK": 100}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_per_request() {
    let server = shortener().await;
    let dir = tempfile::tempdir().unwrap();
    let data = r#"{"long_url":"https://example.com/{{.RequestNumber}}/{{randomString 8}}","custom_alias":"t-{{.RequestNumber}}-{{randomInt 0 9}}"}"#;
    let meta = r#"{"x-request-id":"{{newUUID}}"}"#;
    let r = json_report(
        &[
            "--insecure",
            "--call",
            &format!("{SVC}/Shorten"),
            "-d",
            data,
            "-m",
            meta,
            "-n",
            "40",
            "-c",
            "8",
            &server.addr.to_string(),
        ],
        dir.path(),
    )
    .await;
    // A repeated alias would be ALREADY_EXISTS: every request got its own.
    assert_eq!(r["statusCodeDistribution"], serde_json::json!({"OK": 40}));
    let mut c = client(server.addr).await;
    let mut randoms = std::collections::HashSet::new();
    for i in 0..40 {
        let mut found = None;
        for d in 0..9 {
            let req = pb::GetLinkRequest { code: format!("t-{i}-{d}") };
            if let Ok(resp) = c.get_link(req).await {
                found = resp.into_inner().link.map(|l| l.long_url);
            }
        }
        let url = found.unwrap_or_else(|| panic!("no link for request {i}"));
        let tail = url.strip_prefix(&format!("https://example.com/{i}/")).unwrap();
        assert_eq!(tail.len(), 8);
        randoms.insert(tail.to_string());
    }
    assert_eq!(randoms.len(), 40, "randomString differs per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rps_holds_the_rate_over_ten_seconds() {
    let server = shortener().await;
    let dir = tempfile::tempdir().unwrap();
    let r = json_report(
        &[
            "--insecure",
            "--call",
            "grpc.health.v1.Health/Check",
            "-d",
            r#"{"service":""}"#,
            "--rps",
            "300",
            "-z",
            "10s",
            "-c",
            "20",
            &server.addr.to_string(),
        ],
        dir.path(),
    )
    .await;
    let count = r["count"].as_f64().unwrap();
    let rps = r["rps"].as_f64().unwrap();
    assert!((count - 3000.0).abs() <= 150.0, "count {count} not within 5% of 3000");
    assert!((rps - 300.0).abs() <= 15.0, "rps {rps} not within 5% of 300");
    assert_eq!(r["endReason"], "timeout");
    assert_eq!(r["statusCodeDistribution"]["OK"].as_f64(), Some(count));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_runs_a_zipf_mix_and_appends_its_table() {
    let server = shortener().await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("mix.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
name = "mini-mix"
description = "90% Resolve over Zipf keys, 10% Shorten."
concurrency = 8
total = 400

[[setup]]
call = "{SVC}/Shorten"
data = '{{"long_url":"https://example.com/z/{{{{.RequestNumber}}}}"}}'
count = 50
capture = "code"
into = "codes"

[[mix]]
name = "Resolve"
call = "{SVC}/Resolve"
weight = 90
data = '{{"code":"{{{{.Key}}}}"}}'
keys = "codes"
distribution = "zipf"

[[mix]]
name = "Shorten"
call = "{SVC}/Shorten"
weight = 10
data = '{{"long_url":"https://example.com/new/{{{{randomString 10}}}}"}}'
"#
        ),
    )
    .unwrap();
    let md = dir.path().join("BENCH.md");
    std::fs::write(&md, "# Benchmarks\n").unwrap();
    let a = args(&[
        "--scenario",
        scenario.to_str().unwrap(),
        "--append-to",
        md.to_str().unwrap(),
        &server.addr.to_string(),
    ]);
    meshwork_loadtest::run_async(&a).await.unwrap();
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.starts_with("# Benchmarks\n"), "appended, not replaced");
    assert!(text.contains("## Scenario: mini-mix"));
    let row = |name: &str| text.lines().find(|l| l.starts_with(&format!("| {name} |"))).unwrap().to_string();
    let cells = |line: String| line.split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>();
    let resolve = cells(row("Resolve"));
    let shorten = cells(row("Shorten"));
    let all = cells(row("all"));
    assert_eq!(all[3], "400");
    assert_eq!(all[5], "0", "no errors: every Resolve hit a created code");
    let resolves: u64 = resolve[3].parse().unwrap();
    let shortens: u64 = shorten[3].parse().unwrap();
    assert_eq!(resolves + shortens, 400);
    assert!((300..=390).contains(&resolves), "about 90% Resolve: {resolves}");
}
