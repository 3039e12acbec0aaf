//! A tower layer for tonic servers: one SERVER span per call, child of the caller's
//! `traceparent`, with the OpenTelemetry RPC attributes and the gRPC status of the answer.
//!
//! Tonic sends handler errors as trailers-only responses (the status in the headers), so the
//! status is read from the response headers; a call that fails in the middle of a stream is
//! recorded as OK (its status is only in the trailers).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use crate::metrics;

/// Span attribute naming the logical service of a span, for processes that host several
/// (`meshwork up`): the trace view shows spans under it instead of the process's name.
pub const SERVICE_ATTRIBUTE: &str = "meshwork.service";

/// Adds a SERVER span to every gRPC call (health checks and reflection excepted).
#[derive(Debug, Clone)]
pub struct ServerTraceLayer {
    service: Arc<str>,
}

impl ServerTraceLayer {
    /// Returns the layer; `service` is the logical service name shown in traces.
    pub fn new(service: &str) -> Self {
        ServerTraceLayer { service: service.into() }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace { inner, service: self.service.clone() }
    }
}

/// The service of [`ServerTraceLayer`].
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
    service: Arc<str>,
}

/// Returns true for calls that are not worth a span (health probes, reflection); the gateway
/// skips the same ones.
pub fn untraced(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// Returns the canonical name of a gRPC status code (`OK`, `NOT_FOUND`...).
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// Returns whether a gRPC code counts as a server error (OpenTelemetry RPC conventions).
pub fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

impl<S, B, RB> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        if untraced(path) {
            return Box::pin(inner.call(request));
        }
        let name = path.trim_start_matches('/');
        let (service, method) = name.split_once('/').unwrap_or((name, ""));
        // A caller that did not sample this trace gets no span here either, and neither does a
        // new trace the root sampler turns down: no span data is built for unsampled calls.
        let (span, parent) = match crate::sampling::decide(request.headers()) {
            crate::sampling::Head::Sampled(parent) => {
                let span = tracing::info_span!(
                    target: "meshwork::grpc",
                    "grpc.server",
                    otel.name = %name,
                    otel.kind = "server",
                    otel.status_code = Empty,
                    rpc.system = "grpc",
                    rpc.service = %service,
                    rpc.method = %method,
                    rpc.grpc.status_code = Empty,
                    meshwork.service = &*self.service,
                    sampling.priority = Empty,
                );
                (span, parent)
            }
            _ => (tracing::Span::none(), None),
        };
        // (Log lines inside the span carry its trace id from the OTel context; no field needed.)
        crate::sampling::adopt(&span, parent);
        let recorder = span.clone();
        let (service, method) = (service.to_string(), method.to_string());
        let started = std::time::Instant::now();
        let future = inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0);
                    recorder.record("rpc.grpc.status_code", code);
                    if is_server_error(code) {
                        recorder.record("otel.status_code", "ERROR");
                    }
                    metrics::GRPC_SERVER_REQUESTS.with_label_values(&[&service, &method, code_name(code)]).inc();
                    metrics::GRPC_SERVER_DURATION
                        .with_label_values(&[&service, &method])
                        .observe(started.elapsed().as_secs_f64());
                }
                result
            }
            .instrument(span),
        )
    }
}
