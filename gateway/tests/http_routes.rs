//! The gateway's HTTP routes end to end: gRPC-JSON transcoding from the URL shortener's
//! `google.api.http` annotations and the redirect route, with a real tonic backend and raw
//! HTTP/1.1 clients (what `curl` sends).

mod support;

use support::{TestReplica, serve_replica, start, stop};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshwork_gateway::{GatewayConfig, HttpRouteConfig, PoolConfig, RouteConfig, TranscodeRouteConfig};
use meshwork_proto::pb::urlshortener::v1::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status};

const SHORTENER: &str = "meshwork.urlshortener.v1.UrlShortener";

/// What the test replica saw.
#[derive(Default)]
struct Seen {
    shorten: Vec<ShortenRequest>,
    resolve: Vec<ResolveRequest>,
    metadata: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Shortener {
    seen: Arc<Mutex<Seen>>,
}

fn link(code: &str) -> Link {
    Link {
        code: code.into(),
        long_url: format!("https://example.com/{code}"),
        short_url: format!("http://s.example/{code}"),
        created_at_ms: 1_700_000_000_123,
        expires_at_ms: 0,
        custom_alias: false,
        ..Link::default()
    }
}

fn gone(state: &'static str) -> Status {
    let mut status = Status::not_found("no such code");
    status.metadata_mut().insert("meshwork-link-state", state.parse().unwrap());
    status
}

#[tonic::async_trait]
impl TestReplica for Shortener {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        let req = request.into_inner();
        self.seen.lock().unwrap().resolve.push(req.clone());
        match req.code.as_str() {
            "missing" => Err(Status::not_found("no such code")),
            "old" => Err(gone("expired")),
            "gone" => Err(gone("deleted")),
            "nourl" => Ok(Response::new(ResolveResponse { long_url: String::new(), link: None })),
            code => Ok(Response::new(ResolveResponse { long_url: format!("https://example.com/{code}"), link: None })),
        }
    }

    async fn shorten(&self, request: Request<ShortenRequest>) -> Result<Response<ShortenResponse>, Status> {
        let metadata: Vec<(String, String)> = ["x-tenant", "traceparent", "authorization", "grpc-timeout"]
            .iter()
            .filter_map(|k| Some((k.to_string(), request.metadata().get(*k)?.to_str().ok()?.to_string())))
            .collect();
        let req = request.into_inner();
        let mut seen = self.seen.lock().unwrap();
        seen.shorten.push(req.clone());
        seen.metadata = metadata;
        if req.custom_alias == "taken" {
            return Err(Status::already_exists("alias taken"));
        }
        if req.long_url.is_empty() {
            return Err(Status::invalid_argument("long_url: required"));
        }
        let code = if req.custom_alias.is_empty() { "abc1234".to_string() } else { req.custom_alias.clone() };
        let mut response = Response::new(ShortenResponse {
            code: code.clone(),
            short_url: format!("http://s.example/{code}"),
            link: Some(Link { long_url: req.long_url, ..link(&code) }),
        });
        response.metadata_mut().insert("x-served-by", "replica-1".parse().unwrap());
        Ok(response)
    }

    async fn get_link(&self, request: Request<GetLinkRequest>) -> Result<Response<GetLinkResponse>, Status> {
        match request.into_inner().code.as_str() {
            "missing" => Err(Status::not_found("no such code")),
            "forbidden" => Err(Status::permission_denied("not yours")),
            "who" => Err(Status::unauthenticated("sign in")),
            code => Ok(Response::new(GetLinkResponse { link: Some(link(code)) })),
        }
    }
}

struct Backend {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn backend() -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Shortener::default();
    let seen = service.seen.clone();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let stop = serve_replica(listener, health, service);
    Backend { addr, seen, _stop: stop }
}

fn config(replicas: &[SocketAddr]) -> GatewayConfig {
    let mut config = GatewayConfig::new(support::free_port());
    config.threads = 1;
    config.health_check.interval_ms = 200;
    config.pools.insert("shortener".into(), PoolConfig::new(replicas.iter().map(|a| a.to_string())));
    let mut route = RouteConfig::new(SHORTENER, "shortener");
    route.idempotent_methods = vec!["GetLink".into()];
    config.routes.push(route);
    config.descriptor_sets.push(meshwork_proto::FILE_DESCRIPTOR_SET.into());
    config.http_routes.push(HttpRouteConfig::Transcode(TranscodeRouteConfig::new([SHORTENER])));
    config.http_routes.push(HttpRouteConfig::Redirect(support::shortener_redirect()));
    config
}

/// An HTTP/1.1 answer: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status, headers, body: body.to_string() }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_calls_are_transcoded() {
    let b = backend().await;
    let gateway = start(config(&[b.addr])).await;
    let addr = gateway.listen_addr();

    // POST with a JSON body (lowerCamelCase or proto names), metadata from grpc-metadata-*,
    // the caller's trace context and deadline passed on.
    let body = br#"{"longUrl": "https://example.com/a", "ttl_seconds": "3600"}"#;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers = [
        JSON,
        ("Grpc-Metadata-X-Tenant", "t7"),
        ("Authorization", "Bearer abc"),
        ("traceparent", traceparent),
        ("grpc-timeout", "5S"),
    ];
    let answer = send(addr, "POST", "/v1/links", &headers, body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("grpc-metadata-x-served-by"), Some("replica-1"), "{answer:?}");
    let json = answer.json();
    assert_eq!(json["code"], "abc1234");
    assert_eq!(json["shortUrl"], "http://s.example/abc1234");
    assert_eq!(json["link"]["longUrl"], "https://example.com/a");
    // int64 as a string; defaults written (grpc-gateway's default).
    assert_eq!(json["link"]["createdAtMs"], "1700000000123");
    assert_eq!(json["link"]["expiresAtMs"], "0");
    assert_eq!(json["link"]["customAlias"], false);
    {
        let seen = b.seen.lock().unwrap();
        assert_eq!(seen.shorten[0].long_url, "https://example.com/a");
        assert_eq!(seen.shorten[0].ttl_seconds, 3600);
        let metadata: std::collections::HashMap<_, _> = seen.metadata.iter().cloned().collect();
        assert_eq!(metadata.get("x-tenant").map(String::as_str), Some("t7"), "{metadata:?}");
        assert_eq!(metadata.get("authorization").map(String::as_str), Some("Bearer abc"), "{metadata:?}");
        assert!(
            metadata.get("traceparent").is_some_and(|t| t.contains("0af7651916cd43dd8448eb211c80319c")),
            "{metadata:?}"
        );
        // The remaining time of the caller's deadline.
        assert!(metadata.get("grpc-timeout").is_some_and(|t| !t.is_empty()), "{metadata:?}");
    }

    // GET with a path variable.
    let answer = send(addr, "GET", "/v1/links/xyz", &[], b"").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["link"]["code"], "xyz");
    assert_eq!(answer.json()["link"]["shortUrl"], "http://s.example/xyz");

    // A verb suffix with a body: Resolve is POST /v1/links/{code}:resolve.
    let answer = send(addr, "POST", "/v1/links/abc:resolve", &[JSON], br#"{"skipClick": true}"#).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["longUrl"], "https://example.com/abc");
    let resolved = b.seen.lock().unwrap().resolve.last().cloned().unwrap();
    assert_eq!((resolved.code.as_str(), resolved.skip_click), ("abc", true));

    // Transcoded calls count in the gateway's metrics like proxied ones.
    let metrics = (gateway.metrics_renderer())();
    assert!(metrics.contains(&format!("service=\"{SHORTENER}\",method=\"Shorten\",grpc_status=\"0\"")), "{metrics}");
    assert!(metrics.contains("method=\"GetLink\""), "{metrics}");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_answer_google_rpc_status_json() {
    let b = backend().await;
    let gateway = start(config(&[b.addr])).await;
    let addr = gateway.listen_addr();

    for (method, path, body, status, code) in [
        ("GET", "/v1/links/missing", &b""[..], 404, 5),
        ("GET", "/v1/links/forbidden", b"", 403, 7),
        ("GET", "/v1/links/who", b"", 401, 16),
        ("POST", "/v1/links", br#"{"longUrl": "https://e.x", "customAlias": "taken"}"#, 409, 6),
        ("POST", "/v1/links", br#"{}"#, 400, 3),
        // The test replica does not implement GetStats.
        ("GET", "/v1/links/abc/stats", b"", 501, 12),
    ] {
        let answer = send(addr, method, path, &[JSON], body).await;
        assert_eq!(answer.status, status, "{method} {path}: {answer:?}");
        let json = answer.json();
        assert_eq!(json["code"], code, "{json}");
        assert!(json["message"].is_string() && json["details"] == json!([]), "{json}");
    }
    let missing = send(addr, "GET", "/v1/links/missing", &[], b"").await.json();
    assert_eq!(missing, json!({"code": 5, "message": "no such code", "details": []}));

    // Bad input is a 400 that says what is wrong, never a call.
    let calls_before = b.seen.lock().unwrap().shorten.len();
    for (body, expect) in [
        (&br#"{"longUrl": "#[..], "request body"),
        (br#"{"longUrl": "https://e.x"} trailing"#, "request body"),
        (br#"{"nope": 1}"#, "nope"),
        (br#"{"ttlSeconds": "soon"}"#, "request body"),
        (br#"[1, 2]"#, "request body"),
    ] {
        let answer = send(addr, "POST", "/v1/links", &[JSON], body).await;
        assert_eq!(answer.status, 400, "{}: {answer:?}", String::from_utf8_lossy(body));
        let json = answer.json();
        assert_eq!(json["code"], 3, "{json}");
        assert!(json["message"].as_str().unwrap().contains(expect), "{json}");
    }
    let answer = send(addr, "GET", "/v1/links/abc/stats?days=7&nope=1", &[], b"").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.json()["message"].as_str().unwrap().contains("unknown query parameter \"nope\""), "{answer:?}");
    let answer = send(addr, "GET", "/v1/links/abc/stats?days=soon", &[], b"").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(b.seen.lock().unwrap().shorten.len(), calls_before, "no call for bad input");

    // Unknown paths and methods.
    let answer = send(addr, "GET", "/v1/nothing", &[("Accept", "application/json")], b"").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.json()["code"], 5);
    let answer = send(addr, "GET", "/v1/nothing/here", &[], b"").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let answer = send(addr, "PUT", "/v1/links", &[JSON], b"{}").await;
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_eq!(answer.header("allow"), Some("POST"));
    let answer = send(addr, "PATCH", "/v1/links/abc", &[JSON], b"{}").await;
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_eq!(answer.header("allow"), Some("DELETE, GET, HEAD"));
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_pool_is_503_json() {
    let gateway = start(config(&[support::free_port()])).await;
    let answer = send(gateway.listen_addr(), "GET", "/v1/links/abc", &[], b"").await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.json()["code"], 14);
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirect_route_answers_302_404_410() {
    let b = backend().await;
    // A dead replica first: the redirect goes on to the live one.
    let gateway = start(config(&[support::free_port(), b.addr])).await;
    let addr = gateway.listen_addr();

    let answer = send(addr, "GET", "/abc123", &[("Referer", "https://News.Example/post/1?x=y")], b"").await;
    assert_eq!(answer.status, 302, "{answer:?}");
    assert_eq!(answer.header("location"), Some("https://example.com/abc123"));
    let seen = b.seen.lock().unwrap().resolve.last().cloned().unwrap();
    assert_eq!((seen.code.as_str(), seen.referrer.as_str(), seen.skip_click), ("abc123", "news.example", false));

    // HEAD answers the same without a body, and counts no click.
    let answer = send(addr, "HEAD", "/abc123", &[], b"").await;
    assert_eq!(answer.status, 302, "{answer:?}");
    assert_eq!(answer.header("location"), Some("https://example.com/abc123"));
    assert!(answer.body.is_empty(), "{answer:?}");
    assert!(b.seen.lock().unwrap().resolve.last().unwrap().skip_click);

    for (path, status) in
        [("/missing", 404), ("/old", 410), ("/gone", 410), ("/nourl", 502), ("/favicon.ico", 404), ("/a/b", 404)]
    {
        let answer = send(addr, "GET", path, &[], b"").await;
        assert_eq!(answer.status, status, "{path}: {answer:?}");
        assert!(!answer.body.to_ascii_lowercase().contains("<html"), "{path}: {answer:?}");
    }
    let answer = send(addr, "POST", "/abc", &[], b"").await;
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_eq!(answer.header("allow"), Some("GET, HEAD"));
    stop(gateway).await;
}

#[test]
fn bad_http_routes_are_config_errors() {
    let mut bad = config(&["127.0.0.1:1".parse().unwrap()]);
    let HttpRouteConfig::Redirect(redirect) = &mut bad.http_routes[1] else { panic!() };
    redirect.location_field = "link".into();
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("location_field link is not a string field"), "{err}");

    let mut bad = config(&["127.0.0.1:1".parse().unwrap()]);
    bad.http_routes[1] = HttpRouteConfig::Redirect(meshwork_gateway::RedirectRouteConfig::new(
        "/{nope}",
        "meshwork.urlshortener.v1.UrlShortener/Resolve",
        "long_url",
    ));
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("has no field \"nope\""), "{err}");

    let mut bad = config(&["127.0.0.1:1".parse().unwrap()]);
    bad.routes.clear();
    bad.routes.push(RouteConfig::new("meshwork.other.v1", "shortener"));
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("has no [[routes]] entry"), "{err}");

    let mut bad = config(&["127.0.0.1:1".parse().unwrap()]);
    bad.descriptor_sets.clear();
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("no described service"), "{err}");

    let toml = r#"
listen = "127.0.0.1:8080"
descriptor_sets = ["does-not-exist.bin"]
[pools.p]
endpoints = ["127.0.0.1:1"]
[[routes]]
service = "meshwork.urlshortener.v1.UrlShortener"
pool = "p"
[[http_routes]]
kind = "redirect"
path = "/{code}"
method = "meshwork.urlshortener.v1.UrlShortener/Resolve"
location_field = "long_url"
header_fields = { referer = "referrer" }
[[http_routes.status]]
grpc = "NOT_FOUND"
metadata = "meshwork-link-state"
values = ["expired"]
http = 410
[[http_routes]]
kind = "transcode"
services = ["meshwork"]
"#;
    let parsed = GatewayConfig::from_toml_str(toml).unwrap();
    assert_eq!(parsed.http_routes.len(), 2);
    let HttpRouteConfig::Redirect(r) = &parsed.http_routes[0] else { panic!("{parsed:?}") };
    assert_eq!(r.status[0].http, 410);
    assert_eq!(r.timeout_ms, 5000);
    let err = parsed.validate().unwrap_err().to_string();
    assert!(err.contains("cannot read does-not-exist.bin"), "{err}");
    let unknown =
        GatewayConfig::from_toml_str(&toml.replace("kind = \"transcode\"", "kind = \"transcode\"\nverbose = 1"));
    assert!(unknown.unwrap_err().to_string().contains("verbose"));
    let bad_kind = GatewayConfig::from_toml_str(&toml.replace("kind = \"transcode\"", "kind = \"rewrite\""));
    assert!(bad_kind.unwrap_err().to_string().contains("rewrite"));
}
