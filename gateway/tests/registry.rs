//! The gateway following an etcd registry: a real etcd (`meshwork_storage::testing`), real tonic
//! replicas that register with `meshwork_registry::register`, the real gateway, steady load.

mod support;

use support::{TestReplica, serve_replica};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshwork_gateway::{GatewayConfig, PoolConfig, RegistryConfig, RouteConfig};
use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
use meshwork_proto::pb::urlshortener::v1::*;
use meshwork_storage::testing::EtcdCluster;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const SHORTENER: &str = "meshwork.urlshortener.v1.UrlShortener";
const PREFIX: &str = "meshwork/registry/";

#[derive(Clone)]
struct Replica {
    id: usize,
    calls: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TestReplica for Replica {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let code = request.into_inner().code;
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(Response::new(ResolveResponse { long_url: format!("https://example.com/{}/{code}", self.id), link: None }))
    }
}

struct Backend {
    addr: SocketAddr,
    calls: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn backend(id: usize) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let (_reporter, health) = tonic_health::server::health_reporter();
    let service = Replica { id, calls: calls.clone() };
    let stop = serve_replica(listener, health, service);
    Backend { addr, calls, stop: Some(stop) }
}

impl Backend {
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

/// Waits until `f` holds, polling every 20 ms; returns how long it took (panics after `limit`).
async fn within(limit: Duration, what: &str, f: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_changes_pools_live_without_failed_calls() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .with_test_writer()
        .try_init();
    let etcd = EtcdCluster::start(1).expect("etcd");
    let url = format!("etcd://{}", etcd.endpoints().join(","));
    let mut b = [backend(0).await, backend(1).await, backend(2).await];
    let ttl = Duration::from_secs(2);
    let registry = meshwork_registry::open(&url).await.unwrap();
    let reg0 = meshwork_registry::register(registry.clone(), PREFIX, "p", b[0].addr, 1, ttl).await.unwrap();
    let reg1 = meshwork_registry::register(registry.clone(), PREFIX, "p", b[1].addr, 1, ttl).await.unwrap();

    let mut config = GatewayConfig::new(support::free_port());
    config.threads = 1;
    config.health_check.interval_ms = 200;
    config.registry = Some(RegistryConfig::new(url.clone()));
    config.admin_listen = Some(support::free_port());
    config.pools.insert("p".into(), PoolConfig::new(Vec::<String>::new()));
    config.routes.push(RouteConfig { idempotent_methods: vec!["Resolve".into()], ..RouteConfig::new(SHORTENER, "p") });
    let gateway = tokio::task::spawn_blocking(move || meshwork_gateway::spawn(config)).await.unwrap().unwrap();

    // Steady load for the whole test; every call must succeed.
    let channel = Channel::from_shared(format!("http://{}", gateway.listen_addr())).unwrap().connect().await.unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (mut client, running) = (UrlShortenerClient::new(channel.clone()), running.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut i = 0;
                while running.load(Ordering::Relaxed) {
                    i += 1;
                    let req = ResolveRequest { code: format!("w{w}-{i}"), referrer: String::new(), skip_click: true };
                    match client.resolve(req).await {
                        Ok(_) => ok += 1,
                        Err(status) => failed.push(status),
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    within(Duration::from_secs(2), "registered replicas get calls", || b[0].calls() > 0 && b[1].calls() > 0).await;
    assert_eq!(b[2].calls(), 0);

    // A replica joins: it gets calls within a second.
    let reg2 = meshwork_registry::register(registry.clone(), PREFIX, "p", b[2].addr, 1, ttl).await.unwrap();
    let took = within(Duration::from_secs(1), "a new replica gets calls", || b[2].calls() > 0).await;
    println!("join seen after {took:?}");

    // A replica leaves gracefully: deregister first, then let its calls finish, then stop it.
    reg0.deregister().await.unwrap();
    let left = Instant::now();
    let mut last = b[0].calls();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(300) {
        assert!(left.elapsed() < Duration::from_secs(1), "replica 0 still gets calls a second after leaving");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = b[0].calls();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    println!("leave seen after {:?}", left.elapsed() - Duration::from_millis(300));
    let _ = b[0].stop.take().unwrap().send(());

    // A replica dies without deregistering: its lease runs out within the TTL (plus etcd's
    // expiry sweep), then it leaves the pool; calls meanwhile are retried on the others.
    let _ = b[1].stop.take().unwrap().send(());
    drop(reg1);
    let died = Instant::now();
    let admin = gateway.admin_addr().unwrap();
    let dead = b[1].addr.to_string();
    loop {
        let routes = http_get(admin, "/routes").await;
        if !routes.contains(&dead) {
            break;
        }
        assert!(died.elapsed() < ttl + Duration::from_millis(1500), "dead replica still listed: {routes}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("dead replica left after {:?} (lease TTL {ttl:?})", died.elapsed());
    let calls_after = b[2].calls();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b[2].calls() > calls_after, "the remaining replica serves");

    running.store(false, Ordering::Relaxed);
    let mut per_worker = HashMap::new();
    for (i, w) in workers.into_iter().enumerate() {
        let (ok, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "worker {i}: {} failed calls, first {:?}", failed.len(), failed.first());
        per_worker.insert(i, ok);
    }
    assert!(per_worker.values().all(|ok| *ok > 50), "{per_worker:?}");
    reg2.deregister().await.unwrap();
    tokio::task::spawn_blocking(move || gateway.shutdown()).await.unwrap().unwrap();
}
