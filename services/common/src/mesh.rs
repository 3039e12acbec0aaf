//! Service-to-service calls through the mesh (DESIGN "Service conventions", section 2): every
//! call goes to the gateway's address (which routes it by gRPC service name), carrying the
//! caller's trace context (`traceparent`) and its remaining deadline (`grpc-timeout`), so that
//! each hop shows in one trace and a call never outlives the call that made it.
//!
//! [`MeshClient`] holds one lazily connected channel to the gateway (h2c for `http://`, TLS
//! for `https://`); [`MeshClient::channel`] wraps it with [`MeshInterceptor`], which stamps the
//! current span's `traceparent` and a default timeout on calls that have none, and plugs into
//! any generated client (`FooClient::new(mesh.channel())`). In a handler, capture a
//! [`CallContext`] from the incoming request first thing; it stamps outgoing requests with
//! the time left of the caller's deadline (its `grpc-timeout` minus the time already spent)
//! and, for work moved to other tasks, the caller's trace context:
//!
//! ```no_run
//! use meshwork_common::mesh::{CallContext, MeshClient};
//! use meshwork_proto::pb::payments::v1::AuthorizeRequest;
//! use meshwork_proto::pb::payments::v1::payments_client::PaymentsClient;
//!
//! async fn authorize<T>(mesh: &MeshClient, request: &tonic::Request<T>) -> Result<String, tonic::Status> {
//!     let cx = CallContext::from_request(request);
//!     let mut payments = PaymentsClient::new(mesh.channel());
//!     let req = AuthorizeRequest { request_id: "chk_1:authorize".into(), ..Default::default() };
//!     let paid = payments.authorize(cx.outgoing(req)?).await?.into_inner();
//!     Ok(paid.payment.map(|p| p.payment_id).unwrap_or_default())
//! }
//! ```

use std::time::Duration;

use meshwork_telemetry::grpc_timeout::parse_grpc_timeout;
use meshwork_telemetry::propagation::{self, TRACEPARENT, TRACESTATE, TraceInterceptor};
use tokio::time::Instant;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::{ServiceError, ServiceResult};

/// Timeout of a call whose caller set none (and of calls made outside any incoming call).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to the gateway may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The gRPC metadata key of a call's timeout.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Errors of building a [`MeshClient`].
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The gateway URL does not parse or is not `http://` / `https://`.
    #[error("invalid gateway URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The TLS configuration was refused.
    #[error("gateway TLS configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
}

/// A client of the mesh: one channel to the gateway, shared by every call. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MeshClient {
    channel: Channel,
    default_timeout: Duration,
}

impl MeshClient {
    /// Returns a client of the gateway at `gateway_url` (`http://host:port` for h2c,
    /// `https://host:port` for TLS checked against the system's roots). Nothing connects until
    /// the first call; a gateway that is down makes calls fail with UNAVAILABLE.
    pub fn new(gateway_url: &str) -> Result<Self, MeshError> {
        Self::connect(gateway_url, None)
    }

    /// [`MeshClient::new`] over TLS with `tls` (e.g. the mesh's own CA and a client
    /// certificate for mutual TLS).
    pub fn with_tls(gateway_url: &str, tls: ClientTlsConfig) -> Result<Self, MeshError> {
        Self::connect(gateway_url, Some(tls))
    }

    fn connect(gateway_url: &str, tls: Option<ClientTlsConfig>) -> Result<Self, MeshError> {
        let invalid = |reason: String| MeshError::InvalidUrl { url: gateway_url.to_string(), reason };
        let https = if gateway_url.starts_with("https://") {
            true
        } else if gateway_url.starts_with("http://") {
            false
        } else {
            return Err(invalid("must start with http:// (h2c) or https:// (TLS)".into()));
        };
        let mut endpoint = Endpoint::from_shared(gateway_url.to_string())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if https {
            let tls = tls.unwrap_or_else(|| ClientTlsConfig::new().with_enabled_roots());
            endpoint = endpoint.tls_config(tls).map_err(MeshError::Tls)?;
        } else if tls.is_some() {
            return Err(invalid("TLS settings need an https:// URL".into()));
        }
        Ok(MeshClient { channel: endpoint.connect_lazy(), default_timeout: DEFAULT_TIMEOUT })
    }

    /// Returns a client over an existing channel (tests, or a channel built elsewhere).
    pub fn from_channel(channel: Channel) -> Self {
        MeshClient { channel, default_timeout: DEFAULT_TIMEOUT }
    }

    /// Returns this client with `timeout` for calls that carry no deadline of their own.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Returns the timeout of calls that carry no deadline of their own.
    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }

    /// Returns the channel to the gateway with the [`MeshInterceptor`], for any generated
    /// client: `FooClient::new(mesh.channel())`.
    pub fn channel(&self) -> InterceptedService<Channel, MeshInterceptor> {
        InterceptedService::new(self.channel.clone(), MeshInterceptor { default_timeout: self.default_timeout })
    }
}

/// Stamps every outgoing call with the current span's trace context ([`TraceInterceptor`])
/// and, when the request has no `grpc-timeout` yet, the default timeout.
#[derive(Debug, Clone, Copy)]
pub struct MeshInterceptor {
    default_timeout: Duration,
}

impl Interceptor for MeshInterceptor {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut request = TraceInterceptor.call(request)?;
        if !request.metadata().contains_key(GRPC_TIMEOUT) {
            request.set_timeout(self.default_timeout);
        }
        Ok(request)
    }
}

/// What an incoming call passes on to the calls it makes: its deadline and its trace
/// context. Capture it at the start of the handler (time spent before counts against the
/// deadline only from then on).
#[derive(Debug, Clone)]
pub struct CallContext {
    /// When the caller's deadline passes; `None` when it sent no `grpc-timeout`.
    deadline: Option<Instant>,
    /// `traceparent` (and `tracestate`) to send: the current span's when there is one, else
    /// the caller's as it came.
    trace: http::HeaderMap,
}

impl CallContext {
    /// Returns the context of the call `request`: its deadline from `grpc-timeout` (counted
    /// from now) and the trace context of the current span (the call's SERVER span), or the
    /// caller's `traceparent` when this process built no span for the call.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Self {
        let deadline = request
            .metadata()
            .get(GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
            .map(|timeout| Instant::now() + timeout);
        let mut trace = current_trace_headers();
        if trace.is_empty() {
            let headers = request.metadata().clone().into_headers();
            for name in [&TRACEPARENT, &TRACESTATE] {
                if let Some(value) = headers.get(name) {
                    trace.insert(name.clone(), value.clone());
                }
            }
        }
        CallContext { deadline, trace }
    }

    /// Returns the context of work that no incoming call started (a background task): no
    /// deadline (calls get the mesh's default timeout) and the current span's trace context.
    pub fn background() -> Self {
        CallContext { deadline: None, trace: current_trace_headers() }
    }

    /// Returns when the caller's deadline passes, if it set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Returns the time left before the caller's deadline (zero once passed), or `None` when
    /// the caller set no deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Returns the time left, or `default` when the caller set no deadline (for waits that
    /// must end, such as an idempotency claim's).
    pub fn remaining_or(&self, default: Duration) -> Duration {
        self.remaining().unwrap_or(default)
    }

    /// Returns an outgoing request for `message` carrying the remaining deadline as its
    /// `grpc-timeout` and the trace context. Fails with DEADLINE_EXCEEDED when the deadline
    /// has already passed (the call would be refused anyway).
    pub fn outgoing<T>(&self, message: T) -> ServiceResult<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        if let Some(remaining) = self.remaining() {
            if remaining.is_zero() {
                return Err(ServiceError::DeadlineExceeded("no time left of the caller's deadline".into()));
            }
            request.set_timeout(remaining);
        }
        if !self.trace.is_empty() {
            let mut headers = std::mem::take(request.metadata_mut()).into_headers();
            for (name, value) in &self.trace {
                headers.insert(name.clone(), value.clone());
            }
            *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        }
        Ok(request)
    }
}

/// Returns the `traceparent`/`tracestate` headers of the current span (empty outside one).
fn current_trace_headers() -> http::HeaderMap {
    use opentelemetry::trace::TraceContextExt;
    let cx = propagation::current();
    let mut headers = http::HeaderMap::new();
    if cx.span().span_context().is_valid() {
        propagation::inject(&cx, &mut headers);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn outgoing_requests_carry_what_is_left_of_the_deadline() {
        let mut incoming = tonic::Request::new(());
        incoming.set_timeout(Duration::from_secs(2));
        let ctx = CallContext::from_request(&incoming);
        tokio::time::advance(Duration::from_millis(500)).await;
        let out = ctx.outgoing(()).unwrap();
        let sent = parse_grpc_timeout(out.metadata().get(GRPC_TIMEOUT).unwrap().as_bytes()).unwrap();
        assert_eq!(sent, Duration::from_millis(1500));
        tokio::time::advance(Duration::from_secs(2)).await;
        let err = ctx.outgoing(()).unwrap_err();
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::DeadlineExceeded);
        // No deadline from the caller: none set here; the interceptor adds the default.
        let free = CallContext::from_request(&tonic::Request::new(())).outgoing(()).unwrap();
        assert!(free.metadata().get(GRPC_TIMEOUT).is_none());
        let stamped =
            MeshInterceptor { default_timeout: Duration::from_secs(3) }.call(tonic::Request::new(())).unwrap();
        assert_eq!(stamped.metadata().get(GRPC_TIMEOUT).unwrap(), "3000000u");
        assert!(MeshClient::new("ftp://x").is_err());
        assert!(MeshClient::new("http://127.0.0.1:1").is_ok());
    }
}
