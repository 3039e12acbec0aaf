//! The gRPC fast path (`fast_path`, the default): h2c connections served by the frame-level relay,
//! with the gateway's routing, balancing, outlier ejection, deadlines and metrics. Real tonic
//! replicas on loopback, the real gateway, real tonic clients over h2c.

mod support;

use support::{TestReplica, free_port, http1, serve_replica, start, stop};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use meshwork_gateway::{
    EndpointConfig, GatewayConfig, GatewayHandle, PoolConfig, RateLimitConfig, RouteConfig, SplitConfig,
};
use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
use meshwork_proto::pb::urlshortener::v1::*;
use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_health::ServingStatus;

const SHORTENER: &str = "meshwork.urlshortener.v1.UrlShortener";

/// A URL shortener replica: Resolve answers with its id, or sleeps (`sleep:MS`), or fails
/// UNAVAILABLE while `unavailable` is set.
#[derive(Clone)]
struct Shortener {
    id: usize,
    calls: Arc<AtomicU64>,
    unavailable: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl TestReplica for Shortener {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let code = request.into_inner().code;
        if let Some(ms) = code.strip_prefix("sleep:") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        if self.unavailable.load(Ordering::Relaxed) {
            return Err(Status::unavailable("replica says no"));
        }
        Ok(Response::new(ResolveResponse { long_url: format!("https://example.com/{}/{code}", self.id), link: None }))
    }
}

struct Backend {
    addr: SocketAddr,
    calls: Arc<AtomicU64>,
    unavailable: Arc<AtomicBool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn shortener(id: usize) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (calls, unavailable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    let replica = Shortener { id, calls: calls.clone(), unavailable: unavailable.clone() };
    let stop = serve_replica(listener, health_service, replica);
    Backend { addr, calls, unavailable, _stop: stop }
}

/// The streaming test service's one message.
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(uint32, tag = "3")]
    count: u32,
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// `/test.Stream/{ServerStream,ClientStream,Bidi}`.
#[derive(Clone)]
struct StreamService;

impl NamedService for StreamService {
    const NAME: &'static str = "test.Stream";
}

async fn handle(path: String, req: Request<Streaming<Msg>>) -> Result<Response<MsgStream>, Status> {
    let mut input = req.into_inner();
    match path.as_str() {
        "/test.Stream/ServerStream" => {
            let m = input.next().await.ok_or_else(|| Status::invalid_argument("no message"))??;
            let out = futures::stream::iter(
                (0..m.count).map(move |i| Ok(Msg { payload: vec![7; m.payload.len()], seq: u64::from(i), count: 0 })),
            );
            Ok(Response::new(Box::pin(out)))
        }
        "/test.Stream/ClientStream" => {
            let (mut n, mut bytes) = (0u64, 0usize);
            while let Some(m) = input.next().await {
                let m = m?;
                assert_eq!(m.seq, n, "client stream in order");
                n += 1;
                bytes += m.payload.len();
            }
            let out = Msg { payload: Vec::new(), seq: n, count: bytes as u32 };
            Ok(Response::new(Box::pin(futures::stream::once(async move { Ok(out) }))))
        }
        "/test.Stream/Bidi" => Ok(Response::new(Box::pin(input))),
        _ => Err(Status::unimplemented(path)),
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for StreamService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let svc = tower::service_fn(move |r: Request<Streaming<Msg>>| handle(path.clone(), r));
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Msg, Msg>::default());
            Ok(grpc.streaming(svc, req).await)
        })
    }
}

async fn stream_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(StreamService)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

fn pool(addrs: &[SocketAddr]) -> PoolConfig {
    PoolConfig {
        endpoints: addrs.iter().map(|a| EndpointConfig::from(a.to_string())).collect(),
        ..PoolConfig::default()
    }
}

/// A fast-path gateway with pool "p" over `shorteners` routed for the URL shortener.
fn config(shorteners: &[&Backend]) -> GatewayConfig {
    let mut config = GatewayConfig::new(free_port());
    config.threads = 2;
    config.fast_path = true;
    config.health_check.interval_ms = 100;
    config.health_check.timeout_ms = 500;
    config.pools.insert("p".into(), pool(&shorteners.iter().map(|b| b.addr).collect::<Vec<_>>()));
    config.routes.push(RouteConfig::new(SHORTENER, "p"));
    config
}

async fn channel(gateway: &GatewayHandle) -> Channel {
    Channel::from_shared(format!("http://{}", gateway.listen_addr())).unwrap().connect().await.unwrap()
}

/// Resolves `code`; returns the id of the replica that answered.
async fn resolve(client: &mut UrlShortenerClient<Channel>, code: &str) -> Result<usize, Status> {
    let request = Request::new(ResolveRequest { code: code.into(), referrer: String::new(), skip_click: true });
    let url = client.resolve(request).await?.into_inner().long_url;
    Ok(url.trim_start_matches("https://example.com/").split('/').next().unwrap().parse().unwrap())
}

fn codec() -> tonic_prost::ProstCodec<Msg, Msg> {
    tonic_prost::ProstCodec::default()
}

async fn streaming<S>(ch: &Channel, path: &'static str, input: S) -> Result<Response<Streaming<Msg>>, Status>
where
    S: Stream<Item = Msg> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
    grpc.streaming(Request::new(input), PathAndQuery::from_static(path), codec()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_streaming_calls_are_relayed() {
    let shortener = shortener(0).await;
    let streams = stream_backend().await;
    let mut config = config(&[&shortener]);
    config.pools.insert("s".into(), pool(&[streams]));
    config.routes.push(RouteConfig::new("test.Stream", "s"));
    let gateway = start(config).await;
    let ch = channel(&gateway).await;

    let mut client = UrlShortenerClient::new(ch.clone());
    for i in 0..20 {
        assert_eq!(resolve(&mut client, &format!("c{i}")).await.unwrap(), 0);
    }
    assert_eq!(shortener.calls.load(Ordering::Relaxed), 20);

    // Server streaming: 200 messages of 1 KiB.
    let request = futures::stream::iter([Msg { payload: vec![1; 1024], seq: 0, count: 200 }]);
    let mut out = streaming(&ch, "/test.Stream/ServerStream", request).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = out.next().await {
        let m = m.unwrap();
        assert_eq!((m.seq, m.payload.len()), (n, 1024));
        n += 1;
    }
    assert_eq!(n, 200);

    // Client streaming: 100 messages of 4 KiB (past the stream windows' first update).
    let input = futures::stream::iter((0..100).map(|i| Msg { payload: vec![2; 4096], seq: i, count: 0 }));
    let mut out = streaming(&ch, "/test.Stream/ClientStream", input).await.unwrap().into_inner();
    let summary = out.next().await.unwrap().unwrap();
    assert_eq!((summary.seq, summary.count), (100, 100 * 4096));

    // Bidi: each message comes back as it is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let input = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut out = streaming(&ch, "/test.Stream/Bidi", input).await.unwrap().into_inner();
    for i in 0..50u64 {
        tx.send(Msg { payload: vec![3; 100], seq: i, count: 0 }).await.unwrap();
        let echoed = out.next().await.unwrap().unwrap();
        assert_eq!(echoed.seq, i);
    }
    drop(tx);
    assert!(out.next().await.is_none(), "the stream ends when the client's does");

    // The gateway's own health service, through the fast path.
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(answer.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    stop(gateway).await;
}

/// An h2c connection to the gateway from `local` (any 127.0.0.0/8 address).
async fn h2c_from(gateway: &GatewayHandle, local: std::net::IpAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let tcp = socket.connect(gateway.listen_addr()).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    h2
}

/// A gRPC-Web Resolve over h2c: its grpc-status (trailers-only, or the trailers frame at the end
/// of the body) and the long URL when it answered.
async fn web_resolve(
    h2: &mut h2::client::SendRequest<bytes::Bytes>,
    code: &str,
    headers: &[(&str, &str)],
) -> (String, Option<String>) {
    use prost::Message as _;
    let message = ResolveRequest { code: code.into(), referrer: String::new(), skip_click: true }.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost/{SHORTENER}/Resolve"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = h2.send_request(request.body(()).unwrap(), false).unwrap();
    send.send_data(body.into(), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(response.headers()["content-type"], "application/grpc-web+proto", "{response:?}");
    if let Some(status) = response.headers().get("grpc-status") {
        return (status.to_str().unwrap().to_string(), None);
    }
    let mut stream = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.unwrap();
        let _ = stream.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body[0], 0, "a message frame first");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let answer = ResolveResponse::decode(&body[5..5 + len]).unwrap();
    assert_eq!(body[5 + len], 0x80, "then the trailers frame");
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]).to_ascii_lowercase();
    let status = trailers.split("grpc-status:").nth(1).unwrap_or_default();
    (status.split_whitespace().next().unwrap_or_default().to_string(), Some(answer.long_url))
}

/// Requests on an h2c connection that are not native gRPC (gRPC-Web, plain HTTP) go to the
/// proxy path in process and are answered as over HTTP/1.1, with the client's own address
/// for the rate limit; HTTP/1.1 on the same port is served by Pingora as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocols_take_the_proxy_path() {
    let shortener = shortener(0).await;
    let mut config = config(&[&shortener]);
    config.rate_limit = Some(RateLimitConfig { requests_per_second: 1, burst: Some(2), key: None });
    let gateway = start(config).await;

    let answer =
        http1(gateway.listen_addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Plain HTTP over h2c.
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let mut h2 = h2c_from(&gateway, local).await;
    let request = http::Request::builder().method("GET").uri("http://localhost/healthz").body(()).unwrap();
    let (response, _) = h2.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);

    // gRPC-Web over h2c: the proxy path translates it (content type, trailers in the body).
    let (status, url) = web_resolve(&mut h2, "web", &[]).await;
    assert_eq!((status.as_str(), url.as_deref()), ("0", Some("https://example.com/0/web")));
    // The burst of 2 per client is spent by a second call; a third is refused, also when it
    // claims another client's address.
    assert_eq!(web_resolve(&mut h2, "web2", &[]).await.0, "0");
    let spoofed = [("meshwork-client-ip", "10.9.9.9")];
    assert_eq!(web_resolve(&mut h2, "web3", &spoofed).await.0, "8", "rate limited");
    // Another client (another loopback address) has its own budget.
    let mut other = h2c_from(&gateway, "127.0.0.2".parse().unwrap()).await;
    assert_eq!(web_resolve(&mut other, "web4", &[]).await.0, "0", "another client's own budget");
    assert_eq!(shortener.calls.load(Ordering::Relaxed), 3);
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_service_and_splits_by_weight() {
    let (a, b) = (shortener(0).await, shortener(1).await);
    let mut config = config(&[&a]);
    config.pools.insert("q".into(), pool(&[b.addr]));
    config.routes[0].splits.push(SplitConfig { pool: "q".into(), weight: 100 });
    // A method-level override: GetLink goes to "q" only.
    config.routes.push(RouteConfig::new(format!("{SHORTENER}/Shorten"), "q"));
    let gateway = start(config).await;
    let mut client = UrlShortenerClient::new(channel(&gateway).await);

    let mut seen = [0; 2];
    for i in 0..60 {
        seen[resolve(&mut client, &format!("c{i}")).await.unwrap()] += 1;
    }
    assert!(seen[0] > 5 && seen[1] > 5, "a 50/50 split lands on both pools: {seen:?}");

    // Shorten is routed to "q", whose test replica answers UNIMPLEMENTED with its own message.
    let status = client.shorten(ShortenRequest::default()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unimplemented, "test replica"));

    // An unknown service: UNIMPLEMENTED from the gateway itself.
    let ch = channel(&gateway).await;
    let status = streaming(&ch, "/no.Such/Method", futures::stream::empty()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("unknown service no.Such"), "{}", status.message());
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_replica_is_ejected() {
    let (good, bad) = (shortener(0).await, shortener(1).await);
    bad.unavailable.store(true, Ordering::Relaxed);
    let mut config = config(&[&good, &bad]);
    config.outlier.consecutive_failures = 3;
    config.outlier.base_ejection_ms = 60_000;
    let gateway = start(config).await;
    let mut client = UrlShortenerClient::new(channel(&gateway).await);

    let mut failures = 0;
    for i in 0..40 {
        match resolve(&mut client, &format!("c{i}")).await {
            Ok(id) => assert_eq!(id, 0),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                failures += 1;
            }
        }
    }
    assert_eq!(failures, 3, "three UNAVAILABLE answers eject the replica");
    assert_eq!(bad.calls.load(Ordering::Relaxed), 3);
    let metrics = (gateway.metrics_renderer())();
    assert!(metrics.contains("meshwork_gateway_ejections_total{pool=\"p\"} 1"), "{metrics}");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_fast_path_calls() {
    let shortener = shortener(0).await;
    let gateway = start(config(&[&shortener])).await;
    let mut client = UrlShortenerClient::new(channel(&gateway).await);
    for i in 0..7 {
        resolve(&mut client, &format!("c{i}")).await.unwrap();
    }
    shortener.unavailable.store(true, Ordering::Relaxed);
    resolve(&mut client, "x").await.unwrap_err();
    let metrics = (gateway.metrics_renderer())();
    let ok = format!("meshwork_gateway_calls_total{{service=\"{SHORTENER}\",method=\"Resolve\",grpc_status=\"0\"}} 7");
    let unavailable =
        format!("meshwork_gateway_calls_total{{service=\"{SHORTENER}\",method=\"Resolve\",grpc_status=\"14\"}} 1");
    assert!(metrics.contains(&ok), "{metrics}");
    assert!(metrics.contains(&unavailable), "{metrics}");
    assert!(metrics.contains("meshwork_gateway_call_duration_seconds_count{"), "{metrics}");
    assert!(metrics.contains("meshwork_gateway_fast_path_streams_total 8"), "the relay served them: {metrics}");
    assert_eq!(gateway.inflight(), 0, "every call's in-flight count was released");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_end_calls_with_deadline_exceeded() {
    let shortener = shortener(0).await;
    let mut config = config(&[&shortener]);
    config.routes[0].timeout_ms = Some(300);
    let gateway = start(config).await;
    let mut client = UrlShortenerClient::new(channel(&gateway).await);

    // The route's cap.
    let started = Instant::now();
    let status = resolve(&mut client, "sleep:3000").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());

    // The client's own grpc-timeout, shorter than the cap.
    let mut request = Request::new(ResolveRequest { code: "sleep:3000".into(), ..ResolveRequest::default() });
    request.set_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let status = client.resolve(request).await.unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());

    // The connection still serves calls.
    assert_eq!(resolve(&mut client, "after").await.unwrap(), 0);
    let metrics = (gateway.metrics_renderer())();
    assert!(metrics.contains("grpc_status=\"4\""), "{metrics}");
    stop(gateway).await;
}

/// A drain tells fast-path connections GOAWAY and waits for their calls in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_calls_in_flight_finish() {
    let shortener = shortener(0).await;
    let gateway = start(config(&[&shortener])).await;
    let mut client = UrlShortenerClient::new(channel(&gateway).await);
    resolve(&mut client, "warm").await.unwrap();
    let slow = tokio::spawn(async move { resolve(&mut client, "sleep:500").await });
    while shortener.calls.load(Ordering::Relaxed) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gateway.inflight(), 1);
    let started = Instant::now();
    stop(gateway).await;
    assert_eq!(slow.await.unwrap().unwrap(), 0, "the call in flight finished");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// The per-client rate limit and the per-replica concurrency cap hold on the fast path; the
/// replica's slot is held until the call's stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_concurrency_caps_hold() {
    let shortener = shortener(0).await;
    let mut capped = config(&[&shortener]);
    capped.pools.get_mut("p").unwrap().max_inflight_per_replica = 1;
    let gateway = start(capped).await;
    let mut client = UrlShortenerClient::new(channel(&gateway).await);
    let mut slow_client = client.clone();
    let slow = tokio::spawn(async move { resolve(&mut slow_client, "sleep:400").await });
    while shortener.calls.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = resolve(&mut client, "busy").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("concurrency limit"), "{}", status.message());
    assert_eq!(slow.await.unwrap().unwrap(), 0);
    assert_eq!(resolve(&mut client, "free again").await.unwrap(), 0, "the slot was released");
    stop(gateway).await;

    let mut limited_config = config(&[&shortener]);
    limited_config.rate_limit = Some(RateLimitConfig { requests_per_second: 1, burst: Some(3), key: None });
    let gateway = start(limited_config).await;
    let mut client = UrlShortenerClient::new(channel(&gateway).await);
    let mut limited = 0;
    for i in 0..6 {
        if let Err(status) = resolve(&mut client, &format!("c{i}")).await {
            assert_eq!(status.code(), Code::ResourceExhausted);
            limited += 1;
        }
    }
    assert!((2..=3).contains(&limited), "{limited} of 6 calls over a burst of 3 at 1/s");
    let metrics = (gateway.metrics_renderer())();
    assert!(metrics.contains(&format!("meshwork_gateway_rate_limited_total {limited}")), "{metrics}");
    stop(gateway).await;
}
