//! The Pingora [`ProxyHttp`] implementation: per-request routing, rate limits, deadlines,
//! replica choice (see [`crate::pool`]), retries, passive health from `grpc-status`, message size
//! caps, metrics, the `te: trailers` fix, gRPC-shaped errors and the plain HTTP answers (`/`,
//! `/healthz`, and the HTTP routes of [`crate::http_routes`]: JSON transcoding, redirects).
//! gRPC-Web calls take the gRPC path too; the hooks translate their edges with
//! [`crate::grpc_web`] (request content type and base64 body, response content type, trailers
//! as a body frame, CORS) and do nothing more for native gRPC.
//!
//! Retries: a failed connect is retried on another replica for every call. An answer of
//! UNAVAILABLE is retried on another replica only for methods marked idempotent, only while the
//! answer is trailers-only (nothing went downstream yet: `upstream_response_filter` turns it into
//! a retryable error), only within the pool's retry budget and the call's deadline, and only while
//! Pingora's retry buffer (64 KiB of request body) still holds the whole request. The same holds
//! for an upstream that breaks the stream before answering (a killed replica).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, header};
use meshwork_telemetry::propagation;
use pingora_core::protocols::ALPN;
use pingora_core::protocols::http::HttpTask;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use tonic::Code;

use crate::authn::{self, Authn, Refusal, Verdict};
use crate::balance::{Policy, hash64};
use crate::grpc_errors::{grpc_code_for_http_status, is_grpc_content_type, text_response, trailers, trailers_only};
use crate::grpc_web::{self, Cors, WebCall, WebMode, web_mode};
use crate::http_routes::{HttpRoutes, Lookup};
use crate::limits::{MessageMeter, RateLimiter};
use crate::metrics::{MethodStats, Metrics};
use crate::pool::{InflightSlot, Members, PickError, PickInput, Pool};
use crate::routing::{Route, Router, parse_grpc_path};
use crate::server::{H2_CONNECTION_WINDOW, H2_STREAM_WINDOW};
use crate::trace;
use meshwork_telemetry::grpc_timeout::{format_grpc_timeout, parse_grpc_timeout};

/// Error type for "every replica of the pool failed to connect".
const NO_REPLICA: ErrorType = ErrorType::Custom("NoReachableReplica");
/// Every remaining replica is at its concurrency cap.
const ALL_BUSY: ErrorType = ErrorType::Custom("AllReplicasBusy");
/// The call's deadline passed.
const DEADLINE: ErrorType = ErrorType::Custom("DeadlineExceeded");
/// A trailers-only UNAVAILABLE answer that is being retried on another replica.
const RETRY_UNAVAILABLE: ErrorType = ErrorType::Custom("RetryUnavailable");
/// A request message above `max_request_message_bytes`.
const REQUEST_TOO_LARGE: ErrorType = ErrorType::Custom("RequestMessageTooLarge");
/// A response message above `max_response_message_bytes`.
const RESPONSE_TOO_LARGE: ErrorType = ErrorType::Custom("ResponseMessageTooLarge");
/// A gRPC-Web text request body that is not valid base64.
const INVALID_WEB_TEXT: ErrorType = ErrorType::Custom("InvalidGrpcWebText");
/// A CANCELLED answer this close to the call's deadline is the replica enforcing the deadline.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// Counts requests in flight; the count drops when the guard (held by the request context) does.
#[derive(Debug)]
pub(crate) struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub(crate) fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    _inflight: InflightGuard,
    started: Instant,
    /// The request is a gRPC call (native, or gRPC-Web translated at the edges).
    grpc: bool,
    /// The call is gRPC-Web (None for native gRPC and plain HTTP: no cost on those paths).
    web: Option<Box<WebCall>>,
    /// The route chosen by the router.
    route: Option<Arc<Route>>,
    /// The pool chosen for the call (the route's, or one of its weighted splits).
    pool: Option<Arc<Pool>>,
    /// The pool's membership when the call started (indices below refer to it).
    members: Option<Arc<Members>>,
    /// The called method may be retried after UNAVAILABLE.
    idempotent: bool,
    /// Hash of the affinity key, for the hashing policies.
    hash: Option<u64>,
    /// When the call must be over (client `grpc-timeout` and route timeout).
    deadline: Option<Instant>,
    /// The replica of the current attempt (index into `members`).
    current: Option<usize>,
    /// The in-flight slot on that replica.
    slot: Option<InflightSlot>,
    /// When the current attempt was sent.
    attempt_started: Instant,
    /// Replicas this call failed on (connect failures, retried UNAVAILABLE).
    failed: Vec<usize>,
    /// The call's gRPC status once known (upstream headers or trailers, or the gateway's own).
    grpc_status: Option<u16>,
    /// Per-method counters.
    stats: Option<Arc<MethodStats>>,
    request_meter: MessageMeter,
    response_meter: MessageMeter,
    /// A request message above the cap was seen (its length); the rest of the body is dropped.
    request_too_large: Option<u64>,
    /// How the call is traced (its SERVER span when sampled).
    trace: trace::CallTrace,
    /// The CLIENT span of the current upstream attempt.
    client_span: trace::CallSpan,
    /// Upstream attempts made so far.
    attempts: usize,
}

impl RequestCtx {
    fn replica(&self) -> Option<&Arc<crate::pool::Replica>> {
        self.slot.as_ref().map(InflightSlot::replica)
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// Settings of the proxy that do not change while it runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProxySettings {
    pub connect_timeout: Duration,
    pub upstream_max_h2_streams: usize,
    pub max_request_message_bytes: u32,
    pub max_response_message_bytes: u32,
    /// `propagate_unsampled` of the configuration.
    pub propagate_unsampled: bool,
}

/// Per-client rate limiting: the limiter and the metadata key naming the client.
pub(crate) struct RateLimit {
    pub limiter: RateLimiter,
    pub key: Option<http::HeaderName>,
}

/// The gateway's proxy logic.
pub(crate) struct GatewayProxy {
    router: Arc<Router>,
    /// HTTP routes (transcoding, redirects); None when none are configured.
    http_routes: Option<Arc<HttpRoutes>>,
    inflight: Arc<AtomicUsize>,
    settings: ProxySettings,
    metrics: Arc<Metrics>,
    rate_limit: Option<Arc<RateLimit>>,
    /// Cross-origin gRPC-Web; None lets only same-origin pages call.
    cors: Option<Cors>,
    /// Authentication (`[auth]`); None lets every call through, as before.
    authn: Option<Arc<Authn>>,
    /// The time token expiry is judged by (the gateway's injected clock).
    clock: Arc<dyn meshwork_clock::Clock>,
}

impl GatewayProxy {
    pub fn new(
        router: Arc<Router>,
        http_routes: Option<Arc<HttpRoutes>>,
        inflight: Arc<AtomicUsize>,
        settings: ProxySettings,
        metrics: Arc<Metrics>,
        rate_limit: Option<Arc<RateLimit>>,
        cors: Option<Cors>,
    ) -> Self {
        let clock: Arc<dyn meshwork_clock::Clock> = Arc::new(meshwork_clock::SystemClock);
        Self { router, http_routes, inflight, settings, metrics, rate_limit, cors, authn: None, clock }
    }

    /// Checks credentials with `authn` (see [`crate::authn`]), judging token expiry by `clock`.
    pub fn with_authn(mut self, authn: Option<Arc<Authn>>, clock: Arc<dyn meshwork_clock::Clock>) -> Self {
        self.authn = authn;
        self.clock = clock;
        self
    }

    /// Answers a call refused for its credentials: UNAUTHENTICATED (trailers-only) for gRPC and
    /// gRPC-Web, HTTP 401 with `WWW-Authenticate` for everything else.
    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, refusal: &Refusal) -> Result<()> {
        self.metrics.auth_refused[refusal.reason.index()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason = refusal.reason.label(), message = %refusal.message, "call refused: unauthenticated");
        let headers = &session.req_header().headers;
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
        let web = match web_mode(content_type) {
            Some((mode, suffix)) => {
                let origin = self.cors.as_ref().and_then(|c| c.allow(headers.get(header::ORIGIN)));
                Some(WebCall::new(mode, suffix, origin))
            }
            None if is_grpc_content_type(content_type) => None,
            None => {
                let extra = [(header::WWW_AUTHENTICATE, refusal.www_authenticate())];
                return Self::respond_text(session, 401, &refusal.message, &extra).await;
            }
        };
        ctx.grpc_status = Some(Code::Unauthenticated as u16);
        self.respond_grpc(session, web.as_ref(), Code::Unauthenticated, &refusal.message).await
    }

    /// Whether the call is within its client's rate.
    fn admit(&self, session: &Session) -> bool {
        let Some(limit) = &self.rate_limit else { return true };
        let from_metadata =
            limit.key.as_ref().and_then(|k| session.req_header().headers.get(k)).map(|v| hash64(v.as_bytes()));
        let key = from_metadata.unwrap_or_else(|| client_ip_hash(session));
        limit.limiter.try_acquire(key)
    }

    /// Whether a failed attempt of this call may go to another replica now.
    fn may_retry(&self, ctx: &RequestCtx) -> bool {
        let (Some(pool), Some(members)) = (&ctx.pool, &ctx.members) else { return false };
        let tried = ctx.failed.len() + usize::from(ctx.current.is_some());
        ctx.idempotent
            && tried < members.len()
            && ctx.remaining().is_none_or(|r| !r.is_zero())
            && pool.budget().try_withdraw()
    }

    /// Answers a gRPC call directly with a trailers-only response (gRPC-Web shaped, with CORS,
    /// for a gRPC-Web call).
    async fn respond_grpc(
        &self,
        session: &mut Session,
        web: Option<&WebCall>,
        code: Code,
        message: &str,
    ) -> Result<()> {
        let resp = match web {
            None => trailers_only(code, message, !session.is_http2())?,
            Some(web) => grpc_web::trailers_only(web, self.cors.as_ref(), code, message)?,
        };
        session.write_response_tasks(vec![HttpTask::Header(Box::new(resp), true)]).await?;
        Ok(())
    }

    /// Answers a CORS preflight (`OPTIONS` on a gRPC path): 204 with the CORS headers for an
    /// allowed origin, else 403 without them (the browser then blocks the call).
    async fn preflight(&self, session: &mut Session) -> Result<()> {
        let origin = session.req_header().headers.get(header::ORIGIN);
        let Some((cors, origin)) = self.cors.as_ref().and_then(|c| Some((c, c.allow(origin)?))) else {
            let body =
                "cross-origin gRPC-Web calls from this origin are not allowed (see [cors] in the gateway config)";
            return Self::respond_text(session, 403, body, &[]).await;
        };
        let mut resp = ResponseHeader::build(204, Some(8))?;
        for (name, value) in cors.preflight(&origin) {
            resp.insert_header(name, value)?;
        }
        session.write_response_header(Box::new(resp), true).await?;
        Ok(())
    }

    /// Answers with a small text body (no body for HEAD).
    async fn respond_text(
        session: &mut Session,
        status: u16,
        body: &str,
        extra: &[(header::HeaderName, HeaderValue)],
    ) -> Result<()> {
        let (mut resp, body) = text_response(status, body)?;
        for (name, value) in extra {
            resp.insert_header(name.clone(), value.clone())?;
        }
        let head = session.req_header().method == Method::HEAD;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(if head { None } else { Some(body) }, true).await?;
        Ok(())
    }

    /// Everything that is not native gRPC: `/`, `/healthz`, the HTTP routes, else 404/405/415.
    async fn handle_http(&self, session: &mut Session) -> Result<()> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let get = method == Method::GET || method == Method::HEAD;
        let allow = [(header::ALLOW, HeaderValue::from_static("GET, HEAD"))];
        if method == Method::OPTIONS && parse_grpc_path(&path).is_some() {
            return self.preflight(session).await;
        }
        match path.as_str() {
            "/" if get => {
                let body = "meshwork gateway: gRPC (h2c), gRPC-Web and HTTP routes on this port";
                Self::respond_text(session, 200, body, &[]).await
            }
            "/healthz" if get => Self::respond_text(session, 200, "ok", &[]).await,
            "/" | "/healthz" => Self::respond_text(session, 405, "method not allowed", &allow).await,
            _ => {
                if let Some(routes) = self.http_routes.clone() {
                    match routes.lookup(&method, &path) {
                        Lookup::None => {}
                        Lookup::WrongMethod(methods) => {
                            let allow = HeaderValue::from_str(&methods).unwrap_or(HeaderValue::from_static("GET"));
                            return Self::respond_text(session, 405, "method not allowed", &[(header::ALLOW, allow)])
                                .await;
                        }
                        _ if !self.admit(session) => {
                            self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
                            return Self::respond_text(session, 429, "rate limit exceeded for this client", &[]).await;
                        }
                        Lookup::Transcode(binding, values) => return routes.transcode(session, binding, values).await,
                        Lookup::Redirect(route, values) => return routes.redirect(session, route, values).await,
                    }
                }
                if parse_grpc_path(&path).is_some() && method == Method::POST {
                    let body = "gRPC calls need content-type application/grpc, or application/grpc-web or \
                                application/grpc-web-text for gRPC-Web";
                    return Self::respond_text(session, 415, body, &[]).await;
                }
                if let Some((status, body)) = HttpRoutes::not_found_json(&session.req_header().headers, &method, &path)
                {
                    let mut resp = ResponseHeader::build(status, Some(3))?;
                    resp.insert_header(header::CONTENT_TYPE, "application/json")?;
                    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
                    session.write_response_header(Box::new(resp), method == Method::HEAD).await?;
                    if method != Method::HEAD {
                        session.write_response_body(Some(Bytes::from(body)), true).await?;
                    }
                    return Ok(());
                }
                Self::respond_text(session, 404, "not found", &[]).await
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let started = Instant::now();
        RequestCtx {
            _inflight: InflightGuard::new(&self.inflight),
            started,
            grpc: false,
            web: None,
            route: None,
            pool: None,
            members: None,
            idempotent: false,
            hash: None,
            deadline: None,
            current: None,
            slot: None,
            attempt_started: started,
            failed: Vec::new(),
            grpc_status: None,
            stats: None,
            request_meter: MessageMeter::default(),
            response_meter: MessageMeter::default(),
            request_too_large: None,
            trace: trace::CallTrace::Off,
            client_span: trace::CallSpan::default(),
            attempts: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Identity first, for every kind of request (gRPC, gRPC-Web, HTTP routes): the upstream
        // sees only an identity the gateway verified (crate::authn).
        authn::strip_identity(session.req_header_mut());
        if let Some(authn) = &self.authn {
            match authn.authenticate(session.req_header_mut(), self.clock.system_time()) {
                Verdict::Anonymous => {}
                Verdict::Verified(identity) => {
                    self.metrics.auth_verified[usize::from(identity.method == meshwork_identity::Method::ApiKey)]
                        .fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Refused(refusal) => {
                    self.refuse(session, ctx, &refusal).await?;
                    return Ok(true);
                }
            }
        }
        let req = session.req_header();
        let content_type = req.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
        if !is_grpc_content_type(content_type) {
            // Native gRPC never gets here: gRPC-Web costs it nothing.
            let Some((mode, suffix)) = web_mode(content_type) else {
                self.handle_http(session).await?;
                return Ok(true);
            };
            let origin = self.cors.as_ref().and_then(|c| c.allow(req.headers.get(header::ORIGIN)));
            ctx.web = Some(Box::new(WebCall::new(mode, suffix, origin)));
        }
        ctx.grpc = true;
        let web = ctx.web.as_deref();
        let path = req.uri.path();
        let Some((service, method)) = parse_grpc_path(path) else {
            let message = format!("malformed gRPC method path \"{path}\"");
            self.respond_grpc(session, web, Code::Unimplemented, &message).await?;
            return Ok(true);
        };
        ctx.trace = trace::server_span(&req.headers, path, service, method, self.settings.propagate_unsampled);
        let Some(route) = self.router.lookup(service, method, &req.headers) else {
            let message = format!("unknown service {service}: no route for it at the gateway");
            self.respond_grpc(session, web, Code::Unimplemented, &message).await?;
            return Ok(true);
        };
        let stats = self.metrics.method(path, service, method);
        if !authn::admits(route, &req.headers) && !authn::always_anonymous(service) {
            stats.record(Code::Unauthenticated as u16, ctx.started.elapsed());
            self.refuse(session, ctx, &Refusal::missing()).await?;
            return Ok(true);
        }
        ctx.idempotent = route.is_idempotent(method);
        if !self.admit(session) {
            self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            stats.record(Code::ResourceExhausted as u16, ctx.started.elapsed());
            let web = ctx.web.as_deref();
            self.respond_grpc(session, web, Code::ResourceExhausted, "rate limit exceeded for this client").await?;
            return Ok(true);
        }
        let client_timeout =
            session.req_header().headers.get("grpc-timeout").and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let timeout = match (client_timeout, route.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ctx.deadline = timeout.map(|t| ctx.started + t);
        let pool = route.pick_pool();
        ctx.hash = match pool.settings().policy {
            Policy::ConsistentHash => pool
                .settings()
                .hash_key
                .as_ref()
                .and_then(|k| session.req_header().headers.get(k))
                .map(|v| hash64(v.as_bytes())),
            Policy::IpHash => Some(client_ip_hash(session)),
            _ => None,
        };
        if ctx.idempotent {
            // Only calls that may be retried feed the retry budget.
            pool.budget().deposit();
        }
        ctx.members = Some(pool.members());
        ctx.stats = Some(stats);
        ctx.pool = Some(pool.clone());
        ctx.route = Some(route.clone());
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let (Some(pool), Some(members)) = (&ctx.pool, &ctx.members) else {
            return Error::e_explain(ErrorType::InternalError, "no pool chosen for this request");
        };
        // A previous attempt that got an answer (a retried UNAVAILABLE or a broken stream).
        if let Some(previous) = ctx.current.take() {
            ctx.failed.push(previous);
        }
        if !ctx.failed.is_empty() {
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
        }
        let remaining = ctx.remaining();
        if remaining.is_some_and(|r| r.is_zero()) {
            return Error::e_explain(DEADLINE, "the call's deadline passed before a replica answered");
        }
        let (idx, slot) = match pool.pick(members, PickInput { hash: ctx.hash, exclude: &ctx.failed }) {
            Ok(picked) => picked,
            Err(PickError::AllBusy) => {
                self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                return Error::e_explain(
                    ALL_BUSY,
                    format!("every replica of pool \"{}\" is at its concurrency limit", pool.name()),
                );
            }
            Err(PickError::NoneLeft) => {
                return Error::e_explain(
                    NO_REPLICA,
                    format!("no replica of pool \"{}\" is reachable ({} tried)", pool.name(), ctx.failed.len()),
                );
            }
        };
        let mut peer = match pool.tls() {
            Some(tls) => tls.peer(slot.replica().addr()),
            None => HttpPeer::new(slot.replica().addr(), false, String::new()),
        };
        ctx.attempts += 1;
        ctx.client_span =
            trace::client_span(&ctx.trace, session.req_header().uri.path(), slot.replica().addr(), ctx.attempts);
        ctx.current = Some(idx);
        ctx.slot = Some(slot);
        ctx.attempt_started = Instant::now();
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = self.settings.upstream_max_h2_streams;
        peer.options.connection_timeout =
            Some(remaining.map_or(self.settings.connect_timeout, |r| r.min(self.settings.connect_timeout)));
        // Pingora's read timeout is per read; for a unary call the wait for the answer is one
        // read, so this ends the call at its deadline. Streams also get the forwarded
        // grpc-timeout, which the upstream enforces.
        peer.options.read_timeout = remaining;
        peer.options.h2_stream_window_size = Some(H2_STREAM_WINDOW);
        peer.options.h2_connection_window_size = Some(H2_CONNECTION_WINDOW);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(pool), Some(members), Some(idx)) = (&ctx.pool, &ctx.members, ctx.current.take()) {
            if let Some(replica) = ctx.slot.take() {
                pool.record_failure(members, replica.replica());
            }
            ctx.failed.push(idx);
            let retry = ctx.failed.len() < members.len() && ctx.remaining().is_none_or(|r| !r.is_zero());
            tracing::warn!(pool = pool.name(), replica = %peer, error = %e, retry, "connect to replica failed");
            trace::record_failed_attempt(&mut ctx.client_span, "connect");
            e.set_retry(retry);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if *e.etype() == RETRY_UNAVAILABLE {
            // Decided in upstream_response_filter (budget already taken).
            e.set_retry(!session.as_ref().retry_buffer_truncated());
            return e;
        }
        let upstream_broke = *e.esource() == ErrorSource::Upstream
            && session.response_written().is_none()
            && !matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout);
        if upstream_broke && ctx.grpc {
            if let (Some(pool), Some(members), Some(slot)) = (&ctx.pool, &ctx.members, &ctx.slot) {
                pool.record_failure(members, slot.replica());
            }
            trace::record_failed_attempt(&mut ctx.client_span, e.etype().as_str());
            let retry = !session.as_ref().retry_buffer_truncated() && self.may_retry(ctx);
            e.set_retry(retry);
            return e;
        }
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.grpc {
            // Pingora 0.9 strips `te` from HTTP/1.x downstream requests; gRPC servers require it.
            upstream_request.insert_header(header::TE, HeaderValue::from_static("trailers"))?;
            // The body sent upstream may differ from the client's: the size cap and an invalid
            // gRPC-Web text body drop its rest, and text bodies shrink when decoded. A
            // content-length the body then misses makes the replica reset the stream (an HTTP/2
            // protocol error) instead of answering. (A lookup, no allocation: HTTP/2 gRPC clients
            // rarely send one.)
            upstream_request.remove_header(&header::CONTENT_LENGTH);
            if let Some(web) = &ctx.web {
                upstream_request.insert_header(header::CONTENT_TYPE, web.upstream_content_type.clone())?;
                upstream_request.remove_header("x-grpc-web");
            }
            trace::inject(&ctx.trace, &ctx.client_span, upstream_request)?;
            if let Some(remaining) = ctx.remaining() {
                if remaining.is_zero() {
                    return Error::e_explain(DEADLINE, "the call's deadline passed before it was sent");
                }
                // Never indexed: the remaining time is new on every call, and indexing it fills
                // the upstream connection's HPACK table with stale deadlines, which evict the
                // headers that do repeat and make every lookup walk the chain of them (about
                // 7,600 instructions per call under callgrind; docs/BENCHMARKS.md).
                let Some(timeout) = propagation::header_value(format_grpc_timeout(remaining)) else {
                    return Error::e_explain(DEADLINE, "the remaining time is not a header value");
                };
                upstream_request.insert_header("grpc-timeout", timeout)?;
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !ctx.grpc {
            return Ok(());
        }
        if ctx.request_too_large.is_some() {
            body.take();
            return Ok(());
        }
        if let Some(web) = ctx.web.as_mut().filter(|w| w.mode == WebMode::Text) {
            if web.invalid_request {
                body.take();
                return Ok(());
            }
            let text = body.as_deref().unwrap_or_default();
            match web.decode_request(text, end_of_stream) {
                Ok(decoded) => *body = Some(decoded),
                Err(grpc_web::InvalidBase64) => {
                    // As for an oversized message: an error here would leave Pingora waiting
                    // for the upstream's answer. The rest of the body is dropped instead; the
                    // replica sees the request end before a whole message (so a unary handler
                    // never runs) and its answer is replaced in upstream_response_filter.
                    tracing::debug!("grpc-web-text request body is not valid base64");
                    web.invalid_request = true;
                    body.take();
                }
            }
        }
        if let Some(chunk) = body
            && let Err(len) = ctx.request_meter.feed(chunk, self.settings.max_request_message_bytes)
        {
            // An error here would leave the upstream stream waiting for the rest of the body
            // (Pingora keeps waiting for the answer). Instead the rest of the body is dropped, the
            // upstream sees the stream end early and answers; that answer is replaced by
            // RESOURCE_EXHAUSTED in upstream_response_filter.
            tracing::debug!(len, "request message above the size cap");
            ctx.request_too_large = Some(len);
            body.take();
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !ctx.grpc {
            return Ok(());
        }
        if let Some(len) = ctx.request_too_large {
            return Error::e_explain(
                REQUEST_TOO_LARGE,
                format!(
                    "request message of {len} bytes is above the limit of {}",
                    self.settings.max_request_message_bytes
                ),
            );
        }
        if ctx.web.as_ref().is_some_and(|w| w.invalid_request) {
            return Error::e_explain(INVALID_WEB_TEXT, "the grpc-web-text request body is not valid base64");
        }
        let Some(replica) = ctx.replica().cloned() else { return Ok(()) };
        if ctx.pool.as_ref().is_some_and(|p| p.settings().policy == Policy::PeakEwma) {
            replica.observe_latency(ctx.attempt_started.elapsed());
        }
        let status = upstream_response.headers.get("grpc-status").and_then(|v| parse_status(v.as_bytes()));
        let Some(status) = status else {
            if upstream_response.status.as_u16() != 200 {
                ctx.grpc_status = Some(grpc_code_for_http_status(upstream_response.status.as_u16()) as u16);
            }
            return Ok(());
        };
        // Trailers-only answer: the call's outcome is known now.
        ctx.grpc_status = Some(status);
        trace::record_status(&mut ctx.client_span, status);
        if status == Code::Cancelled as u16 && ctx.remaining().is_some_and(|r| r < DEADLINE_SLACK) {
            // The replica gave up at the forwarded deadline; tonic says CANCELLED, gRPC means
            // DEADLINE_EXCEEDED.
            upstream_response.insert_header("grpc-status", HeaderValue::from(Code::DeadlineExceeded as i32))?;
            ctx.grpc_status = Some(Code::DeadlineExceeded as u16);
        }
        let (Some(pool), Some(members)) = (&ctx.pool, &ctx.members) else { return Ok(()) };
        if status != Code::Unavailable as u16 {
            pool.record_success(&replica);
            return Ok(());
        }
        pool.record_failure(members, &replica);
        if !session.as_ref().retry_buffer_truncated() && self.may_retry(ctx) {
            return Error::e_explain(RETRY_UNAVAILABLE, "replica answered UNAVAILABLE; retrying on another replica");
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if ctx.grpc
            && let Some(chunk) = body
            && let Err(len) = ctx.response_meter.feed(chunk, self.settings.max_response_message_bytes)
        {
            body.take();
            return Error::e_explain(
                RESPONSE_TOO_LARGE,
                format!(
                    "response message of {len} bytes is above the limit of {}",
                    self.settings.max_response_message_bytes
                ),
            );
        }
        Ok(None)
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        upstream_trailers: &mut header::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(status) = upstream_trailers.get("grpc-status").and_then(|v| parse_status(v.as_bytes())) else {
            return Ok(());
        };
        ctx.grpc_status = Some(status);
        trace::record_status(&mut ctx.client_span, status);
        if status == Code::Cancelled as u16 && ctx.remaining().is_some_and(|r| r < DEADLINE_SLACK) {
            deadline_exceeded(upstream_trailers.get_mut("grpc-status"), &mut ctx.grpc_status);
        }
        if let (Some(pool), Some(members), Some(slot)) = (&ctx.pool, &ctx.members, &ctx.slot) {
            if status == Code::Unavailable as u16 {
                pool.record_failure(members, slot.replica());
            } else {
                pool.record_success(slot.replica());
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(web) = &ctx.web else { return Ok(()) };
        upstream_response.insert_header(header::CONTENT_TYPE, web.response_content_type.clone())?;
        // Text bodies grow, and the trailer frame is added: the length is not known.
        upstream_response.remove_header(&header::CONTENT_LENGTH);
        if let (Some(cors), Some(origin)) = (&self.cors, &web.allowed_origin) {
            cors.apply(upstream_response, origin)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(web) = ctx.web.as_deref().filter(|w| w.mode == WebMode::Text)
            && let Some(chunk) = body.as_mut()
            && !chunk.is_empty()
        {
            *chunk = web.encode_response(chunk);
        }
        Ok(None)
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        upstream_trailers: &mut header::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Bytes>> {
        // Pingora writes the returned bytes as the last body chunk instead of the trailers.
        Ok(ctx.web.as_deref().map(|web| web.trailer_frame(upstream_trailers)))
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let dead_downstream = *e.esource() == ErrorSource::Downstream
            && matches!(e.etype(), ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed);
        if dead_downstream {
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
        drain_before_close(session).await;
        if !ctx.grpc {
            let status = match e.etype() {
                ErrorType::HTTPStatus(code) => *code,
                _ if *e.esource() == ErrorSource::Upstream || *e.etype() == NO_REPLICA => 502,
                _ => 500,
            };
            if session.response_written().is_none() {
                let _ = Self::respond_text(session, status, "gateway error", &[]).await;
            }
            return FailToProxy { error_code: status, can_reuse_downstream: false };
        }
        let pool_name = ctx.pool.as_ref().map(|p| p.name()).unwrap_or("?");
        let (code, message) = match e.etype() {
            ErrorType::HTTPStatus(status) => (grpc_code_for_http_status(*status), format!("gateway: HTTP {status}")),
            etype if *etype == DEADLINE => (Code::DeadlineExceeded, "deadline exceeded at the gateway".to_string()),
            etype if *etype == INVALID_WEB_TEXT => {
                (Code::InvalidArgument, "the grpc-web-text request body is not valid base64".to_string())
            }
            ErrorType::ReadTimedout if ctx.deadline.is_some() => {
                (Code::DeadlineExceeded, "deadline exceeded while waiting for the replica".to_string())
            }
            etype if *etype == REQUEST_TOO_LARGE || *etype == RESPONSE_TOO_LARGE => {
                (Code::ResourceExhausted, raised_context(e))
            }
            etype if *etype == ALL_BUSY => {
                (Code::Unavailable, format!("every replica of pool \"{pool_name}\" is at its concurrency limit"))
            }
            etype if *etype == RETRY_UNAVAILABLE => {
                (Code::Unavailable, format!("replicas of pool \"{pool_name}\" answered UNAVAILABLE"))
            }
            etype if *etype == NO_REPLICA => (
                Code::Unavailable,
                format!("no replica of pool \"{pool_name}\" is reachable ({} tried)", ctx.failed.len()),
            ),
            _ if *e.esource() == ErrorSource::Upstream => {
                let tried = ctx.failed.len() + usize::from(ctx.current.is_some());
                if ctx.current.is_none() {
                    (
                        Code::Unavailable,
                        format!(
                            "no replica of pool \"{pool_name}\" is reachable ({tried} tried): {}",
                            e.etype().as_str()
                        ),
                    )
                } else {
                    (Code::Unavailable, format!("upstream of pool \"{pool_name}\" failed: {}", e.etype().as_str()))
                }
            }
            _ => (Code::Internal, format!("gateway error: {}", e.etype().as_str())),
        };
        ctx.grpc_status = Some(code as u16);
        if session.response_written().is_some() {
            // The upstream's headers went out: end the call with gRPC trailers where possible.
            if let Some(web) = &ctx.web {
                let task = HttpTask::Body(Some(web.trailer_frame(&trailers(code, &message))), true);
                let _ = session.write_response_tasks(vec![task]).await;
            } else if session.is_http2() {
                let task = HttpTask::Trailer(Some(Box::new(trailers(code, &message))));
                let _ = session.write_response_tasks(vec![task]).await;
            }
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
        match self.respond_grpc(session, ctx.web.as_deref(), code, &message).await {
            Ok(()) => FailToProxy { error_code: 200, can_reuse_downstream: false },
            Err(err) => {
                tracing::debug!(error = %err, "could not send gRPC error to downstream");
                FailToProxy { error_code: 0, can_reuse_downstream: false }
            }
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.started.elapsed();
        if let Some(stats) = &ctx.stats {
            // No status at all: the client went away (CANCELLED) or the answer had none (UNKNOWN).
            let code =
                ctx.grpc_status.unwrap_or(if e.is_some() { Code::Cancelled as u16 } else { Code::Unknown as u16 });
            stats.record(code, elapsed);
            trace::access_log(session.req_header().uri.path().as_bytes(), code, elapsed, &ctx.trace);
            if let Some(server_span) = ctx.trace.server_mut() {
                trace::record_status(server_span, code);
                server_span.set(opentelemetry::KeyValue::new("meshwork.attempts", ctx.attempts as i64));
                if let Some(pool) = &ctx.pool {
                    server_span.set(opentelemetry::KeyValue::new("meshwork.pool", pool.name().to_string()));
                }
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
            tracing::debug!(
                path = session.req_header().uri.path(),
                grpc = ctx.grpc,
                grpc_web = ctx.web.is_some(),
                pool = ctx.pool.as_ref().map(|p| p.name()).unwrap_or(""),
                replica = ?ctx.replica().map(|r| r.addr()),
                failed_attempts = ctx.failed.len(),
                status,
                grpc_status = ctx.grpc_status,
                error = e.map(|e| e.to_string()),
                elapsed_us = elapsed.as_micros() as u64,
                "request"
            );
        }
    }
}

/// The longest an error answer waits for the rest of an HTTP/1.1 request body.
const DRAIN_LIMIT: Duration = Duration::from_millis(100);

/// Reads what is left of an HTTP/1.1 request body (for at most [`DRAIN_LIMIT`]) before an error
/// answer closes the connection: closing with unread request bytes makes the kernel send a reset
/// instead of a FIN, and a reset can destroy the answer before the client has read it (seen with
/// a call to a dead pool, whose body the gateway never reads). h2 streams end on their own.
async fn drain_before_close(session: &mut Session) {
    if !session.is_http2() {
        let _ = tokio::time::timeout(DRAIN_LIMIT, session.drain_request_body()).await;
    }
}

/// The context an error was raised with. `error_while_proxy` wraps errors with the peer's
/// address (`more_context` makes the original the cause), so the message is further down.
fn raised_context(e: &Error) -> String {
    let mut current = e;
    // The cause is a `Box<Error>` boxed again as a trait object.
    while let Some(inner) = current
        .cause
        .as_ref()
        .and_then(|c| c.downcast_ref::<Box<Error>>().map(AsRef::as_ref).or_else(|| c.downcast_ref::<Error>()))
        .filter(|inner| inner.etype() == e.etype())
    {
        current = inner;
    }
    current.context.as_ref().map(|c| c.as_str().to_string()).unwrap_or_default()
}

/// Rewrites a `grpc-status` to DEADLINE_EXCEEDED.
fn deadline_exceeded(value: Option<&mut HeaderValue>, status: &mut Option<u16>) {
    if let Some(value) = value {
        *value = HeaderValue::from(Code::DeadlineExceeded as i32);
        *status = Some(Code::DeadlineExceeded as u16);
    }
}

/// Parses a `grpc-status` value (0..=16 in practice; anything numeric is kept). Public for the
/// fuzz targets, through [`crate::fuzzing`].
pub fn parse_status(value: &[u8]) -> Option<u16> {
    if value.is_empty() || value.len() > 4 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')))
}

/// Hash of the client's IP address (0 when unknown, e.g. a Unix socket).
fn client_ip_hash(session: &Session) -> u64 {
    let ip = match session.client_addr() {
        Some(addr) => addr.as_inet().map(|a| a.ip()),
        // No socket: a request the fast path handed over in process, which names its client.
        None => session
            .req_header()
            .headers
            .get(crate::fastpath::CLIENT_IP)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    };
    ip.map_or(0, crate::balance::ip_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_context_skips_the_peer_wrapper() {
        let e = Error::explain(RESPONSE_TOO_LARGE, "response message of 99 bytes is above the limit of 40");
        assert_eq!(raised_context(&e), "response message of 99 bytes is above the limit of 40");
        let wrapped = e.more_context("Peer: addr: 127.0.0.1:1");
        assert_eq!(raised_context(&wrapped), "response message of 99 bytes is above the limit of 40");
    }

    #[test]
    fn grpc_status_values() {
        assert_eq!(parse_status(b"0"), Some(0));
        assert_eq!(parse_status(b"14"), Some(14));
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"x"), None);
    }
}
