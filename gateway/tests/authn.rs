//! Authentication at the gateway (`[auth]`), end to end: the real gateway, a real tonic backend
//! that answers with the `meshwork-identity` it received, and real clients (tonic over h2c,
//! raw HTTP/1.1 for gRPC-Web and plain HTTP). Tokens come from `meshwork-identity`'s
//! development keys, as `meshwork token` mints them.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use meshwork_gateway::{
    AuthConfig, GatewayConfig, GatewayHandle, HttpRouteConfig, PoolConfig, RouteConfig, TranscodeRouteConfig,
};
use meshwork_identity::{ApiKeyFile, DevKeys, IDENTITY_HEADER, Identity};
use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
use meshwork_proto::pb::urlshortener::v1::*;
use serde_json::json;
use support::{TestReplica, header, http1, serve_replica, start, stop};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

const SHORTENER: &str = "meshwork.urlshortener.v1.UrlShortener";

/// A replica that answers with what it was told about the caller: `none`, `sub|roles|method`,
/// or `undecodable:<value>`.
struct Echo;

fn caller<T>(request: &Request<T>) -> String {
    let values: Vec<_> = request.metadata().get_all(IDENTITY_HEADER).iter().collect();
    match values.as_slice() {
        [] => "none".to_string(),
        [value] => match Identity::decode(value.as_bytes()) {
            Ok(id) => format!("{}|{}|{}", id.subject, id.roles.join(","), id.method.as_str()),
            Err(_) => format!("undecodable:{}", String::from_utf8_lossy(value.as_bytes())),
        },
        several => format!("{} values", several.len()),
    }
}

#[tonic::async_trait]
impl TestReplica for Echo {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        Ok(Response::new(ResolveResponse { long_url: caller(&request), ..Default::default() }))
    }

    async fn shorten(&self, request: Request<ShortenRequest>) -> Result<Response<ShortenResponse>, Status> {
        Ok(Response::new(ShortenResponse { code: caller(&request), ..Default::default() }))
    }
}

struct Mesh {
    gateway: GatewayHandle,
    keys: DevKeys,
    api_key: String,
    _data: tempfile::TempDir,
    _backend: tokio::sync::oneshot::Sender<()>,
}

/// The gateway with `[auth]` (development keys and one API key) in front of an [`Echo`]
/// replica: the service's route needs credentials, its `Shorten` method does not.
async fn mesh() -> Mesh {
    mesh_with(None, false).await
}

/// [`mesh`] whose gateway reads the time from `clock` (the system clock when `None`).
async fn mesh_with_clock(clock: Option<std::sync::Arc<dyn meshwork_clock::Clock>>) -> Mesh {
    mesh_with(clock, false).await
}

/// [`mesh`] on `clock`, with the gRPC fast path when `fast_path`.
async fn mesh_with(clock: Option<std::sync::Arc<dyn meshwork_clock::Clock>>, fast_path: bool) -> Mesh {
    let data = tempfile::tempdir().unwrap();
    let keys = DevKeys::load_or_create(data.path()).unwrap();
    let (api_key, entry) = meshwork_identity::generate("ci-bot", &["deployer".into()]).unwrap();
    let key_file = data.path().join("api-keys.toml");
    std::fs::write(&key_file, toml::to_string(&ApiKeyFile { keys: vec![entry] }).unwrap()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let backend = serve_replica(listener, health, Echo);

    let mut config = GatewayConfig::new(support::free_port());
    config.threads = 1;
    config.health_check.interval_ms = 200;
    config.pools.insert("shortener".into(), PoolConfig::new([backend_addr.to_string()]));
    config.routes.push(RouteConfig::new(SHORTENER, "shortener"));
    let mut open = RouteConfig::new(format!("{SHORTENER}/Shorten"), "shortener");
    open.allow_anonymous = true;
    config.routes.push(open);
    config.descriptor_sets.push(meshwork_proto::FILE_DESCRIPTOR_SET.into());
    config.http_routes.push(HttpRouteConfig::Transcode(TranscodeRouteConfig::new([SHORTENER])));
    config.auth = Some(AuthConfig { api_keys: Some(key_file), ..AuthConfig::dev(keys.jwks_path()) });
    config.fast_path = fast_path;
    let gateway = match clock {
        Some(clock) => support::start_with_clock(config, clock).await,
        None => start(config).await,
    };
    Mesh { gateway, keys, api_key, _data: data, _backend: backend }
}

async fn client(addr: SocketAddr) -> UrlShortenerClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    UrlShortenerClient::new(channel)
}

fn with_headers<T>(message: T, headers: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (name, value) in headers {
        request.metadata_mut().append(*name, MetadataValue::try_from(*value).unwrap());
    }
    request
}

/// Resolve (a protected method): the backend's view of the caller, or the refusal.
async fn resolve(client: &mut UrlShortenerClient<Channel>, headers: &[(&'static str, &str)]) -> Result<String, Status> {
    let request = with_headers(ResolveRequest { code: "c".into(), ..Default::default() }, headers);
    client.resolve(request).await.map(|r| r.into_inner().long_url)
}

/// Shorten (an anonymous method): the backend's view of the caller, or the refusal.
async fn shorten(client: &mut UrlShortenerClient<Channel>, headers: &[(&'static str, &str)]) -> Result<String, Status> {
    let request =
        with_headers(ShortenRequest { long_url: "https://example.com".into(), ..Default::default() }, headers);
    client.shorten(request).await.map(|r| r.into_inner().code)
}

fn unauthenticated(result: Result<String, Status>, expect: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            assert!(status.message().contains(expect), "message {:?} should contain {expect:?}", status.message());
        }
        Ok(answer) => panic!("call went through as {answer}; expected UNAUTHENTICATED ({expect})"),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_and_only_verified_identities_reach_services() {
    credentials_are_checked(false).await;
}

/// The same calls and verdicts on the gRPC fast path (`fast_path = true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_on_the_fast_path() {
    credentials_are_checked(true).await;
}

async fn credentials_are_checked(fast_path: bool) {
    let mesh = mesh_with(None, fast_path).await;
    let mut client = client(mesh.gateway.listen_addr()).await;
    let token = mesh.keys.mint("alice", &["admin".into(), "editor".into()], Duration::from_secs(300)).unwrap();

    // No credential on a protected route.
    unauthenticated(resolve(&mut client, &[]).await, "credentials required");

    // A good token: its identity reaches the backend.
    assert_eq!(resolve(&mut client, &[("authorization", &bearer(&token))]).await.unwrap(), "alice|admin,editor|jwt");

    // An API key, in its own header or as a bearer token.
    assert_eq!(resolve(&mut client, &[("x-api-key", &mesh.api_key)]).await.unwrap(), "ci-bot|deployer|api_key");
    assert_eq!(
        resolve(&mut client, &[("authorization", &bearer(&mesh.api_key))]).await.unwrap(),
        "ci-bot|deployer|api_key"
    );

    // Refused tokens, each with its reason.
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let expired = mesh.keys.mint_at("alice", &[], Duration::from_secs(60), an_hour_ago).unwrap();
    unauthenticated(resolve(&mut client, &[("authorization", &bearer(&expired))]).await, "expired");

    let bob = mesh.keys.mint("bob", &[], Duration::from_secs(300)).unwrap();
    let (signed, _) = token.rsplit_once('.').unwrap();
    let (_, bobs_signature) = bob.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{bobs_signature}");
    unauthenticated(resolve(&mut client, &[("authorization", &bearer(&forged))]).await, "signature does not verify");

    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let claims = |aud: &str, iss: &str| json!({"iss": iss, "aud": aud, "sub": "alice", "exp": now + 300});
    let other_audience = mesh.keys.sign(&claims("someone-else", meshwork_identity::DEV_ISSUER)).unwrap();
    unauthenticated(resolve(&mut client, &[("authorization", &bearer(&other_audience))]).await, "audience");
    let other_issuer = mesh.keys.sign(&claims(meshwork_identity::DEV_AUDIENCE, "https://evil.example")).unwrap();
    unauthenticated(resolve(&mut client, &[("authorization", &bearer(&other_issuer))]).await, "issuer");

    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = DevKeys::load_or_create(elsewhere.path()).unwrap();
    let unknown = stranger.mint("alice", &["admin".into()], Duration::from_secs(300)).unwrap();
    unauthenticated(resolve(&mut client, &[("authorization", &bearer(&unknown))]).await, "not in the JWKS");
    unauthenticated(resolve(&mut client, &[("x-api-key", "mwk_guessed0123456789")]).await, "unknown API key");
    unauthenticated(resolve(&mut client, &[("authorization", "Basic YWxpY2U6c2VjcmV0")]).await, "Bearer");

    // An anonymous route: open without credentials, closed to bad ones.
    assert_eq!(shorten(&mut client, &[]).await.unwrap(), "none");
    assert_eq!(shorten(&mut client, &[("authorization", &bearer(&token))]).await.unwrap(), "alice|admin,editor|jwt");
    unauthenticated(shorten(&mut client, &[("authorization", &bearer(&expired))]).await, "expired");

    // A client-sent identity never reaches the backend: not alone, not beside a good token.
    let forged_identity = Identity::new("root", vec!["admin".into()], meshwork_identity::Method::Jwt).encode();
    assert_eq!(shorten(&mut client, &[(IDENTITY_HEADER, &forged_identity)]).await.unwrap(), "none");
    assert_eq!(
        shorten(&mut client, &[(IDENTITY_HEADER, &forged_identity), (IDENTITY_HEADER, "junk")]).await.unwrap(),
        "none"
    );
    let answer = resolve(&mut client, &[(IDENTITY_HEADER, &forged_identity), ("authorization", &bearer(&token))]).await;
    assert_eq!(answer.unwrap(), "alice|admin,editor|jwt");
    unauthenticated(resolve(&mut client, &[(IDENTITY_HEADER, &forged_identity)]).await, "credentials required");

    // The gateway's own health service needs no credentials.
    let channel =
        Channel::from_shared(format!("http://{}", mesh.gateway.listen_addr())).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(serving.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let metrics = (mesh.gateway.metrics_renderer())();
    for line in [
        "meshwork_gateway_auth_refused_total{reason=\"missing\"} 2",
        "meshwork_gateway_auth_refused_total{reason=\"expired\"} 2",
        "meshwork_gateway_auth_refused_total{reason=\"bad_signature\"} 1",
        "meshwork_gateway_auth_refused_total{reason=\"wrong_audience\"} 1",
        "meshwork_gateway_auth_refused_total{reason=\"wrong_issuer\"} 1",
        "meshwork_gateway_auth_refused_total{reason=\"unknown_kid\"} 1",
        "meshwork_gateway_auth_refused_total{reason=\"unknown_api_key\"} 1",
        "meshwork_gateway_auth_refused_total{reason=\"bad_header\"} 1",
        "meshwork_gateway_auth_verified_total{method=\"jwt\"} 3",
        "meshwork_gateway_auth_verified_total{method=\"api_key\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    stop(mesh.gateway).await;
}

/// Token expiry is judged by the gateway's clock, not the system's: with the gateway's clock two
/// hours ahead, a token valid for one hour from now is expired, and one issued two hours from
/// now is good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_follows_the_gateways_clock() {
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let since_epoch = later.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let clock = meshwork_clock::ManualClock::at_unix_ns(since_epoch.as_nanos() as i64);
    let mesh = mesh_with_clock(Some(std::sync::Arc::new(clock.clone()))).await;
    let mut client = client(mesh.gateway.listen_addr()).await;

    let valid_now = mesh.keys.mint("alice", &[], Duration::from_secs(3600)).unwrap();
    unauthenticated(resolve(&mut client, &[("authorization", &bearer(&valid_now))]).await, "expired");
    let valid_later = mesh.keys.mint_at("alice", &[], Duration::from_secs(3600), later).unwrap();
    assert_eq!(resolve(&mut client, &[("authorization", &bearer(&valid_later))]).await.unwrap(), "alice||jwt");

    // Moving the gateway's clock past that token's hour expires it too (the verified-token
    // cache keeps an entry only until the token's expiry).
    clock.advance_by(Duration::from_secs(3600 + 120));
    unauthenticated(resolve(&mut client, &[("authorization", &bearer(&valid_later))]).await, "expired");
    stop(mesh.gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_and_plain_http_are_refused_in_their_own_shape() {
    let mesh = mesh().await;
    let addr = mesh.gateway.listen_addr();
    let expired = mesh
        .keys
        .mint_at("alice", &[], Duration::from_secs(60), SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    // gRPC-Web without credentials on a protected method: a gRPC-Web shaped UNAUTHENTICATED.
    let frame = [0u8, 0, 0, 0, 0];
    let call = |extra: String| {
        format!(
            "POST /{SHORTENER}/Resolve HTTP/1.1\r\nHost: gw\r\nContent-Type: application/grpc-web+proto\r\n\
             X-Grpc-Web: 1\r\n{extra}Content-Length: 5\r\nConnection: close\r\n\r\n"
        )
    };
    let answer = http1(addr, &call(String::new()), &frame).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(header(&answer, "content-type"), Some("application/grpc-web+proto"), "{answer}");
    assert_eq!(header(&answer, "grpc-status"), Some("16"), "{answer}");

    // With a good token it goes through (the echo answers with a message).
    let token = mesh.keys.mint("alice", &[], Duration::from_secs(300)).unwrap();
    let answer = http1(addr, &call(format!("Authorization: Bearer {token}\r\n")), &frame).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(header(&answer, "grpc-status"), None, "{answer}");
    assert!(answer.contains("alice||jwt"), "{answer}");

    // Plain HTTP with a bad credential: 401 and WWW-Authenticate, even on an open path.
    let head =
        format!("GET /healthz HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {expired}\r\nConnection: close\r\n\r\n");
    let answer = http1(addr, &head, b"").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let challenge = header(&answer, "www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer realm=\"meshwork\", error=\"invalid_token\""), "{challenge}");
    assert!(answer.contains("JWT expired"), "{answer}");
    // Without one, the open path answers as always.
    let answer = http1(addr, "GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n", b"").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // JSON transcoding follows the gRPC routes: Resolve needs credentials, Shorten does not.
    let post = |path: &str, extra: String| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{extra}Content-Length: 2\r\n\
             Connection: close\r\n\r\n"
        )
    };
    let answer = http1(addr, &post("/v1/links/c:resolve", String::new()), b"{}").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("credentials required"), "{answer}");
    let answer = http1(addr, &post("/v1/links/c:resolve", format!("Authorization: Bearer {token}\r\n")), b"{}").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("alice||jwt"), "{answer}");
    let answer = http1(addr, &post("/v1/links/c:resolve", format!("Authorization: Bearer {expired}\r\n")), b"{}").await;
    assert!(answer.starts_with("HTTP/1.1 401") && answer.contains("JWT expired"), "{answer}");
    let forged = Identity::new("root", vec!["admin".into()], meshwork_identity::Method::Jwt).encode();
    let answer = http1(addr, &post("/v1/links", format!("{IDENTITY_HEADER}: {forged}\r\n")), b"{}").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"none\""), "{answer}");
    stop(mesh.gateway).await;
}

#[test]
fn auth_files_are_checked_before_the_gateway_starts() {
    let mut config = GatewayConfig::new(support::free_port());
    config.auth = Some(AuthConfig::dev("/nonexistent/identity/jwks.json"));
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("auth.jwks") && message.contains("/nonexistent/identity/jwks.json"), "{message}");
    let addr = config.listen;
    assert!(meshwork_gateway::spawn(config).is_err());
    // Nothing was bound.
    std::net::TcpListener::bind(addr).unwrap();
}
