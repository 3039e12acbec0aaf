//! A chaos soak under load (the hardening issue, part 3): the URL shortener as two `meshwork
//! serve` replicas on a real 3-member etcd cluster behind one `meshwork gateway`, all real
//! processes, with workers calling through the gateway (a third `Shorten` with a `request_id`,
//! the rest `Resolve` of codes already acknowledged) while, one phase at a time:
//!
//! 1. nothing happens (baseline);
//! 2. an etcd member that is not the leader is killed (SIGKILL) and brought back;
//! 3. the etcd leader is killed and brought back;
//! 4. a service replica is SIGKILLed and started again;
//! 5. the gateway is upgraded gracefully (a new process takes the listening socket over,
//!    Pingora's upgrade; the old one drains);
//! 6. nothing happens again.
//!
//! Workers behave as a gRPC client with a retry policy: a call that fails with a transient
//! code is tried again (the same `request_id` for a write, so a retry never makes a second
//! link) until its 6 s deadline. At the end a checker reads back every acknowledged write
//! through the gateway (none may be lost), sends every write that was never acknowledged once
//! more with its `request_id`, and counts the soak's links in etcd: one per `request_id`, so
//! none is duplicated. It prints, and writes to `$CHAOS_REPORT` when set, the calls served per
//! phase.
//!
//! `CHAOS_PHASE_SECS` sets each phase's length (7 s here, in the test command;
//! `scripts/chaos.sh` runs minutes per phase on a release build).

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshwork_proto::pb::urlshortener::v1 as pb;
use meshwork_storage::testing::EtcdCluster;
use meshwork_storage::{Direction, KeyRange, Store};
use pb::url_shortener_client::UrlShortenerClient;
use support::{Mesh, free_addr, signal};
use tonic::Code;
use tonic::transport::Channel;

const PHASES: [&str; 6] = [
    "baseline",
    "etcd member killed and restarted",
    "etcd leader killed and restarted",
    "replica SIGKILLed and restarted",
    "gateway upgraded (socket hand-over)",
    "baseline again",
];

/// Workers calling at once.
const WORKERS: usize = 8;
/// Pause between one worker's calls (8 workers: at most ~130 calls/s in all, well below what
/// this stack serves in a debug build on 2 cores, so that failures come from the faults).
const PACE: Duration = Duration::from_millis(60);
/// A logical call's deadline, over all its attempts.
const CALL_DEADLINE: Duration = Duration::from_secs(6);
/// One attempt's deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Calls made and calls that failed, per phase.
#[derive(Default)]
struct Tally {
    calls: [AtomicUsize; 6],
    failed: [AtomicUsize; 6],
    attempts: [AtomicUsize; 6],
    failures: Mutex<Vec<String>>,
}

/// What the workers learned: acknowledged writes (request_id -> (code, url)) and writes whose
/// outcome the client never learned (request_id -> url).
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, (String, String)>,
    unacked: HashMap<String, String>,
    codes: Vec<(String, String)>,
}

fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

/// Calls `f` until it succeeds, fails with a non-transient code, or the deadline passes.
/// Returns the outcome and the number of attempts.
async fn with_retries<T, F, Fut>(mut f: F) -> (Result<T, tonic::Status>, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + CALL_DEADLINE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match f().await {
            Ok(v) => return (Ok(v), attempts),
            Err(s) if transient(s.code()) && Instant::now() + Duration::from_millis(100) < deadline => {
                tokio::time::sleep(Duration::from_millis(50 * attempts.min(6) as u64)).await;
            }
            Err(s) => return (Err(s), attempts),
        }
    }
}

async fn channel(gateway: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{gateway}")).unwrap().connect_timeout(Duration::from_secs(1)).connect_lazy()
}

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(ATTEMPT_TIMEOUT);
    request
}

async fn shorten(
    client: &UrlShortenerClient<Channel>,
    request_id: &str,
    url: &str,
) -> (Result<String, tonic::Status>, usize) {
    with_retries(|| {
        let mut c = client.clone();
        let request = pb::ShortenRequest { long_url: url.into(), request_id: request_id.into(), ..Default::default() };
        async move { c.shorten(timed(request)).await.map(|r| r.into_inner().code) }
    })
    .await
}

async fn resolve(client: &UrlShortenerClient<Channel>, code: &str) -> (Result<String, tonic::Status>, usize) {
    with_retries(|| {
        let mut c = client.clone();
        let request = pb::ResolveRequest { code: code.into(), referrer: String::new(), skip_click: true };
        async move { c.resolve(timed(request)).await.map(|r| r.into_inner().long_url) }
    })
    .await
}

async fn worker(
    id: usize,
    run: String,
    gateway: SocketAddr,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let client = UrlShortenerClient::new(channel(gateway).await);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let p = phase.load(Ordering::Relaxed);
        let pick = if n.is_multiple_of(3) {
            None
        } else {
            let l = ledger.lock().unwrap();
            (!l.codes.is_empty()).then(|| l.codes[(n * 7919 + id) % l.codes.len()].clone())
        };
        let (ok, attempts, what) = match pick {
            None => {
                let request_id = format!("chaos-{run}-{id}-{n}");
                let url = format!("https://chaos.example/{run}/{id}/{n}");
                let (result, attempts) = shorten(&client, &request_id, &url).await;
                let mut ledger = ledger.lock().unwrap();
                match result {
                    Ok(code) => {
                        ledger.codes.push((code.clone(), url.clone()));
                        ledger.acked.insert(request_id, (code, url));
                        (true, attempts, String::new())
                    }
                    Err(s) => {
                        ledger.unacked.insert(request_id.clone(), url);
                        (false, attempts, format!("Shorten {request_id}: {:?} {}", s.code(), s.message()))
                    }
                }
            }
            Some((code, url)) => match resolve(&client, &code).await {
                (Ok(found), attempts) if found == url => (true, attempts, String::new()),
                (Ok(found), attempts) => (false, attempts, format!("Resolve {code}: {found} instead of {url}")),
                (Err(s), attempts) => (false, attempts, format!("Resolve {code}: {:?} {}", s.code(), s.message())),
            },
        };
        tally.calls[p].fetch_add(1, Ordering::Relaxed);
        tally.attempts[p].fetch_add(attempts, Ordering::Relaxed);
        if !ok {
            tally.failed[p].fetch_add(1, Ordering::Relaxed);
            tally.failures.lock().unwrap().push(format!("[{}] {what}", PHASES[p]));
        }
        tokio::time::sleep(PACE).await;
    }
}

fn start_replica(addr: SocketAddr, store: &str, public: &str) -> Mesh {
    let a = addr.to_string();
    Mesh::start(
        &["serve", "urlshortener", "--listen", &a, "--store", store, "--public-url", public],
        addr,
        "meshwork serving",
    )
}

/// Runs a blocking step (process starts and kills, etcd membership) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking chaos step")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_loses_no_acknowledged_write() {
    let phase_len =
        Duration::from_secs(std::env::var("CHAOS_PHASE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(7));
    let cluster = Arc::new(Mutex::new(
        EtcdCluster::start(3).expect("a 3-member etcd cluster (etcd is installed by scripts/install-deps.sh)"),
    ));
    let store = cluster.lock().unwrap().store_url().to_string();
    let gateway_addr = free_addr();
    let public = format!("http://{gateway_addr}");
    let replica_addrs = [free_addr(), free_addr()];
    let replicas: Arc<Mutex<Vec<Mesh>>> =
        Arc::new(Mutex::new(replica_addrs.iter().map(|a| start_replica(*a, &store, &public)).collect()));
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{gateway_addr}\"\ngrace_period_seconds = 4\nupgrade_sock = \"{}\"\n\n\
             [health_check]\ninterval_ms = 300\ntimeout_ms = 300\n\n\
             [pools.urlshortener]\nendpoints = [\"{}\", \"{}\"]\n\n\
             [[routes]]\nservice = \"meshwork.urlshortener.v1.UrlShortener\"\npool = \"urlshortener\"\n\
             idempotent_methods = [\"Resolve\", \"GetLink\", \"GetStats\"]\n",
            config_dir.path().join("upgrade.sock").display(),
            replica_addrs[0],
            replica_addrs[1]
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let gateway = Mesh::start(&["gateway", "--config", &config], gateway_addr, "gateway ready");

    let run = format!("{}x{}", std::process::id(), gateway_addr.port());
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            tokio::spawn(worker(
                id,
                run.clone(),
                gateway_addr,
                phase.clone(),
                stop.clone(),
                tally.clone(),
                ledger.clone(),
            ))
        })
        .collect();

    let mut gateway = Some(gateway);
    let mut faults = Vec::new();
    for (p, name) in PHASES.iter().enumerate() {
        phase.store(p, Ordering::Relaxed);
        let started = Instant::now();
        match p {
            1 | 2 => {
                let c = cluster.clone();
                let victim = blocking(move || {
                    let mut c = c.lock().unwrap();
                    let leader = c.leader().expect("the etcd cluster has a leader");
                    let victim = if p == 2 { leader } else { (leader + 1) % c.len() };
                    c.kill(victim);
                    victim
                })
                .await;
                faults.push(format!(
                    "{name}: member n{} ({})",
                    victim + 1,
                    if p == 2 { "the leader" } else { "a follower" }
                ));
                tokio::time::sleep(phase_len.mul_f32(0.5)).await;
                let c = cluster.clone();
                blocking(move || c.lock().unwrap().restart(victim)).await.expect("the member comes back");
            }
            3 => {
                let r = replicas.clone();
                blocking(move || {
                    let mut r = r.lock().unwrap();
                    signal(&r[0].child, "KILL");
                    let _ = r[0].child.wait();
                })
                .await;
                faults.push(format!("{name}: replica {}", replica_addrs[0]));
                tokio::time::sleep(phase_len.mul_f32(0.4)).await;
                let (r, store, public) = (replicas.clone(), store.clone(), public.clone());
                blocking(move || {
                    let fresh = start_replica(replica_addrs[0], &store, &public);
                    r.lock().unwrap()[0] = fresh;
                })
                .await;
            }
            4 => {
                let config = config.clone();
                let new = std::thread::spawn(move || {
                    Mesh::start(&["gateway", "--config", &config, "--upgrade"], gateway_addr, "gateway ready")
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
                let old = gateway.take().expect("the running gateway");
                signal(&old.child, "QUIT");
                gateway = Some(blocking(move || new.join().expect("the new gateway starts")).await);
                let status = blocking(move || old.terminate(Duration::from_secs(20))).await;
                assert!(status.success(), "the old gateway drains and exits cleanly: {status:?}");
                faults.push(format!("{name}: new gateway pid {}", gateway.as_ref().unwrap().child.id()));
            }
            _ => {}
        }
        let left = phase_len.saturating_sub(started.elapsed());
        tokio::time::sleep(left).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    // The checker: every acknowledged write resolves to its URL through the gateway; every write
    // whose answer was lost is sent again with its request_id and then resolves too.
    let client = UrlShortenerClient::new(channel(gateway_addr).await);
    let (acked, unacked) = {
        let l = ledger.lock().unwrap();
        (l.acked.clone(), l.unacked.clone())
    };
    let mut lost = Vec::new();
    for (request_id, (code, url)) in &acked {
        match resolve(&client, code).await.0 {
            Ok(found) if &found == url => {}
            other => lost.push(format!("{request_id} -> {code}: {other:?}")),
        }
    }
    let mut codes: HashSet<String> = acked.values().map(|(c, _)| c.clone()).collect();
    assert_eq!(codes.len(), acked.len(), "two acknowledged writes share a code");
    for (request_id, url) in &unacked {
        let code = shorten(&client, request_id, url).await.0.expect("a retried write succeeds after the soak");
        assert_eq!(resolve(&client, &code).await.0.expect("resolve"), *url);
        codes.insert(code);
    }
    // In etcd: one link per request_id of this run, no more.
    let endpoints = cluster.lock().unwrap().endpoints();
    let etcd = meshwork_storage::etcd::EtcdStore::connect(endpoints).await.unwrap();
    let marker = format!("https://chaos.example/{run}/");
    let stored = etcd.scan(KeyRange::prefix("urlshortener/link/"), 0, Direction::Forward).await.unwrap();
    let soak_links = stored.entries.iter().filter(|e| String::from_utf8_lossy(&e.value).contains(&marker)).count();
    let writes = acked.len() + unacked.len();

    let mut report =
        String::from("| phase | fault | calls | attempts | failed | served |\n|---|---|---:|---:|---:|---:|\n");
    let (mut calls, mut failed) = (0, 0);
    for (p, name) in PHASES.iter().enumerate() {
        let c = tally.calls[p].load(Ordering::Relaxed);
        let f = tally.failed[p].load(Ordering::Relaxed);
        let a = tally.attempts[p].load(Ordering::Relaxed);
        let fault = faults.iter().find(|x| x.starts_with(name)).map(|x| x[name.len() + 2..].to_string());
        report.push_str(&format!(
            "| {} | {} | {c} | {a} | {f} | {:.2}% |\n",
            p + 1,
            fault.unwrap_or_else(|| name.to_string()),
            100.0 * (c - f) as f64 / c.max(1) as f64
        ));
        calls += c;
        failed += f;
    }
    let served = 100.0 * (calls - failed) as f64 / calls.max(1) as f64;
    report.push_str(&format!(
        "\nphases of {phase_len:?}; {calls} calls, {failed} failed, {served:.3}% served; {writes} writes \
         ({} acknowledged, {} unanswered and retried after), {} lost, {} links in etcd for {writes} request_ids \
         ({} duplicated)\n",
        acked.len(),
        unacked.len(),
        lost.len(),
        soak_links,
        soak_links.saturating_sub(writes)
    ));
    println!("{report}");
    if let Ok(path) = std::env::var("CHAOS_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert_eq!(soak_links, writes, "one link per request_id: {soak_links} links for {writes} writes");
    assert_eq!(codes.len(), writes);
    assert!(calls > 500, "the soak made too few calls to mean anything: {calls}");
    for p in [0, PHASES.len() - 1] {
        assert_eq!(tally.failed[p].load(Ordering::Relaxed), 0, "failures outside fault windows: {failures:?}");
    }
    assert!(served >= 99.9, "{served:.3}% served, below 99.9%: {failures:?}");

    let gateway = gateway.take().unwrap();
    assert!(gateway.terminate(Duration::from_secs(30)).success());
    for r in std::mem::take(&mut *replicas.lock().unwrap()) {
        assert!(r.terminate(Duration::from_secs(30)).success());
    }
}

/// A tmpfs mounted for one test and unmounted (with whatever is on it) when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root (this test's machines run as root)");
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The embedded store on a disk that fills up: writes fail with UNAVAILABLE (never INTERNAL,
/// never a crash) while less than the store's reserve is free, reads go on, writes resume when
/// space returns, and after a SIGKILL and a restart every acknowledged write is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_they_resume_when_space_returns() {
    let disk = SmallDisk::mount(192);
    let db = disk.path().join("db");
    let store = format!("embedded:{}", db.display());
    let addr = free_addr();
    let public = format!("http://{addr}");
    let mut replica = start_replica(addr, &store, &public);
    let client = UrlShortenerClient::new(channel(addr).await);
    let mut acked = Vec::new();
    for i in 0..200 {
        let (url, id) = (format!("https://disk.example/{i}"), format!("disk-{i}"));
        acked.push((shorten(&client, &id, &url).await.0.expect("writes while there is room"), url));
    }

    // Fill the disk to 32 MiB free, below the default 64 MiB reserve.
    let filler = disk.path().join("filler");
    {
        use std::io::Write;
        let free = fs4::available_space(disk.path()).unwrap();
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..(free >> 20).saturating_sub(32) {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    let mut c = client.clone();
    let mut refused = 0;
    for i in 0..20 {
        let request = pb::ShortenRequest {
            long_url: format!("https://disk.example/full/{i}"),
            request_id: format!("full-{i}"),
            ..Default::default()
        };
        let status = c.shorten(timed(request)).await.expect_err("no write while the disk is full");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("free"), "{status:?}");
        refused += 1;
    }
    assert_eq!(refused, 20);
    let (code, url) = &acked[7];
    assert_eq!(resolve(&client, code).await.0.expect("reads go on"), *url);
    assert!(replica.child.try_wait().unwrap().is_none(), "the process is still up");

    // Space returns: writes resume (a client retrying UNAVAILABLE gets through).
    std::fs::remove_file(&filler).unwrap();
    let url = "https://disk.example/after".to_string();
    acked.push((shorten(&client, "after-space", &url).await.0.expect("writes resume"), url));

    // SIGKILL and restart on the same directory: every acknowledged write, once.
    signal(&replica.child, "KILL");
    let _ = replica.child.wait();
    drop(replica);
    replica = start_replica(addr, &store, &public);
    let client = UrlShortenerClient::new(channel(addr).await);
    for (code, url) in &acked {
        assert_eq!(resolve(&client, code).await.0.expect("an acknowledged write survives"), *url);
    }
    let (again, _) = shorten(&client, "disk-3", "https://disk.example/3").await;
    assert_eq!(again.unwrap(), acked[3].0, "a retried request_id still answers with its first code");
    assert!(replica.terminate(Duration::from_secs(30)).success());
}
