//! End-to-end with real processes: three replica processes behind the real gateway under steady
//! load; one is killed with SIGKILL, then started again on the same port.
//!
//! The replica processes are this test binary itself, re-run with `MESHWORK_TEST_REPLICA_ADDR`
//! set so that only [`replica_process`] runs and serves (no other binary has to be built).

mod support;

use support::{TestReplica, free_port, shortener_server};

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meshwork_gateway::{GatewayConfig, PoolConfig, RouteConfig};
use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
use meshwork_proto::pb::urlshortener::v1::*;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const SHORTENER: &str = "meshwork.urlshortener.v1.UrlShortener";
const ADDR_ENV: &str = "MESHWORK_TEST_REPLICA_ADDR";

struct PortEcho(u16);

#[tonic::async_trait]
impl TestReplica for PortEcho {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        let code = request.into_inner().code;
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(Response::new(ResolveResponse { long_url: format!("https://example.com/{}/{code}", self.0), link: None }))
    }
}

/// The replica process's body: serves until killed. A no-op in a normal test run.
#[test]
fn replica_process() {
    let Ok(addr) = std::env::var(ADDR_ENV) else { return };
    let addr: SocketAddr = addr.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let (_reporter, health) = tonic_health::server::health_reporter();
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(shortener_server(PortEcho(addr.port())))
            .serve(addr)
            .await
            .unwrap();
    });
}

/// A replica process; killed (SIGKILL) when dropped.
struct ReplicaProcess(Child);

impl ReplicaProcess {
    fn start(addr: SocketAddr) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "replica_process", "--test-threads=1", "--nocapture"])
            .env(ADDR_ENV, addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "replica process on {addr} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }

    fn kill(mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Per-worker outcome: (calls ok, calls failed, answering ports with the time of each call).
type Outcome = (u64, Vec<Status>, Vec<(Instant, u16)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_replica_is_avoided_and_returns() {
    let addrs = [free_port(), free_port(), free_port()];
    let mut replicas: Vec<Option<ReplicaProcess>> = addrs.iter().map(|a| Some(ReplicaProcess::start(*a))).collect();

    let interval = Duration::from_millis(200);
    let mut config = GatewayConfig::new(free_port());
    config.threads = 2;
    config.health_check.interval_ms = interval.as_millis() as u64;
    config.health_check.timeout_ms = 150;
    config.connect_timeout_ms = 200;
    config.pools.insert("p".into(), PoolConfig::new(addrs.iter().map(|a| a.to_string())));
    config.routes.push(RouteConfig { idempotent_methods: vec!["Resolve".into()], ..RouteConfig::new(SHORTENER, "p") });
    let gateway = tokio::task::spawn_blocking(move || meshwork_gateway::spawn(config)).await.unwrap().unwrap();
    let channel = Channel::from_shared(format!("http://{}", gateway.listen_addr())).unwrap().connect().await.unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (mut client, running) = (UrlShortenerClient::new(channel.clone()), running.clone());
            tokio::spawn(async move {
                let mut outcome: Outcome = (0, Vec::new(), Vec::new());
                let mut i = 0u64;
                while running.load(Ordering::Relaxed) {
                    i += 1;
                    let req = ResolveRequest { code: format!("{w}-{i}"), referrer: String::new(), skip_click: true };
                    match client.resolve(req).await {
                        Ok(r) => {
                            outcome.0 += 1;
                            let port = r.into_inner().long_url.split('/').nth(3).unwrap().parse().unwrap();
                            outcome.2.push((Instant::now(), port));
                        }
                        Err(status) => outcome.1.push(status),
                    }
                }
                outcome
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = Instant::now();
    replicas[0].take().unwrap().kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // It comes back on the same port.
    let restarted_at = Instant::now();
    replicas[0] = Some(ReplicaProcess::start(addrs[0]));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    running.store(false, Ordering::Relaxed);

    let (mut ok, mut failed, mut answers) = (0, Vec::new(), Vec::new());
    for w in workers {
        let (o, f, a) = w.await.unwrap();
        ok += o;
        failed.extend(f);
        answers.extend(a);
    }
    let total = ok + failed.len() as u64;
    let success = ok as f64 / total as f64;
    println!("{ok} of {total} calls succeeded ({:.4}%), {} failed", success * 100.0, failed.len());
    assert!(success >= 0.999, "{} of {total} failed, first {:?}", failed.len(), failed.first());

    let port0 = addrs[0].port();
    let quiet_from = killed_at + 2 * interval;
    let late = answers.iter().filter(|(t, p)| *p == port0 && *t > quiet_from && *t < restarted_at).count();
    assert_eq!(late, 0, "the killed replica answered after two health intervals");
    let back = answers.iter().filter(|(t, p)| *p == port0 && *t > restarted_at).count();
    let others = answers.iter().filter(|(t, p)| *p != port0 && *t > restarted_at).count();
    println!("after the restart: {back} calls on the returning replica, {others} on the others");
    assert!(back > 0, "the returning replica gets traffic again");
    tokio::task::spawn_blocking(move || gateway.shutdown()).await.unwrap().unwrap();
}
