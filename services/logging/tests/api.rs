//! The log store served for real over gRPC: tenants isolated, the bad-input catalogue of every
//! RPC (the right code, or a partial-success count, and nothing wrong stored), the rate limit,
//! retention, a live tail receiving every matching line in order within a second, and restart
//! without a clean shutdown (every acknowledged line there once). On every backend.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::ManualClock;
use meshwork_logging::engine::Config;
use meshwork_logging::generators::Format;
use meshwork_logging::service::Logging;
use meshwork_proto::pb::logging::v1 as pb;
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::{TestServer, on_every_backend};
use pb::logging_client::LoggingClient;
use support::*;
use tonic::Code;

fn ts(ns: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds: ns.div_euclid(1_000_000_000), nanos: ns.rem_euclid(1_000_000_000) as i32 })
}

fn entry(ns: i64, line: &str) -> pb::Entry {
    pb::Entry { timestamp: ts(ns), line: line.into(), structured_metadata: vec![] }
}

fn push(tenant: &str, labels: &str, entries: Vec<pb::Entry>) -> pb::PushRequest {
    pb::PushRequest { tenant: tenant.into(), streams: vec![pb::Stream { labels: labels.into(), entries }] }
}

fn query(tenant: &str, logql: &str) -> pb::QueryRangeRequest {
    pb::QueryRangeRequest {
        tenant: tenant.into(),
        logql: logql.into(),
        start: ts(now_ns() - 3_600_000_000_000),
        end: ts(now_ns() + 1_000_000_000),
        limit: 1000,
        direction: pb::Direction::Forward as i32,
        ..Default::default()
    }
}

fn lines_of(r: &pb::QueryResponse) -> Vec<String> {
    r.streams.iter().flat_map(|s| s.entries.iter().map(|e| e.line.clone())).collect()
}

async fn serve(logging: Arc<Logging>) -> (TestServer, LoggingClient<tonic::transport::Channel>) {
    let server = TestServer::start(vec![meshwork_logging::hosted_with(logging)]).await;
    let client = LoggingClient::new(server.channel.clone());
    (server, client)
}

async fn tenants_are_isolated(backend: Backend) {
    let (_server, mut c) = serve(logging(backend.store.clone(), config())).await;
    let (a, b) = (unique("ta"), unique("tb"));
    let now = now_ns();
    c.push(push(&a, r#"{app="shared"}"#, vec![entry(now, "secret of tenant a")])).await.unwrap();
    c.push(push(&b, r#"{app="shared"}"#, vec![entry(now, "line of tenant b")])).await.unwrap();
    let r = c.query_range(query(&a, r#"{app="shared"}"#)).await.unwrap().into_inner();
    assert_eq!(lines_of(&r), vec!["secret of tenant a"]);
    let r = c.query_range(query(&b, r#"{app="shared"} |= "secret""#)).await.unwrap().into_inner();
    assert!(r.streams.is_empty());
    let r = c
        .query(pb::QueryRequest {
            tenant: b.clone(),
            logql: r#"sum(count_over_time({app=~".+"}[1h]))"#.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result_type, "vector");
    assert_eq!(r.series[0].points[0].value, 1.0);
    let values = c
        .label_values(pb::LabelValuesRequest { tenant: unique("tc"), name: "app".into(), ..Default::default() })
        .await
        .unwrap();
    assert!(values.into_inner().values.is_empty());
    let labels = c.labels(pb::LabelsRequest { tenant: a.clone(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(labels.values, vec!["app"]);
    let series = c
        .series(pb::SeriesRequest { tenant: a, r#match: vec![r#"{app="shared"}"#.into()], ..Default::default() })
        .await
        .unwrap();
    assert_eq!(series.into_inner().series.len(), 1);
}

async fn bad_input_is_refused_and_stores_nothing_wrong(backend: Backend) {
    let (_server, mut c) = serve(logging(backend.store.clone(), config())).await;
    let t = unique("bad");
    let now = now_ns();
    // Refused whole.
    for (req, field) in [
        (push("", r#"{a="b"}"#, vec![entry(now, "x")]), "tenant"),
        (push("a/b", r#"{a="b"}"#, vec![entry(now, "x")]), "tenant"),
        (push(&t, r#"{a="b"}"#, (0..100_001).map(|_| entry(now, "")).collect()), "streams"),
    ] {
        let e = c.push(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{e:?}");
    }
    // Partial success: each bad entry counted by its reason, the good ones stored.
    let many: Vec<String> = (0..16).map(|i| format!("l{i}=\"v\"")).collect();
    let req = pb::PushRequest {
        tenant: t.clone(),
        streams: vec![
            pb::Stream {
                labels: r#"{app="ok"}"#.into(),
                entries: vec![
                    entry(now, "good 1"),
                    entry(now, &"x".repeat(256 * 1024 + 1)),
                    entry(now - 8 * 86_400 * 1_000_000_000, "too old"),
                    entry(now + 3_600 * 1_000_000_000, "future"),
                    pb::Entry { timestamp: None, line: "no time".into(), structured_metadata: vec![] },
                    entry(now - 2 * 3_600 * 1_000_000_000, "behind the window"),
                    pb::Entry {
                        timestamp: ts(now),
                        line: "bad metadata".into(),
                        structured_metadata: vec![pb::Label { name: "bad name".into(), value: "v".into() }],
                    },
                    entry(now + 1, "good 2"),
                ],
            },
            pb::Stream { labels: r#"{app=broken}"#.into(), entries: vec![entry(now, "bad labels")] },
            pb::Stream { labels: format!("{{{}}}", many.join(",")), entries: vec![entry(now, "too many labels")] },
        ],
    };
    let r = c.push(req).await.unwrap().into_inner();
    assert_eq!(r.accepted, 2, "{r:?}");
    assert_eq!(r.rejected, 8, "{r:?}");
    for (reason, n) in [
        ("line_too_long", 1),
        ("too_old", 1),
        ("too_far_in_future", 1),
        ("missing_timestamp", 1),
        ("too_far_behind", 1),
        ("invalid_metadata", 1),
        ("invalid_labels", 1),
        ("too_many_labels", 1),
    ] {
        assert_eq!(r.rejected_by_reason.get(reason), Some(&n), "{reason}: {r:?}");
    }
    let all = c.query_range(query(&t, r#"{app=~".+"}"#)).await.unwrap().into_inner();
    assert_eq!(lines_of(&all), vec!["good 1", "good 2"]);
    let series = c
        .series(pb::SeriesRequest {
            tenant: t.clone(),
            r#match: vec![r#"{app=~".*", l0=~".*"}"#.into()],
            ..Default::default()
        })
        .await;
    assert_eq!(series.unwrap_err().code(), Code::InvalidArgument, "a selector matching everything is refused");

    // Malformed queries: the position and what was expected.
    for (logql, column) in
        [(r#"{app="ok""#, 10), (r#"{app="ok"} |= ok"#, 15), (r#"sum(rate({app="ok"}))"#, 20), ("app", 1)]
    {
        let e = c.query_range(query(&t, logql)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(&format!("logql: at column {column}: expected")), "{logql}: {}", e.message());
    }
    let mut q = query(&t, r#"{app="ok"}"#);
    q.limit = -1;
    assert_eq!(c.query_range(q).await.unwrap_err().code(), Code::InvalidArgument);
    let mut q = query(&t, r#"{app="ok"}"#);
    q.start = q.end;
    assert!(c.query_range(q).await.unwrap_err().message().starts_with("start"));
    let mut q = query(&t, r#"count_over_time({app="ok"}[1m])"#);
    q.step = Some(prost_types::Duration { seconds: 0, nanos: 1_000_000 });
    assert!(c.query_range(q).await.unwrap_err().message().starts_with("step"));
    let mut q = query(&t, r#"{app="ok"}"#);
    q.direction = 9;
    assert!(c.query_range(q).await.unwrap_err().message().starts_with("direction"));
    let e = c
        .label_values(pb::LabelValuesRequest { tenant: t.clone(), name: "no-dash".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("name"));
    let e = c.series(pb::SeriesRequest { tenant: t.clone(), ..Default::default() }).await.unwrap_err();
    assert!(e.message().starts_with("match"));
    let e = c
        .tail(pb::TailRequest { tenant: t.clone(), logql: r#"rate({app="ok"}[1m])"#.into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Still exactly the two good lines.
    let all = c.query_range(query(&t, r#"{app=~".+"}"#)).await.unwrap().into_inner();
    assert_eq!(lines_of(&all).len(), 2);
}

async fn rate_limit_is_resource_exhausted(backend: Backend) {
    let config = Config { rate_bytes_per_sec: 100.0, burst_bytes: 1000.0, ..config() };
    let (_server, mut c) = serve(logging(backend.store.clone(), config)).await;
    let t = unique("rate");
    let now = now_ns();
    c.push(push(&t, r#"{app="r"}"#, vec![entry(now, &"a".repeat(900))])).await.unwrap();
    let e = c.push(push(&t, r#"{app="r"}"#, vec![entry(now, &"b".repeat(900))])).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Another tenant has its own budget; the refused push stored nothing.
    c.push(push(&unique("rate2"), r#"{app="r"}"#, vec![entry(now, "small")])).await.unwrap();
    let r = c.query_range(query(&t, r#"{app="r"} |= "b""#)).await.unwrap().into_inner();
    assert!(r.streams.is_empty());
}

async fn tail_receives_every_matching_line_in_order(backend: Backend) {
    let logging = logging(backend.store.clone(), config());
    let (_server, mut c) = serve(logging).await;
    let t = unique("tail");
    let mut tail = c
        .tail(pb::TailRequest { tenant: t.clone(), logql: r#"{service="x"} |= "error""#.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let now = now_ns();
    let mut want = Vec::new();
    for i in 0..20 {
        let lines: Vec<pb::Entry> = (0..10)
            .map(|j| {
                let text = if (i + j) % 3 == 0 { format!("error {i}-{j}") } else { format!("ok {i}-{j}") };
                if text.starts_with("error") {
                    want.push(text.clone());
                }
                entry(now + i * 100 + j, &text)
            })
            .collect();
        c.push(push(&t, r#"{service="x"}"#, lines)).await.unwrap();
        c.push(push(&t, r#"{service="y"}"#, vec![entry(now, "error elsewhere")])).await.unwrap();
    }
    let pushed = std::time::Instant::now();
    let mut got = Vec::new();
    let mut seq = 0;
    while got.len() < want.len() {
        let m = tokio::time::timeout(Duration::from_secs(1), tail.next())
            .await
            .expect("a line within 1 s")
            .unwrap()
            .unwrap();
        seq += 1;
        assert_eq!(m.sequence, seq);
        got.extend(m.stream.unwrap().entries.into_iter().map(|e| e.line));
    }
    assert!(pushed.elapsed() < Duration::from_secs(1));
    assert_eq!(got, want);
    assert!(tokio::time::timeout(Duration::from_millis(200), tail.next()).await.is_err(), "nothing else");
    // A reconnecting client replays from `start` and skips what it already saw.
    let mut again = c
        .tail(pb::TailRequest {
            tenant: t,
            logql: r#"{service="x"} |= "error""#.into(),
            start: ts(now - 1),
            limit: 1000,
            from_sequence: 5,
        })
        .await
        .unwrap()
        .into_inner();
    let first = again.next().await.unwrap().unwrap();
    assert_eq!(first.sequence, 6);
    assert_eq!(first.stream.unwrap().entries[0].line, want[5]);
}

async fn restart_keeps_every_acknowledged_line_once(backend: Backend) {
    let config = config();
    let t = unique("restart");
    let mut acknowledged = Vec::new();
    let lines = corpus(Format::OpenSsh, 9, if backend.store.backend() == "etcd" { 600 } else { 3000 });
    let first = logging(backend.store.clone(), config.clone());
    for (i, batch) in lines.chunks(150).enumerate() {
        first.push(&t, vec![stream(r#"{job="ssh"}"#, batch)]).await.unwrap();
        acknowledged.extend(batch.iter().map(|(_, l)| l.clone()));
        if i % 5 == 2 {
            // Let the flusher cut and truncate while pushes continue.
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    // No clean shutdown: the service is dropped with heads unflushed (a flush already under
    // way finishes first, as a process would have finished or not started it).
    let engine = Arc::downgrade(first.engine().await.unwrap());
    drop(first);
    while engine.strong_count() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = logging(backend.store.clone(), config);
    let got = support::lines(&second, &t, r#"{job="ssh"}"#).await.unwrap();
    assert_eq!(got.len(), acknowledged.len());
    assert_eq!(sorted(got), sorted(acknowledged));
}

async fn retention_hides_then_deletes_old_chunks(backend: Backend) {
    let clock = ManualClock::new(now_ns() / 1_000_000);
    let t = unique("ret");
    let mut config = config();
    config.retention.insert(t.clone(), Duration::from_secs(3600));
    config.sweep_interval = Duration::from_secs(3600);
    let logging = Logging::new(backend.store.clone(), Arc::new(clock.clone()), config);
    let base = clock.unix_ns_now();
    let old: Vec<(i64, String)> = (0..50).map(|i| (base - 30 * 60 * 1_000_000_000 + i, format!("old {i}"))).collect();
    logging.push(&t, vec![stream(r#"{app="r"}"#, &old)]).await.unwrap();
    logging.flush().await.unwrap();
    let engine = logging.engine().await.unwrap();
    let chunk_keys = || async {
        let all = meshwork_storage::scan_all(
            engine.store(),
            meshwork_storage::KeyRange::prefix(meshwork_logging::keys::tenant_root(&t) + "c/"),
            meshwork_storage::Direction::Forward,
        )
        .await
        .unwrap();
        all.into_iter().map(|e| e.key).collect::<std::collections::BTreeSet<_>>()
    };
    // The old lines' chunk (data, bloom, meta). The fresh lines below may be cut into a chunk of
    // their own by the background flusher (the manual clock ages their head), which stays.
    let old_chunk = chunk_keys().await;
    assert!(!old_chunk.is_empty());
    clock.advance(20 * 60 * 1000);
    let fresh: Vec<(i64, String)> = (0..5).map(|i| (clock.unix_ns_now() + i, format!("fresh {i}"))).collect();
    logging.push(&t, vec![stream(r#"{app="r"}"#, &fresh)]).await.unwrap();
    let query_all = |logging: Arc<Logging>, t: String| async move {
        let r = logging
            .query(meshwork_logging::service::QueryParams {
                tenant: t,
                logql: r#"{app="r"}"#.into(),
                start: Some(base - 2 * 3_600_000_000_000),
                end: Some(base + 3_600_000_000_000),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        match r {
            meshwork_logging::service::QueryResult::Streams(s, _) => s.into_iter().map(|x| x.1.len()).sum::<usize>(),
            _ => 0,
        }
    };
    assert_eq!(query_all(logging.clone(), t.clone()).await, 55);
    // The old lines are now past the hour: gone from queries before any sweep.
    clock.advance(40 * 60 * 1000);
    assert_eq!(query_all(logging.clone(), t.clone()).await, 5);
    assert!(engine.sweep().await.unwrap() >= 1);
    let left = chunk_keys().await;
    assert!(left.is_disjoint(&old_chunk), "the old chunk's data is deleted: {left:?}");
    assert_eq!(query_all(logging, t).await, 5);
}

trait ClockExt {
    fn unix_ns_now(&self) -> i64;
}

impl ClockExt for ManualClock {
    fn unix_ns_now(&self) -> i64 {
        meshwork_common::Clock::unix_ns(self) as i64
    }
}

on_every_backend!(
    tenants_are_isolated,
    bad_input_is_refused_and_stores_nothing_wrong,
    rate_limit_is_resource_exhausted,
    tail_receives_every_matching_line_in_order,
    restart_keeps_every_acknowledged_line_once,
    retention_hides_then_deletes_old_chunks,
);

/// The embedded store reopened on the same directory after the service was dropped without a
/// clean shutdown while flushes were cutting chunks: every acknowledged line is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_reopen_on_the_same_dir() {
    reopen_on_the_same_dir(|dir| async move {
        let store: meshwork_storage::DynStore =
            Arc::new(meshwork_storage::embedded::EmbeddedStore::open(&dir).await.unwrap());
        store
    })
    .await;
}

/// The same on the log store's own embedded database (`meshwork up`'s `<data-dir>/logs`: no
/// changelog, no journal compression).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn own_embedded_database_reopen_on_the_same_dir() {
    reopen_on_the_same_dir(|dir| async move { meshwork_logging::store::open_embedded(&dir).await.unwrap() }).await;
}

async fn reopen_on_the_same_dir<F, Fut>(open: F)
where
    F: Fn(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = meshwork_storage::DynStore>,
{
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let t = unique("reopen");
    let lines = corpus(Format::Hdfs, 5, 4000);
    {
        let store = open(dir.path().to_path_buf()).await;
        let weak = Arc::downgrade(&store);
        let first = logging(store, config.clone());
        let mut tasks = Vec::new();
        for (k, part) in lines.chunks(1000).enumerate() {
            let first = first.clone();
            let t = t.clone();
            let part = part.to_vec();
            tasks.push(tokio::spawn(async move {
                for batch in part.chunks(100) {
                    first.push(&t, vec![stream(&format!(r#"{{job="hdfs", w="{k}"}}"#), batch)]).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        drop(first);
        // Wait until every handle of the store is gone (a flush in flight finishes first).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while weak.strong_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "the store is still held");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let store = open(dir.path().to_path_buf()).await;
    let second = logging(store, config);
    let got = support::lines(&second, &t, r#"{job="hdfs"}"#).await.unwrap();
    assert_eq!(sorted(got), sorted(lines.into_iter().map(|(_, l)| l).collect()));
}
