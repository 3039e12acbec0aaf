//! The gRPC fast path (`fast_path = true`): plaintext connections that open with the HTTP/2
//! preface are served by `meshwork-h2relay`'s frame-level relay instead of Pingora's HTTP/2
//! proxy; everything else (HTTP/1.1, gRPC-Web over HTTP/1.1, TLS) goes to Pingora as before.
//!
//! Pingora stays the server framework: [`FastPath`] is a `ServerApp` around the proxy
//! application that peeks at the first 24 bytes of each plaintext connection (Pingora's own
//! peek, which rewinds them, under the head guard's deadline) and hands the connection either
//! to [`meshwork_h2relay::serve_connection`] or to the proxy.
//!
//! Each request is routed by [`ConnRouter`] with the gateway's own parts: the [`Router`]
//! (method overrides, header matches, weighted splits), [`Authn`] (the same verdicts as the
//! proxy, refusals as UNAUTHENTICATED), the per-client rate limit, and the pool's replica pick
//! (every policy, health, outlier state, slow start, concurrency caps). The built-in services
//! (reflection, health) are routes to the internal server like any other. A [`CallEnd`] rides
//! with each call (the relay's per-stream observer): it holds the replica's in-flight slot and
//! the drain counter until the stream ends, then feeds the outcome to the pool (passive health
//! and outlier ejection, the peak-EWMA estimate) and to the per-method metrics.
//!
//! Deadlines (`grpc-timeout`, capped by the route's `timeout_ms`) are enforced by the relay's
//! connection task: one timer per connection, CANCEL upstream and DEADLINE_EXCEEDED to the
//! client; the remaining time goes upstream as `grpc-timeout`.
//!
//! Not yet on the fast path: retries (an UNAVAILABLE answer or a refused stream reaches the
//! client, and counts against the replica), spans and trace propagation, request and response
//! message size caps, gRPC-Web and HTTP routes over h2c (answered UNIMPLEMENTED: use HTTP/1.1,
//! or leave `fast_path` off), TLS listeners and TLS to replicas, and h2c idle timeouts. On
//! drain, fast-path connections get GOAWAY like Pingora's: calls in flight finish, new streams
//! are refused (REFUSED_STREAM, which clients retry elsewhere).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use meshwork_h2relay::{CallObserver, Outcome, Reject, RequestHead, ServerConfig, UpstreamConfig, UpstreamPool};
use meshwork_telemetry::grpc_timeout::{format_grpc_timeout, parse_grpc_timeout};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tonic::Code;

use crate::authn::{self, Authn, Refusal, Verdict};
use crate::balance::{Policy, hash64};
use crate::grpc_errors::grpc_code_for_http_status;
use crate::metrics::{MethodStats, Metrics};
use crate::pool::{InflightSlot, Members, PickError, PickInput, Pool};
use crate::proxy::{InflightGuard, RateLimit};
use crate::routing::{Router, parse_grpc_path};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const IDENTITY: Bytes = Bytes::from_static(b"meshwork-identity");
const AUTHORIZATION: Bytes = Bytes::from_static(b"authorization");
const API_KEY: Bytes = Bytes::from_static(b"x-api-key");
const GRPC_TIMEOUT: Bytes = Bytes::from_static(b"grpc-timeout");

/// What every fast-path connection shares.
pub(crate) struct Shared {
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub rate_limit: Option<Arc<RateLimit>>,
    pub authn: Option<Arc<Authn>>,
    pub clock: Arc<dyn meshwork_clock::Clock>,
    /// The gateway's in-flight count (what a drain waits for).
    pub inflight: Arc<AtomicUsize>,
    pub server: Arc<ServerConfig>,
    pub upstream: UpstreamConfig,
    /// The relay's connection pools, one per replica address (made on first use).
    relays: ArcSwap<HashMap<SocketAddr, Arc<UpstreamPool>>>,
    relays_insert: Mutex<()>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        rate_limit: Option<Arc<RateLimit>>,
        authn: Option<Arc<Authn>>,
        clock: Arc<dyn meshwork_clock::Clock>,
        inflight: Arc<AtomicUsize>,
        server: ServerConfig,
        upstream: UpstreamConfig,
    ) -> Self {
        Self {
            router,
            metrics,
            rate_limit,
            authn,
            clock,
            inflight,
            server: Arc::new(server),
            upstream,
            relays: ArcSwap::from_pointee(HashMap::new()),
            relays_insert: Mutex::new(()),
        }
    }

    /// The relay's pool of connections to `addr`.
    fn relay(&self, addr: SocketAddr) -> Arc<UpstreamPool> {
        if let Some(pool) = self.relays.load().get(&addr) {
            return pool.clone();
        }
        let _guard = self.relays_insert.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.relays.load_full();
        if let Some(pool) = current.get(&addr) {
            return pool.clone();
        }
        let pool = UpstreamPool::new(addr, self.upstream.clone());
        let mut next = HashMap::clone(&current);
        next.insert(addr, pool.clone());
        self.relays.store(Arc::new(next));
        pool
    }
}

/// A Pingora application that serves h2c connections with the relay and gives every other
/// connection to `inner`; without `shared` (`fast_path = false`) every connection goes to
/// `inner` untouched.
pub(crate) struct FastPath<A> {
    inner: Arc<A>,
    shared: Option<Arc<Shared>>,
}

impl<A> FastPath<A> {
    pub fn new(inner: A, shared: Option<Arc<Shared>>) -> Self {
        Self { inner: Arc::new(inner), shared }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for FastPath<A> {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if let Some(shared) = &self.shared
            && stream.get_ssl_digest().is_none()
        {
            let mut buf = [0u8; H2_PREFACE.len()];
            match stream.try_peek(&mut buf).await {
                Ok(true) if &buf == H2_PREFACE => {
                    let client_ip = client_ip_hash(&stream);
                    let router = Arc::new(ConnRouter { shared: shared.clone(), client_ip });
                    // The gateway's drain (crate::server): GOAWAY, calls in flight finish.
                    let mut drain = shutdown.clone();
                    let drained = async move {
                        let _ = drain.wait_for(|draining| *draining).await;
                    };
                    let served =
                        meshwork_h2relay::serve_connection_until(stream, shared.server.clone(), router, drained).await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "fast path connection ended with an error");
                    }
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    // Normal when a client connects and closes (or an HTTP/1.1 one goes away).
                    tracing::debug!(error = %e, "read error while peeking for the HTTP/2 preface");
                    return None;
                }
            }
        }
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Hash of the client's IP address (0 when unknown), as the proxy path takes it.
fn client_ip_hash(stream: &Stream) -> u64 {
    let addr = stream.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet().map(|a| a.ip())));
    match addr {
        Some(std::net::IpAddr::V4(ip)) => hash64(&ip.octets()),
        Some(std::net::IpAddr::V6(ip)) => hash64(&ip.octets()),
        None => 0,
    }
}

/// Routes one connection's requests (it knows the client's address, for the rate limit's
/// default key and IP hashing).
pub(crate) struct ConnRouter {
    shared: Arc<Shared>,
    client_ip: u64,
}

fn reject(code: Code, message: impl Into<String>) -> Reject {
    Reject { grpc_status: code as u32, message: message.into() }
}

impl meshwork_h2relay::Router for ConnRouter {
    fn route(&self, head: &RequestHead) -> Result<meshwork_h2relay::Route, Reject> {
        let started = Instant::now();
        let s = &*self.shared;
        if !head.is_grpc() {
            return Err(reject(
                Code::Unimplemented,
                "the gateway's gRPC fast path serves native gRPC (content-type application/grpc) only; \
                 call gRPC-Web and HTTP routes over HTTP/1.1",
            ));
        }
        let path = std::str::from_utf8(&head.path).unwrap_or("");
        let Some((service, method)) = parse_grpc_path(path) else {
            return Err(reject(Code::Unimplemented, format!("malformed gRPC method path \"{path}\"")));
        };
        let mut remove_headers = Vec::new();
        let mut add_headers = Vec::new();
        // Only the gateway may say who calls (crate::authn::strip_identity).
        if head.header(&IDENTITY).is_some() {
            remove_headers.push(IDENTITY);
        }
        let mut verified = false;
        if let Some(authn) = &s.authn {
            let mut credentials = HeaderMap::new();
            for (name, value) in &head.headers {
                if (name == &AUTHORIZATION || name == &API_KEY)
                    && let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value))
                {
                    credentials.append(n, v);
                }
            }
            match authn.check_headers(&credentials, s.clock.system_time()) {
                (Verdict::Anonymous, _) => {}
                (Verdict::Verified(identity), encoded) => {
                    s.metrics.auth_verified[usize::from(identity.method == meshwork_identity::Method::ApiKey)]
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(value) = encoded {
                        add_headers.push((IDENTITY, Bytes::copy_from_slice(value.as_bytes())));
                        verified = true;
                    }
                    if !authn.forwards_credentials() {
                        remove_headers.push(AUTHORIZATION);
                        remove_headers.push(API_KEY);
                    }
                }
                (Verdict::Refused(refusal), _) => {
                    s.metrics.auth_refused[refusal.reason.index()].fetch_add(1, Ordering::Relaxed);
                    return Err(reject(Code::Unauthenticated, refusal.message));
                }
            }
        }
        let header = |name: &http::HeaderName| head.header(name.as_str().as_bytes()).map(|v| &v[..]);
        let Some(route) = s.router.lookup_by(service, method, header) else {
            return Err(reject(
                Code::Unimplemented,
                format!("unknown service {service}: no route for it at the gateway"),
            ));
        };
        let stats = s.metrics.method(path, service, method);
        if !(route.allow_anonymous || verified || authn::always_anonymous(service)) {
            stats.record(Code::Unauthenticated as u16, started.elapsed());
            let refusal = Refusal::missing();
            s.metrics.auth_refused[refusal.reason.index()].fetch_add(1, Ordering::Relaxed);
            return Err(reject(Code::Unauthenticated, refusal.message));
        }
        if let Some(limit) = &s.rate_limit {
            let key = limit
                .key
                .as_ref()
                .and_then(|k| head.header(k.as_str().as_bytes()))
                .map_or(self.client_ip, |v| hash64(v));
            if !limit.limiter.try_acquire(key) {
                s.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
                stats.record(Code::ResourceExhausted as u16, started.elapsed());
                return Err(reject(Code::ResourceExhausted, "rate limit exceeded for this client"));
            }
        }
        let client_timeout = head.grpc_timeout.as_deref().and_then(parse_grpc_timeout);
        let timeout = match (client_timeout, route.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if timeout != client_timeout
            && let Some(t) = timeout
        {
            // The route's cap is shorter: the replica is told the call's real deadline.
            remove_headers.push(GRPC_TIMEOUT);
            add_headers.push((GRPC_TIMEOUT, Bytes::from(format_grpc_timeout(t))));
        }
        let pool = route.pick_pool();
        let settings = pool.settings();
        let hash = match settings.policy {
            Policy::ConsistentHash => {
                settings.hash_key.as_ref().and_then(|k| head.header(k.as_str().as_bytes())).map(|v| hash64(v))
            }
            Policy::IpHash => Some(self.client_ip),
            _ => None,
        };
        if pool.tls().is_some() {
            stats.record(Code::Unavailable as u16, started.elapsed());
            return Err(reject(
                Code::Unavailable,
                format!("pool \"{}\" uses TLS; the fast path is h2c only", pool.name()),
            ));
        }
        let members = pool.members();
        let slot = match pool.pick(&members, PickInput { hash, exclude: &[] }) {
            Ok((_, slot)) => slot,
            Err(PickError::AllBusy) => {
                s.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                stats.record(Code::Unavailable as u16, started.elapsed());
                return Err(reject(
                    Code::Unavailable,
                    format!("every replica of pool \"{}\" is at its concurrency limit", pool.name()),
                ));
            }
            Err(PickError::NoneLeft) => {
                stats.record(Code::Unavailable as u16, started.elapsed());
                return Err(reject(
                    Code::Unavailable,
                    format!("no replica of pool \"{}\" is reachable (0 tried)", pool.name()),
                ));
            }
        };
        let upstream = s.relay(slot.replica().addr());
        let observer =
            CallEnd { stats, pool: pool.clone(), members, slot, started, _inflight: InflightGuard::new(&s.inflight) };
        Ok(meshwork_h2relay::Route {
            upstream,
            authority: None,
            remove_headers,
            add_headers,
            timeout,
            observer: Some(Box::new(observer)),
        })
    }
}

/// A fast-path call in flight: its replica slot and the drain count are held until the relay
/// says the stream ended, then the outcome goes to the pool and the metrics.
struct CallEnd {
    stats: Arc<MethodStats>,
    pool: Arc<Pool>,
    members: Arc<Members>,
    slot: InflightSlot,
    started: Instant,
    _inflight: InflightGuard,
}

/// The call's gRPC status as the metrics count it.
fn outcome_code(outcome: &Outcome) -> u16 {
    match outcome.grpc_status {
        Some(code) => code.min(u32::from(u16::MAX)) as u16,
        None if outcome.deadline_exceeded => Code::DeadlineExceeded as u16,
        None if outcome.client_cancelled => Code::Cancelled as u16,
        None if outcome.upstream_failed => Code::Unavailable as u16,
        None if outcome.http_status != 0 && outcome.http_status != 200 => {
            grpc_code_for_http_status(outcome.http_status) as u16
        }
        None => Code::Unknown as u16,
    }
}

impl CallObserver for CallEnd {
    fn on_end(self: Box<Self>, outcome: &Outcome) {
        let code = outcome_code(outcome);
        let replica = self.slot.replica();
        if let Some(after) = outcome.headers_after
            && self.pool.settings().policy == Policy::PeakEwma
        {
            replica.observe_latency(after);
        }
        // The proxy path's rules: UNAVAILABLE or a broken upstream counts against the replica;
        // a client's cancel and the gateway's own deadline say nothing about it.
        if outcome.upstream_failed && !outcome.deadline_exceeded || code == Code::Unavailable as u16 {
            self.pool.record_failure(&self.members, replica);
        } else if !outcome.client_cancelled && !outcome.deadline_exceeded {
            self.pool.record_success(replica);
        }
        self.stats.record(code, self.started.elapsed());
    }
}
