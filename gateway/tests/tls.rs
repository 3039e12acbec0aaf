//! TLS at the gateway, with certificates made in the test (rcgen): the TLS listener (ALPN h2 and
//! http/1.1, optional client certificates), mutual TLS to replicas for calls and active health
//! checks, and clear configuration errors for missing or broken PEM files. Real tonic backends
//! and clients, the real gateway.

use meshwork_test_support::certs;
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certs::{Pki, pki, unrelated_ca_pem};
use meshwork_gateway::{GatewayConfig, ListenerTlsConfig, PoolConfig, RouteConfig, UpstreamTlsConfig};
use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
use meshwork_proto::pb::urlshortener::v1::*;
use support::{TestReplica, free_port, shortener_server, start, stop};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};

const SHORTENER: &str = "meshwork.urlshortener.v1.UrlShortener";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A URL shortener replica that records the client certificate of every Resolve call.
#[derive(Clone, Default)]
struct Recorder {
    /// The leaf client certificate (DER) seen per call; empty when none was presented.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[tonic::async_trait]
impl TestReplica for Recorder {
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        let leaf = request.peer_certs().and_then(|certs| certs.first().map(|c| c.to_vec())).unwrap_or_default();
        self.seen.lock().unwrap().push(leaf);
        let code = request.into_inner().code;
        Ok(Response::new(ResolveResponse { long_url: format!("https://example.com/{code}"), link: None }))
    }
}

struct Backend {
    addr: SocketAddr,
    recorder: Recorder,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts a replica (with gRPC health): h2c without `tls`, else TLS with the PKI's server
/// certificate, requiring client certificates signed by the PKI's CA when `require_client_cert`.
async fn backend(tls: Option<(&Pki, bool)>) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Recorder::default();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let mut builder = tonic::transport::Server::builder();
    if let Some((pki, require_client_cert)) = tls {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server_cert_pem, &pki.server_key_pem));
        if require_client_cert {
            config = config.client_ca_root(Certificate::from_pem(&pki.ca_pem));
        }
        builder = builder.tls_config(config).unwrap();
    }
    let router = builder.add_service(health).add_service(shortener_server(recorder.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Backend { addr, recorder, _stop: stop }
}

fn base_config() -> GatewayConfig {
    let mut config = GatewayConfig::new(free_port());
    config.threads = 1;
    config.grace_period_seconds = 1;
    config.health_check.interval_ms = 200;
    config
}

fn listener_tls(pki: &Pki) -> Option<ListenerTlsConfig> {
    Some(ListenerTlsConfig { cert: pki.server_cert.clone(), key: pki.server_key.clone(), client_ca: None })
}

fn mtls(pki: &Pki) -> UpstreamTlsConfig {
    UpstreamTlsConfig {
        ca: pki.ca.clone(),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        server_name: None,
    }
}

/// A tonic channel to `addr` over TLS trusting `ca_pem` (and presenting `identity`).
async fn tls_channel(addr: SocketAddr, ca_pem: &str, identity: Option<Identity>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    let endpoint = Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap();
    match tokio::time::timeout(CALL_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err("connect timed out".into()),
    }
}

async fn h2c_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn resolve(channel: Channel, code: &str, metadata: &[(&'static str, &'static str)]) -> Result<String, Status> {
    let mut request = Request::new(ResolveRequest { code: code.into(), referrer: String::new(), skip_click: true });
    request.set_timeout(CALL_TIMEOUT);
    for (k, v) in metadata {
        request.metadata_mut().insert(*k, v.parse().unwrap());
    }
    let mut client = UrlShortenerClient::new(channel);
    let call = client.resolve(request);
    match tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(2), call).await {
        Ok(result) => result.map(|r| r.into_inner().long_url),
        Err(_) => panic!("call {code} hung"),
    }
}

/// One request over a blocking rustls connection offering `alpn`; returns the negotiated
/// protocol and (for HTTP/1.1) the answer to `GET /healthz`.
fn raw_tls(addr: SocketAddr, ca_pem: &str, alpn: &[&[u8]]) -> (Option<Vec<u8>>, String) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap().to_owned();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let negotiated = tls.conn.alpn_protocol().map(|p| p.to_vec());
    let mut answer = String::new();
    if negotiated.as_deref() != Some(b"h2") {
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let _ = tls.read_to_string(&mut answer);
    }
    (negotiated, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_speaks_h2_and_http1_and_rejects_untrusting_clients() {
    meshwork_gateway::install_crypto_provider();
    let pki = pki();
    let replica = backend(None).await;
    let mut config = base_config();
    config.tls = listener_tls(&pki);
    config.pools.insert("shortener".into(), PoolConfig::new([replica.addr.to_string()]));
    config.routes.push(RouteConfig::new(SHORTENER, "shortener"));
    let gateway = start(config).await;
    let addr = gateway.listen_addr();

    let channel = tls_channel(addr, &pki.ca_pem, None).await.unwrap();
    assert_eq!(resolve(channel, "abc", &[]).await.unwrap(), "https://example.com/abc");

    // ALPN: h2 preferred, http/1.1 served on the same port.
    let ca = pki.ca_pem.clone();
    let (h2, h1) = tokio::task::spawn_blocking(move || {
        (raw_tls(addr, &ca, &[b"h2", b"http/1.1"]), raw_tls(addr, &ca, &[b"http/1.1"]))
    })
    .await
    .unwrap();
    assert_eq!(h2.0.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h1.0.as_deref(), Some(&b"http/1.1"[..]));
    assert!(h1.1.starts_with("HTTP/1.1 200"), "{}", h1.1);
    assert!(h1.1.trim_end().ends_with("\r\n\r\nok"), "{}", h1.1);

    // A client that does not trust the gateway's CA fails the handshake.
    let err = tls_channel(addr, &unrelated_ca_pem(), None).await.unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("certificate"), "{err}");
    // And plaintext h2c no longer works on a TLS port.
    let plain = Channel::from_shared(format!("http://{addr}")).unwrap().connect_timeout(CALL_TIMEOUT);
    if let Ok(Ok(channel)) = tokio::time::timeout(CALL_TIMEOUT, plain.connect()).await {
        assert!(resolve(channel, "abc", &[]).await.is_err());
    }
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_with_client_ca_requires_client_certificates() {
    meshwork_gateway::install_crypto_provider();
    let pki = pki();
    let replica = backend(None).await;
    let mut config = base_config();
    config.tls = Some(ListenerTlsConfig {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    });
    config.pools.insert("shortener".into(), PoolConfig::new([replica.addr.to_string()]));
    config.routes.push(RouteConfig::new(SHORTENER, "shortener"));
    let gateway = start(config).await;
    let addr = gateway.listen_addr();

    let identity = Identity::from_pem(&pki.client_cert_pem, &pki.client_key_pem);
    let channel = tls_channel(addr, &pki.ca_pem, Some(identity)).await.unwrap();
    assert_eq!(resolve(channel, "mine", &[]).await.unwrap(), "https://example.com/mine");

    // Without a client certificate the server refuses. With TLS 1.3 the client learns it when
    // it first uses the connection, so tonic's status varies with timing (UNKNOWN "received
    // fatal alert: CertificateRequired", CANCELLED "connection closed", UNAVAILABLE).
    if let Ok(channel) = tls_channel(addr, &pki.ca_pem, None).await {
        let status = resolve(channel, "anon", &[]).await.unwrap_err();
        assert_ne!(status.code(), Code::Ok);
    }
    assert!(replica.recorder.seen.lock().unwrap().len() == 1, "only the authenticated call reached the replica");
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mtls_calls_and_health_checks_reach_a_replica_that_requires_client_certs() {
    meshwork_gateway::install_crypto_provider();
    let pki = pki();
    let replica = backend(Some((&pki, true))).await;
    let mut config = base_config();
    let admin = free_port();
    config.admin_listen = Some(admin);
    // Verified by the name in the certificate...
    let mut with_cert = PoolConfig::new([replica.addr.to_string()]);
    with_cert.tls = Some(UpstreamTlsConfig { server_name: Some("localhost".into()), ..mtls(&pki) });
    // ...and by the endpoint's IP address (the default name), but without a client certificate.
    let mut without_cert = PoolConfig::new([replica.addr.to_string()]);
    without_cert.tls = Some(UpstreamTlsConfig { cert: None, key: None, ..mtls(&pki) });
    without_cert.outlier.consecutive_failures = Some(0);
    config.pools.insert("mtls".into(), with_cert);
    config.pools.insert("nocert".into(), without_cert);
    config.routes.push(RouteConfig::new(SHORTENER, "mtls"));
    let mut nocert_route = RouteConfig::new(SHORTENER, "nocert");
    nocert_route.headers = BTreeMap::from([("x-pool".to_string(), "nocert".to_string())]);
    config.routes.push(nocert_route);
    let gateway = start(config).await;

    // The first health round ran before start returned: over mTLS the replica is SERVING;
    // without a client certificate the same replica fails its checks.
    let routes: serde_json::Value = serde_json::from_str(&admin_get(admin, "/routes").await).unwrap();
    let health = |pool: &str| {
        let route = routes["routes"].as_array().unwrap().iter().find(|r| r["pool"] == pool).unwrap();
        route["replicas"][0]["healthy"].as_bool().unwrap()
    };
    assert!(health("mtls"), "{routes}");
    assert!(!health("nocert"), "{routes}");

    let channel = h2c_channel(gateway.listen_addr()).await;
    for i in 0..3 {
        let code = format!("c{i}");
        assert_eq!(resolve(channel.clone(), &code, &[]).await.unwrap(), format!("https://example.com/{code}"));
    }
    {
        let seen = replica.recorder.seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|leaf| *leaf == pki.client_cert_der), "the replica saw the gateway's client cert");
    }

    // The pool without a client certificate: UNAVAILABLE, promptly, and the call never ran.
    let started = std::time::Instant::now();
    let status = resolve(channel.clone(), "x", &[("x-pool", "nocert")]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(replica.recorder.seen.lock().unwrap().len(), 3);

    // The gateway's merged health agrees.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: SHORTENER.into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_in_front_of_mtls_upstream() {
    meshwork_gateway::install_crypto_provider();
    let pki = pki();
    let replica = backend(Some((&pki, true))).await;
    let mut config = base_config();
    config.tls = listener_tls(&pki);
    let mut pool = PoolConfig::new([replica.addr.to_string()]);
    pool.tls = Some(mtls(&pki));
    config.pools.insert("shortener".into(), pool);
    config.routes.push(RouteConfig::new(SHORTENER, "shortener"));
    let gateway = start(config).await;
    let channel = tls_channel(gateway.listen_addr(), &pki.ca_pem, None).await.unwrap();
    assert_eq!(resolve(channel, "both", &[]).await.unwrap(), "https://example.com/both");
    assert_eq!(*replica.recorder.seen.lock().unwrap(), vec![pki.client_cert_der.clone()]);
    // TLS with ALPN h2 in, mutual TLS out: the call took the gRPC fast path.
    let metrics = (gateway.metrics_renderer())();
    assert!(metrics.contains("meshwork_gateway_fast_path_streams_total 1"), "{metrics}");
    stop(gateway).await;
}

async fn admin_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The error `validate` (and `spawn`, before binding anything) gives for `config`.
fn config_error(config: &GatewayConfig) -> String {
    let msg = config.validate().unwrap_err().to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    let listen = config.listen;
    let spawned = meshwork_gateway::spawn(config.clone()).unwrap_err().to_string();
    assert_eq!(spawned, msg);
    // Nothing was bound: the port is still free.
    drop(std::net::TcpListener::bind(listen).unwrap());
    msg
}

#[test]
fn bad_tls_files_are_clear_config_errors() {
    meshwork_gateway::install_crypto_provider();
    let pki = pki();
    let garbage = pki.write("garbage.pem", "this is not a certificate\n");
    let broken =
        pki.write("broken.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    let missing = pki.dir().join("missing.pem");
    let mut pool = PoolConfig::new(["127.0.0.1:1"]);
    pool.tls = Some(mtls(&pki));
    let mut good = base_config();
    good.tls = listener_tls(&pki);
    good.pools.insert("p".into(), pool);
    good.validate().unwrap();

    type Change = Box<dyn Fn(&mut GatewayConfig)>;
    let cases: Vec<(Change, String)> = vec![
        (
            Box::new({
                let m = missing.clone();
                move |c| c.tls.as_mut().unwrap().cert = m.clone()
            }),
            format!("tls.cert = \"{}\": cannot read: No such file or directory", missing.display()),
        ),
        (
            Box::new({
                let g = garbage.clone();
                move |c| c.tls.as_mut().unwrap().cert = g.clone()
            }),
            format!("tls.cert = \"{}\": no PEM certificate", garbage.display()),
        ),
        (
            Box::new({
                let b = broken.clone();
                move |c| c.tls.as_mut().unwrap().cert = b.clone()
            }),
            format!("tls.cert = \"{}\": certificate 1 does not parse", broken.display()),
        ),
        (
            Box::new({
                let g = garbage.clone();
                move |c| c.tls.as_mut().unwrap().key = g.clone()
            }),
            format!("tls.key = \"{}\": no PEM private key", garbage.display()),
        ),
        (
            Box::new({
                let k = pki.client_key.clone();
                move |c| c.tls.as_mut().unwrap().key = k.clone()
            }),
            format!("tls.key = \"{}\": the key does not belong to the certificate", pki.client_key.display()),
        ),
        (
            Box::new({
                let g = garbage.clone();
                move |c| c.tls.as_mut().unwrap().client_ca = Some(g.clone())
            }),
            format!("tls.client_ca = \"{}\": no PEM certificate", garbage.display()),
        ),
        (
            Box::new({
                let m = missing.clone();
                move |c| c.pools.get_mut("p").unwrap().tls.as_mut().unwrap().ca = m.clone()
            }),
            format!("pools.p.tls.ca = \"{}\": cannot read", missing.display()),
        ),
        (
            Box::new({
                let g = garbage.clone();
                move |c| c.pools.get_mut("p").unwrap().tls.as_mut().unwrap().cert = Some(g.clone())
            }),
            format!("pools.p.tls.cert = \"{}\": no PEM certificate", garbage.display()),
        ),
        (
            Box::new({
                let k = pki.server_key.clone();
                move |c| c.pools.get_mut("p").unwrap().tls.as_mut().unwrap().key = Some(k.clone())
            }),
            format!("pools.p.tls.key = \"{}\": the key does not belong to the certificate", pki.server_key.display()),
        ),
        (
            Box::new(|c| c.pools.get_mut("p").unwrap().tls.as_mut().unwrap().key = None),
            "pools.p.tls: cert and key go together".to_string(),
        ),
        (
            Box::new(|c| c.pools.get_mut("p").unwrap().tls.as_mut().unwrap().server_name = Some("bad name".into())),
            "pools.p.tls.server_name = \"bad name\": not a DNS name or IP address".to_string(),
        ),
    ];
    for (change, expect) in cases {
        let mut config = good.clone();
        change(&mut config);
        let msg = config_error(&config);
        assert!(msg.starts_with("invalid gateway config: "), "{msg}");
        assert!(msg.contains(&expect), "expected {expect:?} in {msg:?}");
    }

    // The TOML keys.
    let text = format!(
        "listen = \"127.0.0.1:1\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[pools.p]\nendpoints = [\"127.0.0.1:2\"]\n\
         [pools.p.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nserver_name = \"localhost\"\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let parsed = GatewayConfig::from_toml_str(&text).unwrap();
    parsed.validate().unwrap();
    assert_eq!(parsed.pools["p"].tls.as_ref().unwrap().server_name.as_deref(), Some("localhost"));
    let typo = text.replace("server_name", "sni");
    assert!(GatewayConfig::from_toml_str(&typo).unwrap_err().to_string().contains("unknown field `sni`"));
}
