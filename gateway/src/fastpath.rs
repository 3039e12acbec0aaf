//! The gRPC fast path (`fast_path`, on by default): HTTP/2 connections (plaintext ones that open
//! with the preface, TLS ones whose ALPN picked h2) are served by `meshwork-h2relay`'s
//! frame-level relay instead of Pingora's HTTP/2 proxy; HTTP/1.1 goes to Pingora as before.
//!
//! Pingora stays the server framework: [`FastPath`] is a `ServerApp` around the proxy
//! application that peeks at the first 24 bytes of each plaintext connection (Pingora's own
//! peek, which rewinds them, under the head guard's deadline), or reads the TLS session's ALPN,
//! and hands the connection either to [`meshwork_h2relay::serve_connection_until`] or to the
//! proxy.
//!
//! Each native gRPC request is routed by [`ConnRouter`] with the gateway's own parts: the
//! [`Router`] (method overrides, header matches, weighted splits), [`Authn`] (the same verdicts
//! as the proxy, refusals as UNAUTHENTICATED), the per-client rate limit, and the pool's replica
//! pick (every policy, health, outlier state, slow start, concurrency caps). The built-in
//! services (reflection, health) are routes to the internal server like any other. A
//! [`CallEnd`] rides with each call (the relay's per-stream observer): it holds the replica's
//! in-flight slot and the drain count until the stream ends, then feeds the outcome to the pool
//! (passive health and outlier ejection, the peak-EWMA estimate), the per-method metrics and the
//! call's spans (a SERVER span per call and a CLIENT span per attempt, as on the proxy path,
//! with the attempt's context in the upstream request's `traceparent`).
//!
//! Retries: the relay keeps up to 64 KiB of each request (like Pingora's retry buffer) and asks
//! the [`CallEnd`] when an attempt fails before any of its answer reached the client; the
//! proxy path's rules decide (an attempt that never reached its replica is retried for every
//! call; a broken stream or a trailers-only UNAVAILABLE only for idempotent methods and within
//! the pool's retry budget; never past the deadline or the last replica).
//!
//! Deadlines (`grpc-timeout`, capped by the route's `timeout_ms`) are enforced by the relay's
//! connection task: one timer per connection, CANCEL upstream and DEADLINE_EXCEEDED to the
//! client; the remaining time goes upstream as `grpc-timeout`. Message size caps are the
//! relay's too: it reads each message's length prefix and ends a call whose message is over
//! `max_request_message_bytes` / `max_response_message_bytes` with RESOURCE_EXHAUSTED.
//!
//! Requests on a fast-path connection that are not native gRPC (gRPC-Web, the HTTP routes,
//! plain HTTP) go to the proxy application itself over an in-process HTTP/2 connection (a
//! duplex pipe the application serves like any h2c client's), so they get everything the
//! proxy path does; the client's address goes with each request in [`CLIENT_IP`] (the pipe
//! has none), for the rate limit and IP hashing.
//! Replicas of pools with `[pools.NAME.tls]` are reached over TLS (ALPN h2, the pool's CA and
//! client certificate). On drain, fast-path connections get GOAWAY like Pingora's: calls in
//! flight finish, new streams are refused (REFUSED_STREAM, which clients retry elsewhere).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use meshwork_h2relay::{
    AttemptFailure, CallObserver, Connect, Connecting, Io, Outcome, Reject, RequestHead, Retry, ServerConfig,
    UpstreamConfig, UpstreamPool,
};
use meshwork_telemetry::grpc_timeout::{format_grpc_timeout, parse_grpc_timeout};
use meshwork_telemetry::propagation;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use tonic::Code;

use crate::authn::{self, Authn, Refusal, Verdict};
use crate::balance::{Policy, hash64, ip_hash};
use crate::grpc_errors::grpc_code_for_http_status;
use crate::metrics::{MethodStats, Metrics};
use crate::pool::{InflightSlot, Members, PickError, PickInput, Pool};
use crate::proxy::{InflightGuard, RateLimit};
use crate::routing::{Router, parse_grpc_path};
use crate::tls::UpstreamTls;
use crate::trace::{self, CallSpan, CallTrace};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const IDENTITY: Bytes = Bytes::from_static(b"meshwork-identity");
const AUTHORIZATION: Bytes = Bytes::from_static(b"authorization");
const API_KEY: Bytes = Bytes::from_static(b"x-api-key");
const GRPC_TIMEOUT: Bytes = Bytes::from_static(b"grpc-timeout");
/// The client's address on a request handed to the proxy path in process (which has no socket
/// to read it from); whatever a client sends under this name is dropped.
pub(crate) const CLIENT_IP: &str = "meshwork-client-ip";

/// The gateway settings the fast path applies per call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub propagate_unsampled: bool,
    pub max_request_message_bytes: u32,
    pub max_response_message_bytes: u32,
}

/// Request bytes kept for retries, as Pingora's retry buffer on the proxy path.
const RETRY_BUFFER: usize = 64 * 1024;

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
    pub settings: Settings,
    /// Every pool (to forget the relay pools of replicas no pool has any more).
    pools: Vec<Arc<Pool>>,
    /// The relay's connection pools, one per replica address (and pool TLS), made on first use.
    relays: ArcSwap<RelayTable>,
    relays_insert: Mutex<()>,
    /// The proxy application as an upstream: requests that are not native gRPC (gRPC-Web,
    /// HTTP routes) go to it over an in-process HTTP/2 connection. Made with the first
    /// fast-path connection (it needs the server's shutdown watch).
    fallback: OnceLock<Arc<UpstreamPool>>,
}

/// A replica address, and the pool's TLS group for a pool with `[pools.NAME.tls]`.
type RelayKey = (SocketAddr, Option<u64>);
type RelayTable = HashMap<RelayKey, Arc<UpstreamPool>, foldhash::fast::RandomState>;

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
        settings: Settings,
        pools: Vec<Arc<Pool>>,
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
            settings,
            pools,
            relays: ArcSwap::from_pointee(RelayTable::default()),
            relays_insert: Mutex::new(()),
            fallback: OnceLock::new(),
        }
    }

    /// The relay's pool of connections to `addr` (over TLS when the pool has `tls`).
    fn relay(&self, addr: SocketAddr, tls: Option<&UpstreamTls>) -> Arc<UpstreamPool> {
        let key = (addr, tls.map(UpstreamTls::group_key));
        if let Some(pool) = self.relays.load().get(&key) {
            return pool.clone();
        }
        let _guard = self.relays_insert.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.relays.load_full();
        if let Some(pool) = current.get(&key) {
            return pool.clone();
        }
        let pool = match tls {
            Some(tls) => UpstreamPool::with_connector(
                addr,
                UpstreamConfig { scheme: Bytes::from_static(b"https"), ..self.upstream.clone() },
                tls.relay_connector(addr),
            ),
            None => UpstreamPool::new(addr, self.upstream.clone()),
        };
        // A new replica: the registry may have taken others away, whose pools (and their idle
        // connections) go now.
        let live: std::collections::HashSet<SocketAddr> = self
            .pools
            .iter()
            .flat_map(|p| p.members().replicas().iter().map(|r| r.addr()).collect::<Vec<_>>())
            .collect();
        let mut next: RelayTable =
            current.iter().filter(|((a, _), _)| live.contains(a)).map(|(k, v)| (*k, v.clone())).collect();
        next.insert(key, pool.clone());
        self.relays.store(Arc::new(next));
        pool
    }
}

/// The proxy application reached in process: each connection is a duplex pipe whose far end
/// the application serves as an h2c connection of its own.
struct Loopback<A> {
    app: Arc<A>,
    shutdown: ShutdownWatch,
}

impl<A: ServerApp + Send + Sync + 'static> Connect for Loopback<A> {
    fn connect(&self, _addr: SocketAddr) -> Connecting {
        let (near, far) = tokio::io::duplex(LOOPBACK_BUFFER);
        let (app, shutdown) = (self.app.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let _ = app.process_new(Box::new(far), &shutdown).await;
        });
        Box::pin(async move { Ok(Box::new(near) as Box<dyn Io>) })
    }
}

/// Bytes each direction of a loopback pipe holds.
const LOOPBACK_BUFFER: usize = 256 * 1024;

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
        let Some(shared) = &self.shared else { return self.inner.process_new(stream, shutdown).await };
        let h2 = if stream.get_ssl_digest().is_some() {
            // TLS: ALPN decided.
            matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
        } else {
            let mut buf = [0u8; H2_PREFACE.len()];
            match stream.try_peek(&mut buf).await {
                Ok(peeked) => peeked && &buf == H2_PREFACE,
                Err(e) => {
                    // Normal when a client connects and closes (or an HTTP/1.1 one goes away).
                    tracing::debug!(error = %e, "read error while peeking for the HTTP/2 preface");
                    return None;
                }
            }
        };
        if !h2 {
            return self.inner.process_new(stream, shutdown).await;
        }
        shared.fallback.get_or_init(|| {
            let loopback = Loopback { app: self.inner.clone(), shutdown: shutdown.clone() };
            let addr = SocketAddr::from(([127, 0, 0, 1], 0));
            UpstreamPool::with_connector(addr, shared.upstream.clone(), Arc::new(loopback))
        });
        let ip = client_ip(&stream);
        let router = Arc::new(ConnRouter {
            shared: shared.clone(),
            client_ip: ip.map_or(0, ip_hash),
            client_ip_text: ip.map(|ip| Bytes::from(ip.to_string())),
        });
        // The gateway's drain (crate::server): GOAWAY, calls in flight finish.
        let mut drain = shutdown.clone();
        let drained = async move {
            let _ = drain.wait_for(|draining| *draining).await;
        };
        let served = meshwork_h2relay::serve_connection_until(stream, shared.server.clone(), router, drained).await;
        if let Err(e) = served {
            tracing::debug!(error = %e, "fast path connection ended with an error");
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The client's IP address, when the socket knows it.
fn client_ip(stream: &Stream) -> Option<std::net::IpAddr> {
    stream.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet().map(|a| a.ip())))
}

/// Routes one connection's requests (it knows the client's address, for the rate limit's
/// default key and IP hashing).
pub(crate) struct ConnRouter {
    shared: Arc<Shared>,
    /// Hash of the client's IP address (0 when unknown).
    client_ip: u64,
    client_ip_text: Option<Bytes>,
}

fn reject(code: Code, message: impl Into<String>) -> Reject {
    Reject { grpc_status: code as u32, message: message.into() }
}

impl meshwork_h2relay::Router for ConnRouter {
    fn route(&self, head: &RequestHead) -> Result<meshwork_h2relay::Route, Reject> {
        let mut trace = CallTrace::Off;
        let routed = self.route_call(head, &mut trace);
        if let (Err(reject), Some(span)) = (&routed, trace.server_mut()) {
            trace::record_status(span, reject.grpc_status.min(u32::from(u16::MAX)) as u16);
        }
        routed
    }
}

impl ConnRouter {
    /// Routes one call; `trace` gets the call's trace once its method is known.
    fn route_call(&self, head: &RequestHead, trace: &mut CallTrace) -> Result<meshwork_h2relay::Route, Reject> {
        let started = Instant::now();
        let s = &*self.shared;
        if !head.is_grpc() {
            // gRPC-Web, the HTTP routes, plain HTTP: the proxy application's.
            let Some(fallback) = s.fallback.get() else {
                return Err(reject(Code::Unavailable, "the gateway is starting"));
            };
            let mut route = meshwork_h2relay::Route::to(fallback.clone());
            let name = Bytes::from_static(CLIENT_IP.as_bytes());
            route.remove_headers.push(name.clone());
            if let Some(ip) = &self.client_ip_text {
                route.add_headers.push((name, ip.clone()));
            }
            return Ok(route);
        }
        let path = std::str::from_utf8(&head.path).unwrap_or("");
        let Some((service, method)) = parse_grpc_path(path) else {
            return Err(reject(Code::Unimplemented, format!("malformed gRPC method path \"{path}\"")));
        };
        if meshwork_telemetry::telemetry::exporting() {
            let mut headers = HeaderMap::new();
            for name in [&propagation::TRACEPARENT, &propagation::TRACESTATE] {
                if let Some(v) = head.header(name.as_str().as_bytes())
                    && let Ok(v) = http::HeaderValue::from_bytes(v)
                {
                    headers.append(name.clone(), v);
                }
            }
            *trace = trace::server_span(&headers, path, service, method, s.settings.propagate_unsampled);
        }
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
        let idempotent = route.is_idempotent(method);
        let pool = route.pick_pool();
        if idempotent {
            // Only calls that may be retried feed the retry budget.
            pool.budget().deposit();
        }
        let settings = pool.settings();
        let hash = match settings.policy {
            Policy::ConsistentHash => {
                settings.hash_key.as_ref().and_then(|k| head.header(k.as_str().as_bytes())).map(|v| hash64(v))
            }
            Policy::IpHash => Some(self.client_ip),
            _ => None,
        };
        let members = pool.members();
        let (index, slot) = match pool.pick(&members, PickInput { hash, exclude: &[] }) {
            Ok(picked) => picked,
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
        let addr = slot.replica().addr();
        let upstream = s.relay(addr, pool.tls());
        let trace = std::mem::take(trace);
        let client_span = trace::client_span(&trace, path, addr, 1);
        trace::inject_fields(&trace, &client_span, &mut remove_headers, &mut add_headers);
        let observer = CallEnd {
            stats,
            shared: self.shared.clone(),
            pool: pool.clone(),
            members,
            slot,
            current: index,
            failed: Vec::new(),
            hash,
            idempotent,
            deadline: timeout.map(|t| started + t),
            path: head.path.clone(),
            trace,
            client_span,
            started,
            _inflight: InflightGuard::new(&s.inflight),
        };
        Ok(meshwork_h2relay::Route {
            upstream,
            authority: None,
            remove_headers,
            add_headers,
            timeout,
            observer: Some(Box::new(observer)),
            retry_buffer: RETRY_BUFFER,
            max_request_message: s.settings.max_request_message_bytes,
            max_response_message: s.settings.max_response_message_bytes,
        })
    }
}

/// A fast-path call in flight: its replica slot and the drain count are held until the relay
/// says the stream ended, then the outcome goes to the pool, the metrics and the spans. A
/// failed attempt may go to another replica ([`CallObserver::retry`]) by the proxy path's
/// rules (crate::proxy): one that never reached its replica always, others only for idempotent
/// methods and within the pool's retry budget; never past the deadline or the last replica.
struct CallEnd {
    stats: Arc<MethodStats>,
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    members: Arc<Members>,
    slot: InflightSlot,
    /// The current attempt's replica (index into `members`), and those that failed before.
    current: usize,
    failed: Vec<usize>,
    hash: Option<u64>,
    idempotent: bool,
    deadline: Option<Instant>,
    path: Bytes,
    trace: CallTrace,
    /// The current attempt's CLIENT span.
    client_span: CallSpan,
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
    fn on_end(mut self: Box<Self>, outcome: &Outcome) {
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
        let elapsed = self.started.elapsed();
        self.stats.record(code, elapsed);
        trace::access_log(&self.path, code, elapsed, &self.trace);
        if outcome.upstream_failed && outcome.grpc_status.is_none() {
            trace::record_failed_attempt(&mut self.client_span, "upstream");
        }
        trace::record_status(&mut self.client_span, code);
        if let Some(span) = self.trace.server_mut() {
            trace::record_status(span, code);
            span.set(opentelemetry::KeyValue::new("meshwork.attempts", i64::from(outcome.attempts)));
            span.set(opentelemetry::KeyValue::new("meshwork.pool", self.pool.name().to_string()));
        }
    }

    fn retry(&mut self, failure: AttemptFailure) -> Option<Retry> {
        let error = match failure {
            AttemptFailure::NotSent => "not sent",
            AttemptFailure::Broken => "broken",
            AttemptFailure::Unavailable => "unavailable",
        };
        trace::record_failed_attempt(&mut self.client_span, error);
        if failure != AttemptFailure::NotSent && !self.idempotent {
            return None;
        }
        self.failed.push(self.current);
        if self.failed.len() >= self.members.len() || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if failure != AttemptFailure::NotSent && !self.pool.budget().try_withdraw() {
            return None;
        }
        let (index, slot) = self.pool.pick(&self.members, PickInput { hash: self.hash, exclude: &self.failed }).ok()?;
        // The failed attempt counts against its replica here; a failure passed on to the
        // client is counted by `on_end`.
        self.pool.record_failure(&self.members, self.slot.replica());
        self.shared.metrics.retries.fetch_add(1, Ordering::Relaxed);
        let addr = slot.replica().addr();
        self.current = index;
        self.slot = slot;
        let attempt = self.failed.len() + 1;
        let path = std::str::from_utf8(&self.path).unwrap_or("");
        self.client_span = trace::client_span(&self.trace, path, addr, attempt);
        let (mut removed, mut set_headers) = (Vec::new(), Vec::new());
        if matches!(self.trace, CallTrace::Sampled(_)) {
            trace::inject_fields(&self.trace, &self.client_span, &mut removed, &mut set_headers);
        }
        Some(Retry { upstream: self.shared.relay(addr, self.pool.tls()), set_headers })
    }

    fn unavailable_message(&self, failure: AttemptFailure, relay_message: &str) -> Option<String> {
        // The proxy path's wording: which pool, how many replicas were tried.
        let pool = self.pool.name();
        Some(match failure {
            AttemptFailure::NotSent => {
                let tried = self.failed.len() + usize::from(!self.failed.contains(&self.current));
                format!("no replica of pool \"{pool}\" is reachable ({tried} tried): {relay_message}")
            }
            _ => format!("upstream of pool \"{pool}\" failed: {relay_message}"),
        })
    }
}
