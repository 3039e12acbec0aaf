//! End to end: the log store in the real `meshwork up`.
//!
//! - Lines pushed through the gateway (gRPC) come back from a LogQL query through the gateway
//!   and from the Loki HTTP API (`--loki-listen`) in Loki's JSON shape; a tail through the
//!   gateway gets every matching line pushed after it subscribed, in order, within 1 s; a
//!   malformed query names its column.
//! - `meshwork up` ships its own log lines into tenant `meshwork` (labels `service`, `level`).
//! - `kill -9` during a sustained push, then a restart on the same data dir: every
//!   acknowledged line is there, and none twice.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshwork_proto::pb::logging::v1 as pb;
use pb::logging_client::LoggingClient;
use support::{Mesh, http_get, signal};
use tonic::transport::Channel;

fn now() -> prost_types::Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn hour_ago() -> prost_types::Timestamp {
    let mut t = now();
    t.seconds -= 3600;
    t
}

fn push(tenant: &str, labels: &str, lines: &[String]) -> pb::PushRequest {
    let entries =
        lines.iter().map(|l| pb::Entry { timestamp: Some(now()), line: l.clone(), ..Default::default() }).collect();
    pb::PushRequest { tenant: tenant.into(), streams: vec![pb::Stream { labels: labels.into(), entries }] }
}

async fn lines_of(client: &mut LoggingClient<Channel>, tenant: &str, logql: &str) -> Vec<String> {
    let request = pb::QueryRangeRequest {
        tenant: tenant.into(),
        logql: logql.into(),
        start: Some(hour_ago()),
        end: Some(prost_types::Timestamp { seconds: now().seconds + 60, nanos: 0 }),
        limit: 50_000,
        ..Default::default()
    };
    let answer = client.query_range(request).await.unwrap().into_inner();
    answer.streams.into_iter().flat_map(|s| s.entries.into_iter().map(|e| e.line)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_through_the_gateway_loki_api_self_logs_and_a_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let (mut mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces"]);
    let (addr, loki) = (mesh.addr, mesh.loki.unwrap());
    let mut client = LoggingClient::connect(format!("http://{addr}")).await.unwrap();

    // Push and query through the gateway, and through the Loki HTTP API.
    let lines: Vec<String> =
        (0..50).map(|i| format!("order={i} status={}", if i % 5 == 0 { "declined" } else { "ok" })).collect();
    let pushed = client.push(push("shop", r#"{service="api", level="info"}"#, &lines)).await.unwrap().into_inner();
    assert_eq!((pushed.accepted, pushed.rejected), (50, 0));
    let declined = lines_of(&mut client, "shop", r#"{service="api"} |= "declined""#).await;
    assert_eq!(declined.len(), 10, "{declined:?}");
    assert!(lines_of(&mut client, "other", r#"{service="api"}"#).await.is_empty(), "tenants are isolated");
    let (status, _, body) = http_get(
        loki,
        "/loki/api/v1/query_range?query=%7Bservice%3D%22api%22%7D%20%7C%3D%20%22declined%22&limit=100",
        &[("X-Scope-OrgID", "shop")],
    );
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "success", "{json}");
    assert_eq!(json["data"]["resultType"], "streams", "{json}");
    let values: usize =
        json["data"]["result"].as_array().unwrap().iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert_eq!(values, 10, "{json}");
    let bad = client
        .query_range(pb::QueryRangeRequest { tenant: "shop".into(), logql: "{service=}".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("column"), "{bad:?}");

    // Tail through the gateway: every matching line pushed after subscribing, in order.
    let mut tail = client
        .tail(pb::TailRequest {
            tenant: "shop".into(),
            logql: r#"{service="api"} |= "error""#.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: Vec<String> = (0..20).map(|i| format!("error code={i}")).collect();
    let started = Instant::now();
    let mut pusher = client.clone();
    for line in &sent {
        let noise = format!("fine {line}").replace("error", "all good");
        pusher.push(push("shop", r#"{service="api", level="error"}"#, &[line.clone(), noise])).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < sent.len() {
        let message =
            tokio::time::timeout(Duration::from_secs(5), tail.message()).await.expect("tail answers").unwrap().unwrap();
        seen.extend(message.stream.unwrap().entries.into_iter().map(|e| e.line));
    }
    assert_eq!(seen, sent, "every matching line, in order");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop(tail);

    // meshwork's own log lines land in tenant `meshwork`, with `service` and `level` labels.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let values = client
            .label_values(pb::LabelValuesRequest {
                tenant: "meshwork".into(),
                name: "service".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().values)
            .unwrap_or_default();
        if !values.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no self-logs in tenant meshwork");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The gateway's access log: one line per call, with its method, grpc-status and duration.
    let deadline = Instant::now() + Duration::from_secs(20);
    let access = loop {
        let query = r#"{service="gateway"} |= "meshwork.logging.v1.Logging/Push""#;
        let found = lines_of(&mut client, "meshwork", query).await;
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "no access-log line of the Push calls");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let line = &access[0];
    assert!(line.contains("msg=call") && line.contains("grpc_status=0") && line.contains("duration_ms="), "{line}");

    // kill -9 in the middle of a sustained push: every acknowledged line survives, once.
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pushers = Vec::new();
    for w in 0..8 {
        let (mut c, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        pushers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<String> = (0..100).map(|i| format!("crash w={w} n={n} i={i}")).collect();
                n += 1;
                match c.push(push("crash", r#"{service="ingest"}"#, &batch)).await {
                    Ok(r) if r.get_ref().accepted == 100 => acked.lock().unwrap().extend(batch),
                    Ok(r) => panic!("a clean batch was partly refused: {:?}", r.into_inner()),
                    Err(_) => break,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 20_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&mesh.child, "KILL");
    let _ = mesh.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pushers {
        let _ = p.await;
    }
    drop(mesh);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 1_000, "too few lines acknowledged before the kill: {}", acked.len());

    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces"]);
    let mut client = LoggingClient::connect(format!("http://{}", mesh.addr)).await.unwrap();
    let stored = lines_of(&mut client, "crash", r#"{service="ingest"}"#).await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in &stored {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "lines stored twice: {twice:?}");
    let lost: Vec<_> = acked.iter().filter(|l| !counts.contains_key(l.as_str())).take(5).collect();
    assert!(lost.is_empty(), "acknowledged lines lost ({} acked, {} stored): {lost:?}", acked.len(), stored.len());
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}
