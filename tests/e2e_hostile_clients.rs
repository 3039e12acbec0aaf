//! Hostile HTTP/2 and HTTP/1.1 clients against the real gateway (`meshwork gateway --config`
//! in front of `meshwork serve echo`): rapid reset, CONTINUATION flood, HPACK bomb, SETTINGS /
//! PING / WINDOW_UPDATE floods, a zero window, too many streams, oversized headers and
//! messages, slowloris on HTTP/1.1 and HTTP/2, half-open connections. The attacks are
//! `tests/hostile/attack.py` (raw frames; the `h2` package's hpack), one after another on the
//! same gateway so that each one's figures are its own.
//!
//! For each attack: the gateway process stays up; its RSS (`VmRSS`, sampled every 20 ms) stays
//! within the attack's stated bound over the RSS just before it; the attacking connection is
//! closed or limited the way asserted (GOAWAY code, RST_STREAM, 408/431, time to close); and a
//! well-behaved tonic client calling `meshwork.echo.v1.Echo/Echo` throughout keeps a 100%
//! success rate with a p99 latency under [`P99_BOUND`].
//!
//! The gateway runs alone in its process (so that its RSS is the gateway's) with the default
//! limits, except two timeouts shortened so the suite fits its time: `header_read_timeout_ms`
//! 2000 (default 10000) and `h2_idle_timeout_ms` 3000 (default 120000). Set `HOSTILE_REPORT=1`
//! to print the figures table of docs/BENCHMARKS.md.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshwork_proto::pb::echo::v1::EchoRequest;
use meshwork_proto::pb::echo::v1::echo_client::EchoClient;
use serde_json::Value;
use support::{Mesh, free_addr};

/// The well-behaved client's p99 latency bound during every attack (a debug build on two
/// cores, sharing them with the attacker; unloaded calls take about 1 ms).
const P99_BOUND: Duration = Duration::from_millis(250);

/// The shortened timeouts of the gateway under attack (see the module docs).
const HEADER_TIMEOUT: Duration = Duration::from_millis(2000);
const IDLE_TIMEOUT: Duration = Duration::from_millis(3000);

/// The bound on the gateway's RSS over its RSS just before an attack, during and after it,
/// by default; attacks that make the gateway hold calls state their own.
const RSS_BOUND_MIB: u64 = 32;

const MIB: u64 = 1024;

/// The RSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the gateway process is alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// What the well-behaved client saw during one attack.
#[derive(Debug)]
struct Calls {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    p99: Duration,
    max: Duration,
}

/// A well-behaved client: two tasks on one HTTP/2 connection calling Echo one after another,
/// each call with a 5 s deadline.
struct Caller {
    runtime: tokio::runtime::Runtime,
    client: EchoClient<tonic::transport::Channel>,
}

impl Caller {
    fn new(addr: std::net::SocketAddr) -> Caller {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let client = runtime.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect to the gateway");
            EchoClient::new(channel)
        });
        Caller { runtime, client }
    }

    /// Calls until `stop` flips.
    fn run(&self, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Calls> {
        let client = self.client.clone();
        self.runtime.spawn(async move {
            let failed = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for worker in 0..2 {
                let (mut client, stop, failed) = (client.clone(), stop.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut first_error = None;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let message = format!("well-behaved {worker}-{n}");
                        let mut request =
                            tonic::Request::new(EchoRequest { message: message.clone(), ..Default::default() });
                        request.set_timeout(Duration::from_secs(5));
                        let started = Instant::now();
                        match client.echo(request).await {
                            Ok(answer) if answer.get_ref().message == message => {
                                latencies.push(started.elapsed());
                            }
                            Ok(answer) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                first_error.get_or_insert(format!("wrong answer {:?}", answer.get_ref().message));
                            }
                            Err(status) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                first_error.get_or_insert(status.to_string());
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    (latencies, first_error)
                }));
            }
            let mut latencies = Vec::new();
            let mut first_error = None;
            for task in tasks {
                let (mut l, e) = task.await.expect("caller task");
                latencies.append(&mut l);
                first_error = first_error.or(e);
            }
            latencies.sort();
            let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default();
            let max = latencies.last().copied().unwrap_or_default();
            Calls { ok: latencies.len() as u64, failed: failed.load(Ordering::Relaxed), first_error, p99, max }
        })
    }
}

/// One attack's figures.
struct Figures {
    name: &'static str,
    outcome: String,
    before_kib: u64,
    peak_kib: u64,
    after_kib: u64,
    calls: Calls,
    seconds: f64,
}

/// Runs `attack.py name` against the gateway while the well-behaved client calls and the RSS is
/// sampled; checks the gateway is up, its RSS bound and the client's figures; returns the
/// attack's report and figures.
fn attack(gateway: &mut Mesh, caller: &Caller, name: &'static str, rss_bound_mib: u64) -> (Value, Figures) {
    let pid = gateway.child.id();
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = caller.run(stop.clone());
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // The client calls alone for a moment first, so that a broken gateway shows before the attack.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile/attack.py");
    let mut child = Command::new("python3")
        .args([script, name, &gateway.addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-deps.sh installs it and the h2 package)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for attack.py").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name}: attack.py ran over 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("attack.py output");
    let seconds = started.elapsed().as_secs_f64();
    // The well-behaved client goes on for a moment after the attack, when whatever the attack
    // left behind is being cleaned up.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("RSS sampler");
    let calls = caller.runtime.block_on(calls).expect("caller");
    std::thread::sleep(Duration::from_millis(300));
    assert!(gateway.child.try_wait().expect("wait").is_none(), "{name}: the gateway exited");
    let after = rss_kib(pid);
    let peak = peak.load(Ordering::Relaxed).max(after);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name}: attack.py failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{name}: attack.py printed no JSON ({e}): {stdout}"));

    assert_eq!(calls.failed, 0, "{name}: well-behaved calls failed ({:?}); attack: {report}", calls.first_error);
    assert!(calls.ok >= 10, "{name}: only {} well-behaved calls completed", calls.ok);
    assert!(calls.p99 <= P99_BOUND, "{name}: well-behaved p99 {:?} over {P99_BOUND:?}", calls.p99);
    let bound = rss_bound_mib * MIB;
    assert!(
        peak <= before + bound && after <= before + bound,
        "{name}: RSS {before} KiB before, peak {peak}, after {after}: over +{rss_bound_mib} MiB"
    );
    let outcome = outcome_of(&report);
    let figures = Figures { name, outcome, before_kib: before, peak_kib: peak, after_kib: after, calls, seconds };
    (report, figures)
}

/// A one-line summary of what the gateway did to the attacker.
fn outcome_of(report: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(code) = report["goaway"].as_str() {
        let debug = report["goaway_debug"].as_str().unwrap_or("");
        parts.push(if debug.is_empty() { format!("GOAWAY {code}") } else { format!("GOAWAY {code} ({debug})") });
    }
    for (key, label) in [("resets", "RST_STREAM"), ("statuses", "HTTP"), ("grpc_status", "grpc-status")] {
        if let Some(map) = report[key].as_object() {
            for (code, n) in map {
                parts.push(format!("{n}× {label} {code}"));
            }
        }
    }
    if let Some(after) = report["closed_after_s_max"].as_f64() {
        parts.push(format!("{}/{} closed by {after:.1} s", report["closed"], report["connections"]));
    }
    for key in ["h2", "h2_far_over", "h1"] {
        if report[key].is_object() {
            parts.push(format!("{key}: {}", outcome_of(&report[key])));
        }
    }
    if let Some(status) = report["status"].as_u64() {
        parts.push(format!("HTTP {status}"));
    }
    if parts.is_empty() {
        parts.push(report["outcome"].as_str().unwrap_or("?").to_string());
    }
    parts.join(", ")
}

fn s<'a>(report: &'a Value, key: &str) -> &'a str {
    report[key].as_str().unwrap_or("")
}

fn n(report: &Value, path: &[&str]) -> u64 {
    path.iter().fold(report, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

#[test]
fn hostile_clients_are_stopped_while_a_well_behaved_client_keeps_calling() {
    let suite_started = Instant::now();
    let echo_addr = free_addr();
    let echo = Mesh::start(
        &["serve", "echo", "--listen", &echo_addr.to_string(), "--store", "memory:"],
        echo_addr,
        "meshwork serving",
    );
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nheader_read_timeout_ms = {}\nh2_idle_timeout_ms = {}\n\
             [pools.echo]\nendpoints = [\"{echo_addr}\"]\n\
             [[routes]]\nservice = \"meshwork.echo.v1.Echo\"\npool = \"echo\"\n",
            HEADER_TIMEOUT.as_millis(),
            IDLE_TIMEOUT.as_millis()
        ),
    )
    .unwrap();
    let mut gateway = Mesh::start(&["gateway", "--config", config.to_str().unwrap()], addr, "meshwork gateway ready");
    let caller = Caller::new(addr);
    let start_kib = rss_kib(gateway.child.id());
    let mut table = Vec::new();
    let within = |report: &Value, key: &str, limit: Duration| {
        let after = report[key].as_f64().unwrap_or(f64::MAX);
        assert!(after <= limit.as_secs_f64() + 1.5, "closed after {after} s, over {limit:?} + 1.5 s: {report}");
    };

    // Rapid reset: past 400 streams reset by the client within 10 s, the connection ends.
    let (r, f) = attack(&mut gateway, &caller, "rapid_reset", RSS_BOUND_MIB);
    let expected = ("ENHANCE_YOUR_CALM", "too many streams reset (rapid reset)");
    assert_eq!((s(&r, "goaway"), s(&r, "goaway_debug")), expected, "{r}");
    assert!(n(&r, &["streams_reset"]) <= 1000, "rapid reset went on too long: {r}");
    table.push(f);

    // A header block that never ends: stopped after a few frames (64 KiB), not buffered.
    let (r, f) = attack(&mut gateway, &caller, "continuation_flood", RSS_BOUND_MIB);
    assert_eq!(s(&r, "goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert!(["header block too large", "CONTINUATION flood"].contains(&s(&r, "goaway_debug")), "{r}");
    assert!(n(&r, &["bytes_sent"]) < 1 << 20, "{r}");
    table.push(f);

    // References to a 4 KiB table entry: decoding stops at four times the header-list cap.
    let (r, f) = attack(&mut gateway, &caller, "hpack_bomb", RSS_BOUND_MIB);
    let expected = ("ENHANCE_YOUR_CALM", "header list far over the limit");
    assert_eq!((s(&r, "goaway"), s(&r, "goaway_debug")), expected, "{r}");
    table.push(f);

    // SETTINGS and PING floods are valid frames, but each makes the gateway answer: past 100
    // SETTINGS or 200 PINGs within 10 s the connection ends (the GOAWAY reaches the flooder:
    // the gateway reads and drops what it still sends for a moment before closing).
    for (name, debug) in [("settings_flood", "SETTINGS flood"), ("ping_flood", "PING flood")] {
        let (r, f) = attack(&mut gateway, &caller, name, RSS_BOUND_MIB);
        assert_eq!((s(&r, "goaway"), s(&r, "goaway_debug")), ("ENHANCE_YOUR_CALM", debug), "{r}");
        assert!(n(&r, &["frames_in"]) < 1000, "{name}: answered on too long: {r}");
        table.push(f);
    }

    // WINDOW_UPDATE(+1) floods are absorbed; a window pushed past 2^31-1 ends the connection.
    let (r, f) = attack(&mut gateway, &caller, "window_update_flood", RSS_BOUND_MIB);
    assert_eq!(r["open_after_flood"], Value::Bool(true), "{r}");
    assert_eq!(s(&r, "goaway"), "FLOW_CONTROL_ERROR", "{r}");
    table.push(f);

    // 300 calls whose 60 KiB answers can never be sent: the connection is held (the gateway
    // sends the answers' headers and waits), at a bounded cost of under 0.3 MiB per call.
    let (r, f) = attack(&mut gateway, &caller, "zero_window", 96);
    assert_eq!(n(&r, &["statuses", "200"]), 300, "{r}");
    assert!(r["goaway"].is_null(), "{r}");
    table.push(f);

    // 1500 streams opened at once: the 476 over max_concurrent_streams (1024) are refused.
    let (r, f) = attack(&mut gateway, &caller, "concurrent_streams", 64);
    assert_eq!(n(&r, &["resets", "REFUSED_STREAM"]), 1500 - 1024, "{r}");
    table.push(f);

    // Headers over the 16 KiB cap: 20 KiB on HTTP/2 is answered 431 and the connection goes
    // on serving; 64 KiB (far over: a header block over four times the cap) ends it; on
    // HTTP/1.1 the head guard answers 431.
    let (r, f) = attack(&mut gateway, &caller, "oversized_headers", RSS_BOUND_MIB);
    assert_eq!(
        (n(&r, &["h2", "statuses", "431"]), n(&r, &["h2", "grpc_status", "0"]), s(&r["h2"], "outcome")),
        (1, 1, "open"),
        "{r}"
    );
    assert_eq!(
        (s(&r["h2_far_over"], "goaway"), s(&r["h2_far_over"], "goaway_debug")),
        ("ENHANCE_YOUR_CALM", "header block too large"),
        "{r}"
    );
    assert_eq!(n(&r, &["h1", "status"]), 431, "{r}");
    table.push(f);

    // Messages over max_request_message_bytes end their calls RESOURCE_EXHAUSTED early; the
    // connection goes on serving.
    let (r, f) = attack(&mut gateway, &caller, "oversized_message", RSS_BOUND_MIB);
    assert_eq!((n(&r, &["grpc_status", "8"]), n(&r, &["grpc_status", "0"])), (2, 1), "{r}");
    assert!(r["goaway"].is_null(), "{r}");
    table.push(f);

    // Slowloris and half-open connections: HTTP/1.1 heads (and connections that send nothing,
    // or less than the 24 bytes Pingora peeks for) are answered 408 at the header timeout;
    // HTTP/2 connections with no call in flight are closed at the idle timeout.
    for (name, count) in [("slowloris_h1", 100), ("slowloris_preface", 50), ("half_open", 200)] {
        let (r, f) = attack(&mut gateway, &caller, name, RSS_BOUND_MIB);
        assert_eq!(n(&r, &["closed"]), count, "{name}: {r}");
        assert_eq!(n(&r, &["statuses", "408"]), count, "{name}: {r}");
        within(&r, "closed_after_s_max", HEADER_TIMEOUT);
        table.push(f);
    }
    for (name, count) in [("slowloris_h2", 100), ("half_open_h2", 200)] {
        let (r, f) = attack(&mut gateway, &caller, name, RSS_BOUND_MIB);
        assert_eq!(n(&r, &["closed"]), count, "{name}: {r}");
        within(&r, "closed_after_s_max", IDLE_TIMEOUT);
        table.push(f);
    }

    let end_kib = rss_kib(gateway.child.id());
    assert!(end_kib <= start_kib + 192 * MIB, "RSS grew from {start_kib} KiB to {end_kib} KiB over the suite");
    // And the gateway still answers a fresh client.
    let fresh = Caller::new(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = fresh.run(stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let calls = fresh.runtime.block_on(calls).unwrap();
    assert!(calls.ok > 0 && calls.failed == 0, "{calls:?}");

    if std::env::var_os("HOSTILE_REPORT").is_some() {
        println!(
            "| attack | what the gateway did | RSS before / peak / after (MiB) | well-behaved calls | failed | p99 | max | s |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for f in &table {
            println!(
                "| {} | {} | {:.1} / {:.1} / {:.1} | {} | {} | {:.1} ms | {:.1} ms | {:.1} |",
                f.name,
                f.outcome,
                f.before_kib as f64 / 1024.0,
                f.peak_kib as f64 / 1024.0,
                f.after_kib as f64 / 1024.0,
                f.calls.ok,
                f.calls.failed,
                f.calls.p99.as_secs_f64() * 1000.0,
                f.calls.max.as_secs_f64() * 1000.0,
                f.seconds
            );
        }
        println!(
            "gateway RSS {:.1} MiB at the start, {:.1} MiB at the end; suite {:.1} s",
            start_kib as f64 / 1024.0,
            end_kib as f64 / 1024.0,
            suite_started.elapsed().as_secs_f64()
        );
    }
    drop(echo);
}
