//! End-to-end tests of the gateway: real tonic backends on loopback, the real gateway started
//! with `meshwork_gateway::spawn`, real clients (tonic over h2c, raw HTTP/1.1 over TCP).

mod support;

use support::{TestReplica, header, http1, serve_replica, start, stop};

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshwork_gateway::{GatewayConfig, HttpRouteConfig, PoolConfig, RouteConfig};
use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
use meshwork_proto::pb::urlshortener::v1::*;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

const SHORTENER: &str = "meshwork.urlshortener.v1.UrlShortener";

/// A URL shortener replica whose answers name the replica.
#[derive(Clone)]
struct TestShortener {
    id: usize,
    referrers: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TestReplica for TestShortener {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        let req = request.into_inner();
        self.referrers.lock().unwrap().push(req.referrer.clone());
        let state = |s: &'static str| {
            let mut status = Status::not_found("no such code");
            status.metadata_mut().insert("meshwork-link-state", s.parse().unwrap());
            status
        };
        match req.code.as_str() {
            "missing" => Err(Status::not_found("no such code")),
            "old" => Err(state("expired")),
            "gone" => Err(state("deleted")),
            "bad" => Err(Status::invalid_argument("code: bad")),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(700)).await;
                Ok(Response::new(ResolveResponse {
                    long_url: format!("https://example.com/{}/slow", self.id),
                    link: None,
                }))
            }
            code => Ok(Response::new(ResolveResponse {
                long_url: format!("https://example.com/{}/{code}", self.id),
                link: None,
            })),
        }
    }
}

struct Backend {
    addr: SocketAddr,
    referrers: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts a URL shortener replica (with gRPC health) on an ephemeral port.
async fn backend(id: usize) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let referrers = Arc::new(Mutex::new(Vec::new()));
    let service = TestShortener { id, referrers: referrers.clone() };
    let (_health_reporter, health) = tonic_health::server::health_reporter();
    let stop = serve_replica(listener, health, service);
    Backend { addr, referrers, _stop: stop }
}

/// A loopback port with nothing listening (a dead replica, or the gateway's own port).
fn dead_port() -> SocketAddr {
    support::free_port()
}

fn config(pool: &[SocketAddr], route: Option<&str>) -> GatewayConfig {
    let mut config = GatewayConfig::new(dead_port());
    config.threads = 1;
    config.grace_period_seconds = 5;
    config.health_check.interval_ms = 200;
    config.pools.insert("shortener".into(), PoolConfig::new(pool.iter().map(|a| a.to_string())));
    config.descriptor_sets.push(meshwork_proto::FILE_DESCRIPTOR_SET.into());
    if let Some(service) = route {
        config.routes.push(RouteConfig::new(service, "shortener"));
        if SHORTENER.starts_with(service) {
            config.http_routes.push(HttpRouteConfig::Redirect(support::shortener_redirect()));
        }
    }
    config
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

async fn resolve(client: &mut UrlShortenerClient<Channel>, code: &str) -> Result<String, Status> {
    let req = ResolveRequest { code: code.into(), referrer: String::new(), skip_click: false };
    client.resolve(req).await.map(|r| r.into_inner().long_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_reach_backends_round_robin() {
    let (a, b) = (backend(0).await, backend(1).await);
    let mut config = config(&[a.addr, b.addr], Some(SHORTENER));
    // Balancing is under test, not health: on a starved machine (tests on 16 threads) a health
    // check or a connect of the debug build timed out now and then, and the gateway rightly
    // sent every call to the other replica.
    config.health_check.timeout_ms = 10_000;
    config.health_check.unhealthy_threshold = 100;
    config.connect_timeout_ms = 10_000;
    let gateway = start(config).await;
    let mut client = UrlShortenerClient::new(channel(gateway.listen_addr()).await);
    let mut per_replica = [0usize; 2];
    for i in 0..10 {
        let url = resolve(&mut client, &format!("c{i}")).await.unwrap();
        assert!(url.ends_with(&format!("/c{i}")), "{url}");
        let replica: usize = url.split('/').nth(3).unwrap().parse().unwrap();
        per_replica[replica] += 1;
    }
    assert_eq!(per_replica, [5, 5], "round robin over two replicas");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn package_prefix_route_works() {
    let a = backend(0).await;
    // spawn and shutdown may also be called directly from async code (they block briefly).
    let gateway = meshwork_gateway::spawn(config(&[a.addr], Some("meshwork.urlshortener"))).unwrap();
    let mut client = UrlShortenerClient::new(channel(gateway.listen_addr()).await);
    assert_eq!(resolve(&mut client, "x").await.unwrap(), "https://example.com/0/x");
    gateway.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_replica_is_retried_on_another() {
    let live = backend(7).await;
    let gateway = start(config(&[dead_port(), live.addr, dead_port()], Some(SHORTENER))).await;
    let mut client = UrlShortenerClient::new(channel(gateway.listen_addr()).await);
    for i in 0..12 {
        let url = resolve(&mut client, &format!("r{i}")).await.unwrap_or_else(|s| panic!("call {i}: {s:?}"));
        assert_eq!(url, format!("https://example.com/7/r{i}"));
    }
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_service_is_unimplemented() {
    let a = backend(0).await;
    // Only another package is routed: the URL shortener is unknown to this gateway.
    let gateway = start(config(&[a.addr], Some("meshwork.orders.v1"))).await;
    let mut client = UrlShortenerClient::new(channel(gateway.listen_addr()).await);
    let status = resolve(&mut client, "x").await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains(SHORTENER), "{status:?}");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_without_live_replica_is_unavailable() {
    let gateway = start(config(&[dead_port(), dead_port()], Some(SHORTENER))).await;
    let mut client = UrlShortenerClient::new(channel(gateway.listen_addr()).await);
    for _ in 0..3 {
        let status = resolve(&mut client, "x").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("shortener"), "{status:?}");
    }
    // The gateway's health service reports the routed service down, the gateway itself up.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(gateway.listen_addr()).await);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let overall = health.check(check("")).await.unwrap().into_inner().status;
    assert_eq!(overall, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let shortener = health.check(check(SHORTENER)).await.unwrap().into_inner().status;
    assert_eq!(shortener, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_at_gateway_follows_replicas() {
    let a = backend(0).await;
    let gateway = start(config(&[a.addr], Some(SHORTENER))).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(gateway.listen_addr()).await);
    let check = tonic_health::pb::HealthCheckRequest { service: SHORTENER.into() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(health.check(check.clone()).await.unwrap().into_inner().status, serving);
    drop(a); // the replica stops
    let mut status = serving;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = health.check(check.clone()).await.unwrap().into_inner().status;
        if status != serving {
            break;
        }
    }
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    stop(gateway).await;
}

/// `[pools.NAME.health_check]` gives one pool its own interval; another pool keeps the global
/// `[health_check]` one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_pool_checks_at_its_own_interval() {
    const OTHER: &str = "meshwork.other.v1.Other";
    let (fast, slow) = (backend(0).await, backend(1).await);
    let mut config = config(&[fast.addr], Some(SHORTENER));
    config.health_check.interval_ms = 3_600_000; // no second round of the global interval here
    config.pools.get_mut("shortener").unwrap().health_check.interval_ms = Some(100);
    config.pools.insert("slow".into(), PoolConfig::new([slow.addr.to_string()]));
    config.routes.push(RouteConfig::new(OTHER, "slow"));
    let gateway = start(config).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(gateway.listen_addr()).await);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(health.check(check(SHORTENER)).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(check(OTHER)).await.unwrap().into_inner().status, serving);
    drop((fast, slow)); // both replicas stop
    let mut status = serving;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = health.check(check(SHORTENER)).await.unwrap().into_inner().status;
        if status != serving {
            break;
        }
    }
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    // The other pool has not been checked again since the gateway started.
    assert_eq!(health.check(check(OTHER)).await.unwrap().into_inner().status, serving);
    stop(gateway).await;
}

async fn list_services_v1alpha(addr: SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::{ServerReflectionRequest, ServerReflectionResponse};
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response: ServerReflectionResponse = responses.message().await.unwrap().unwrap();
    match response.message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflection_lists_routed_services() {
    let a = backend(0).await;
    let gateway = start(config(&[a.addr], Some(SHORTENER))).await;
    let mut names = list_services_v1alpha(gateway.listen_addr()).await;
    names.sort();
    assert_eq!(
        names,
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            SHORTENER,
        ]
    );

    // v1 answers too, and describes the routed service (what `grpcurl describe` asks for).
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel(gateway.listen_addr()).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(SHORTENER.into())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    match responses.message().await.unwrap().unwrap().message_response.unwrap() {
        MessageResponse::FileDescriptorResponse(files) => {
            use prost::Message;
            let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice()).unwrap();
            assert_eq!(file.package(), "meshwork.urlshortener.v1");
            assert_eq!(file.service[0].name(), "UrlShortener");
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
    stop(gateway).await;

    // A gateway that does not route the URL shortener does not list it.
    let gateway = start(config(&[a.addr], Some("meshwork.orders.v1"))).await;
    let names = list_services_v1alpha(gateway.listen_addr()).await;
    assert!(!names.iter().any(|n| n == SHORTENER), "{names:?}");
    assert!(names.iter().any(|n| n == "grpc.health.v1.Health"), "{names:?}");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_calls_on_one_connection() {
    let (a, b) = (backend(0).await, backend(1).await);
    let gateway = start(config(&[a.addr, b.addr], Some(SHORTENER))).await;
    let channel = channel(gateway.listen_addr()).await;
    let calls = (0..500).map(|i| {
        let mut client = UrlShortenerClient::new(channel.clone());
        tokio::spawn(async move { resolve(&mut client, &format!("k{i}")).await })
    });
    let results = futures::future::join_all(calls).await;
    let failures: Vec<_> = results.into_iter().map(|r| r.unwrap()).filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{} failed, first: {:?}", failures.len(), failures.first());
    stop(gateway).await;
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> String {
    http1(addr, &format!("GET {path} HTTP/1.1\r\nHost: short.example\r\n{extra}Connection: close\r\n\r\n"), b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_redirects_and_pages() {
    let a = backend(3).await;
    let gateway = start(config(&[dead_port(), a.addr], Some(SHORTENER))).await;
    let addr = gateway.listen_addr();

    let found = get(addr, "/abc123", "Referer: https://News.Example/post/1\r\n").await;
    assert!(found.starts_with("HTTP/1.1 302"), "{found}");
    assert_eq!(header(&found, "location"), Some("https://example.com/3/abc123"), "{found}");
    assert_eq!(a.referrers.lock().unwrap().last().map(String::as_str), Some("news.example"));

    for (path, status) in [
        ("/missing", "404"),
        ("/old", "410"),
        ("/gone", "410"),
        ("/bad", "400"),
        ("/favicon.ico", "404"),
        ("/a/b", "404"),
    ] {
        let response = get(addr, path, "").await;
        assert!(response.starts_with(&format!("HTTP/1.1 {status}")), "{path}: {response}");
        assert!(!response.to_ascii_lowercase().contains("<html"), "{path}: {response}");
    }
    let root = get(addr, "/", "").await;
    assert!(root.starts_with("HTTP/1.1 200") && root.contains("meshwork"), "{root}");
    let health = get(addr, "/healthz", "").await;
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");
    let post =
        http1(addr, "POST /abc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", b"").await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let not_grpc = http1(
        addr,
        &format!("POST /{SHORTENER}/Resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"),
        b"{}",
    )
    .await;
    assert!(not_grpc.starts_with("HTTP/1.1 415"), "{not_grpc}");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirect_pool_down_is_503() {
    let gateway = start(config(&[dead_port()], Some(SHORTENER))).await;
    let response = get(gateway.listen_addr(), "/abc", "").await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    stop(gateway).await;
}

fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_over_http1_downstream_is_not_html() {
    let a = backend(5).await;
    let gateway = start(config(&[a.addr], Some(SHORTENER))).await;
    let addr = gateway.listen_addr();
    let body = grpc_frame(&ResolveRequest { code: "h1code".into(), referrer: String::new(), skip_click: true });
    let head = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\nTE: trailers\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    let response = http1(addr, &head(&format!("/{SHORTENER}/Resolve")), &body).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(header(&response, "content-type"), Some("application/grpc"), "{response}");
    assert!(response.contains("https://example.com/5/h1code"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("<html"), "{response}");

    let unknown = http1(addr, &head("/meshwork.nope.v1.Nope/Do"), &body).await;
    assert!(unknown.starts_with("HTTP/1.1 200"), "{unknown}");
    assert_eq!(header(&unknown, "grpc-status"), Some("12"), "{unknown}");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_drains_in_flight_calls() {
    let a = backend(1).await;
    let gateway = start(config(&[a.addr], Some(SHORTENER))).await;
    let addr = gateway.listen_addr();
    let mut client = UrlShortenerClient::new(channel(addr).await);
    let call = tokio::spawn(async move { resolve(&mut client, "slow").await });
    // Let the call reach the backend, then shut down while it is in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway.inflight(), 1);
    let started = std::time::Instant::now();
    stop(gateway).await;
    let elapsed = started.elapsed();
    assert_eq!(call.await.unwrap().unwrap(), "https://example.com/1/slow");
    assert!(elapsed < Duration::from_secs(4), "shutdown waited for the call only, took {elapsed:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener is closed after shutdown");
}

#[test]
fn spawn_rejects_bad_config_and_busy_port() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = GatewayConfig::new(busy.local_addr().unwrap());
    config.pools.insert("p".into(), PoolConfig::new(["127.0.0.1:1"]));
    let err = meshwork_gateway::spawn(config.clone()).unwrap_err().to_string();
    assert!(err.starts_with("cannot listen on"), "{err}");

    config.listen = dead_port();
    config.routes.push(RouteConfig::new(SHORTENER, "missing"));
    let err = meshwork_gateway::spawn(config).unwrap_err().to_string();
    assert!(err.contains("unknown pool \"missing\""), "{err}");
}
