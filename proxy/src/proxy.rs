//! The Pingora [`ProxyHttp`] implementation: per-request routing, replica choice with
//! connect-failure retries, the `te: trailers` fix, gRPC-shaped errors and the plain HTTP
//! answers (`/`, `/healthz`, short-link redirects).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::HeaderValue;
use http::{Method, header};
use pingora_core::protocols::ALPN;
use pingora_core::protocols::http::HttpTask;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use tonic::Code;

use crate::grpc_errors::{grpc_code_for_http_status, is_grpc_content_type, text_response, trailers, trailers_only};
use crate::redirect::{RedirectOutcome, Resolver, referrer_host, short_code};
use crate::routing::{Pool, Router, parse_grpc_path};
use crate::server::{H2_CONNECTION_WINDOW, H2_STREAM_WINDOW};

/// Error type for "every replica of the pool failed to connect".
const NO_REPLICA: ErrorType = ErrorType::Custom("NoReachableReplica");

/// Counts requests in flight; the count drops when the guard (held by the request context) does.
#[derive(Debug)]
pub(crate) struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
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
    /// The request is native gRPC (content-type application/grpc...).
    grpc: bool,
    /// The pool chosen by the router.
    pool: Option<Arc<Pool>>,
    /// The replica of the current attempt.
    current: Option<usize>,
    /// Replicas this request failed to connect to.
    failed: Vec<usize>,
}

/// Settings of the proxy that do not change while it runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProxySettings {
    pub connect_timeout: Duration,
    pub upstream_max_h2_streams: usize,
}

/// The gateway's proxy logic.
pub(crate) struct GatewayProxy {
    router: Arc<Router>,
    resolver: Option<Arc<Resolver>>,
    inflight: Arc<AtomicUsize>,
    settings: ProxySettings,
}

impl GatewayProxy {
    pub fn new(
        router: Arc<Router>,
        resolver: Option<Arc<Resolver>>,
        inflight: Arc<AtomicUsize>,
        settings: ProxySettings,
    ) -> Self {
        Self { router, resolver, inflight, settings }
    }

    /// Answers a gRPC call directly with a trailers-only response.
    async fn respond_grpc(session: &mut Session, code: Code, message: &str) -> Result<()> {
        let resp = trailers_only(code, message, !session.is_http2())?;
        session.write_response_tasks(vec![HttpTask::Header(Box::new(resp), true)]).await?;
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

    /// Everything that is not native gRPC: `/`, `/healthz`, `/<code>`, else 404/405/415.
    async fn handle_http(&self, session: &mut Session) -> Result<()> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let get = method == Method::GET || method == Method::HEAD;
        let allow = [(header::ALLOW, HeaderValue::from_static("GET, HEAD"))];
        match path.as_str() {
            "/" if get => {
                let body = "meshwork gateway: gRPC (h2c) and HTTP on this port; GET /<code> follows a short link";
                Self::respond_text(session, 200, body, &[]).await
            }
            "/healthz" if get => Self::respond_text(session, 200, "ok", &[]).await,
            "/" | "/healthz" => Self::respond_text(session, 405, "method not allowed", &allow).await,
            _ => {
                if let Some(code) = short_code(&path) {
                    if !get {
                        return Self::respond_text(session, 405, "method not allowed", &allow).await;
                    }
                    return self.redirect(session, code.to_string(), method == Method::HEAD).await;
                }
                if parse_grpc_path(&path).is_some() && method == Method::POST {
                    let body = "gRPC calls need content-type application/grpc (gRPC-Web is not supported yet)";
                    return Self::respond_text(session, 415, body, &[]).await;
                }
                Self::respond_text(session, 404, "not found", &[]).await
            }
        }
    }

    /// `GET /<code>`: resolve through the URL shortener and answer 302 or an error.
    async fn redirect(&self, session: &mut Session, code: String, head: bool) -> Result<()> {
        let Some(resolver) = &self.resolver else {
            return Self::respond_text(session, 404, "short links are not enabled on this gateway", &[]).await;
        };
        let referrer = referrer_host(session.req_header().headers.get(header::REFERER).map(|v| v.as_bytes()));
        let started = Instant::now();
        let outcome = resolver.resolve(&code, referrer, head).await;
        tracing::debug!(code, ?outcome, elapsed_us = started.elapsed().as_micros() as u64, "redirect");
        match outcome {
            RedirectOutcome::Found(url) => {
                let location = HeaderValue::from_str(&url)
                    .map_err(|e| Error::because(ErrorType::InternalError, "redirect location", e))?;
                Self::respond_text(session, 302, &format!("Found: {url}"), &[(header::LOCATION, location)]).await
            }
            RedirectOutcome::Error(status, text) => Self::respond_text(session, status, &text, &[]).await,
        }
    }
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            _inflight: InflightGuard::new(&self.inflight),
            started: Instant::now(),
            grpc: false,
            pool: None,
            current: None,
            failed: Vec::new(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let content_type = req.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
        if !is_grpc_content_type(content_type) {
            self.handle_http(session).await?;
            return Ok(true);
        }
        ctx.grpc = true;
        let path = req.uri.path();
        let Some((service, _method)) = parse_grpc_path(path) else {
            let message = format!("malformed gRPC method path \"{path}\"");
            Self::respond_grpc(session, Code::Unimplemented, &message).await?;
            return Ok(true);
        };
        match self.router.lookup(service) {
            Some(pool) => {
                ctx.pool = Some(pool.clone());
                Ok(false)
            }
            None => {
                let message = format!("unknown service {service}: no route for it at the gateway");
                Self::respond_grpc(session, Code::Unimplemented, &message).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(pool) = &ctx.pool else {
            return Error::e_explain(ErrorType::InternalError, "no pool chosen for this request");
        };
        let Some(idx) = pool.pick(&ctx.failed) else {
            return Error::e_explain(
                NO_REPLICA,
                format!("no replica of pool \"{}\" is reachable ({} tried)", pool.name(), ctx.failed.len()),
            );
        };
        ctx.current = Some(idx);
        let mut peer = HttpPeer::new(pool.replicas()[idx], false, String::new());
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = self.settings.upstream_max_h2_streams;
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
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
        if let (Some(pool), Some(idx)) = (&ctx.pool, ctx.current.take()) {
            ctx.failed.push(idx);
            let retry = ctx.failed.len() < pool.len();
            tracing::warn!(pool = pool.name(), replica = %peer, error = %e, retry, "connect to replica failed");
            e.set_retry(retry);
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
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let dead_downstream = *e.esource() == ErrorSource::Downstream
            && matches!(e.etype(), ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed);
        if dead_downstream {
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
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
        if session.response_written().is_some() {
            // The upstream's headers went out: end the call with gRPC trailers where possible.
            if session.is_http2() {
                let task = HttpTask::Trailer(Some(Box::new(trailers(code, &message))));
                let _ = session.write_response_tasks(vec![task]).await;
            }
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
        match Self::respond_grpc(session, code, &message).await {
            Ok(()) => FailToProxy { error_code: 200, can_reuse_downstream: false },
            Err(err) => {
                tracing::debug!(error = %err, "could not send gRPC error to downstream");
                FailToProxy { error_code: 0, can_reuse_downstream: false }
            }
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
            tracing::debug!(
                path = session.req_header().uri.path(),
                grpc = ctx.grpc,
                pool = ctx.pool.as_ref().map(|p| p.name()).unwrap_or(""),
                replica = ?ctx.current.and_then(|i| ctx.pool.as_ref().map(|p| p.replicas()[i])),
                failed_connects = ctx.failed.len(),
                status,
                error = e.map(|e| e.to_string()),
                elapsed_us = ctx.started.elapsed().as_micros() as u64,
                "request"
            );
        }
    }
}
