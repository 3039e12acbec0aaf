//! What the gateway's test binaries share: free ports, test logging (`TEST_LOG=debug`), and
//! starting and stopping the real gateway from async tests.

#![allow(dead_code)]

use std::net::SocketAddr;

use meshwork_gateway::{GatewayConfig, GatewayHandle};

/// Returns a loopback address nothing listens on (outside the ephemeral range, see
/// [`meshwork_storage::testing::free_port`]).
pub fn free_port() -> SocketAddr {
    meshwork_storage::testing::free_addr()
}

/// Sends the gateway's logs to the test output when `TEST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .with_test_writer()
        .try_init();
}

/// Starts the gateway (its start blocks, so off the async worker).
pub async fn start(config: GatewayConfig) -> GatewayHandle {
    init_logs();
    tokio::task::spawn_blocking(move || meshwork_gateway::spawn(config)).await.unwrap().unwrap()
}

/// Starts the gateway on `clock` (a `ManualClock` the test moves by hand): the time of its
/// pools (ejection, slow start, retry budgets) and its rate limiter.
pub async fn start_with_clock(
    config: GatewayConfig,
    clock: std::sync::Arc<dyn meshwork_clock::Clock>,
) -> GatewayHandle {
    init_logs();
    tokio::task::spawn_blocking(move || meshwork_gateway::spawn_with_clock(config, clock)).await.unwrap().unwrap()
}

/// Drains and stops the gateway.
pub async fn stop(gateway: GatewayHandle) {
    tokio::task::spawn_blocking(move || gateway.shutdown()).await.unwrap().unwrap();
}

/// Sends one raw HTTP/1.1 request (with `Connection: close` in `head`) and returns the whole
/// response.
pub async fn http1(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns the value of header `name` in a raw HTTP/1.1 response.
pub fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The URL shortener's redirect route, as `meshwork up` builds it from the service's spec:
/// `GET /{code}` -> `Resolve` -> `302 Location: long_url`, 410 for expired or deleted links.
pub fn shortener_redirect() -> meshwork_gateway::RedirectRouteConfig {
    let mut route = meshwork_gateway::RedirectRouteConfig::new(
        "/{code}",
        "meshwork.urlshortener.v1.UrlShortener/Resolve",
        "long_url",
    );
    route.param_pattern = Some("[A-Za-z0-9_-]{1,64}".into());
    route.header_fields.insert("referer".into(), "referrer".into());
    route.head_fields.insert("skip_click".into(), "true".into());
    route.status.push(meshwork_gateway::StatusRuleConfig {
        grpc: "NOT_FOUND".into(),
        metadata: Some("meshwork-link-state".into()),
        values: vec!["expired".into(), "deleted".into()],
        http: 410,
        body: None,
    });
    route
}

use meshwork_proto::pb::urlshortener::v1::url_shortener_server::{UrlShortener, UrlShortenerServer};
use meshwork_proto::pb::urlshortener::v1::*;
use tonic::{Request, Response, Status};

/// What a test replica of the URL shortener does: Resolve, and Shorten or GetLink when a test
/// needs them.
/// [`shortener_server`] turns it into a tonic service whose other methods answer UNIMPLEMENTED.
#[tonic::async_trait]
pub trait TestReplica: Send + Sync + 'static {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status>;

    async fn shorten(&self, _: Request<ShortenRequest>) -> Result<Response<ShortenResponse>, Status> {
        Err(Status::unimplemented("test replica"))
    }

    async fn get_link(&self, _: Request<GetLinkRequest>) -> Result<Response<GetLinkResponse>, Status> {
        Err(Status::unimplemented("test replica"))
    }
}

/// A [`TestReplica`] as a full URL shortener service.
pub struct Replica<R>(R);

/// Returns the tonic service of a test replica.
pub fn shortener_server<R: TestReplica>(replica: R) -> UrlShortenerServer<Replica<R>> {
    UrlShortenerServer::new(Replica(replica))
}

#[tonic::async_trait]
impl<R: TestReplica> UrlShortener for Replica<R> {
    async fn shorten(&self, request: Request<ShortenRequest>) -> Result<Response<ShortenResponse>, Status> {
        self.0.shorten(request).await
    }

    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        self.0.resolve(request).await
    }

    async fn get_link(&self, request: Request<GetLinkRequest>) -> Result<Response<GetLinkResponse>, Status> {
        self.0.get_link(request).await
    }

    async fn get_stats(&self, _: Request<GetStatsRequest>) -> Result<Response<GetStatsResponse>, Status> {
        Err(Status::unimplemented("test replica"))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("test replica"))
    }
}

/// Serves `replica` and the gRPC health service `health` on `listener` until the returned
/// sender fires or is dropped.
pub fn serve_replica<R: TestReplica>(
    listener: tokio::net::TcpListener,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    replica: R,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(shortener_server(replica))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    stop
}
