//! The gateway's spans: a SERVER span per downstream call (child of the caller's
//! `traceparent`) and a CLIENT span per upstream attempt (so retries show as siblings), whose
//! context is injected into the upstream request. Spans live in the request context rather than
//! being entered, since a call crosses many Pingora hooks. They are INFO spans under the
//! `meshwork::gateway` target, disabled for logs by default: when no trace exporter is
//! installed they are never created and the hot path pays one disabled-span check.
//!
//! Head sampling happens here, before any span exists: a call whose caller sent a sampled
//! `traceparent` is traced; one whose caller sent an unsampled one is not, and neither is a new
//! trace the root sampler turns down (it gets a fresh unsampled `traceparent` upstream instead).
//! See [`meshwork_observability::sampling`].

use meshwork_observability::propagation;
use meshwork_observability::sampling::{self, Head};
use opentelemetry::trace::TraceContextExt;
use pingora_core::Result;
use pingora_http::RequestHeader;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How a call is traced at the gateway.
#[derive(Debug, Default)]
pub enum CallTrace {
    /// Not traced at all (no exporter, or the caller's `traceparent` says not sampled and
    /// goes upstream unchanged).
    #[default]
    Off,
    /// The gateway is the root and did not sample the trace: no spans; this `traceparent`
    /// (flags 00) goes upstream so the hops below build none either.
    Unsampled(http::HeaderValue),
    /// Sampled: the call's SERVER span.
    Sampled(Span),
}

impl CallTrace {
    /// The SERVER span (disabled unless sampled).
    pub fn server(&self) -> &Span {
        static NONE: std::sync::LazyLock<Span> = std::sync::LazyLock::new(Span::none);
        match self {
            CallTrace::Sampled(span) => span,
            _ => &NONE,
        }
    }
}

/// Decides how a gRPC call to `service`/`method` is traced and builds its SERVER span when it
/// is sampled: a child of the caller's sampled context, or a new root when the caller sent none
/// and the root sampler says yes. Nothing is built for calls that are not sampled.
pub fn server_span(headers: &http::HeaderMap, path: &str, service: &str, method: &str) -> CallTrace {
    if !tracing::enabled!(target: "meshwork::gateway", tracing::Level::INFO)
        || meshwork_observability::grpc::untraced(path)
    {
        return CallTrace::Off;
    }
    let parent = match sampling::decide(headers) {
        Head::Sampled(parent) => parent,
        Head::CallerUnsampled => return CallTrace::Off,
        Head::RootUnsampled => return CallTrace::Unsampled(sampling::unsampled_traceparent()),
    };
    let span = tracing::info_span!(
        target: "meshwork::gateway",
        "gateway.server",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
        meshwork.service = "gateway",
        meshwork.pool = Empty,
        meshwork.attempts = Empty,
        sampling.priority = Empty,
    );
    sampling::adopt(&span, parent);
    CallTrace::Sampled(span)
}

/// Returns the CLIENT span of one upstream attempt of the call to `path`, child of `server`.
pub fn client_span(server: &Span, path: &str, replica: std::net::SocketAddr, attempt: usize) -> Span {
    if server.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "meshwork::gateway",
        parent: server,
        "gateway.client",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.grpc.status_code = Empty,
        server.address = %replica.ip(),
        server.port = i64::from(replica.port()),
        meshwork.service = "gateway",
        meshwork.attempt = attempt as i64,
        error.type = Empty,
    )
}

/// Writes the call's trace context into the upstream request (`traceparent`, `tracestate`):
/// the current attempt's CLIENT span when sampled, the unsampled root's `traceparent` otherwise.
pub fn inject(trace: &CallTrace, span: &Span, request: &mut RequestHeader) -> Result<()> {
    if let CallTrace::Unsampled(traceparent) = trace {
        return request.insert_header("traceparent", traceparent.clone());
    }
    if span.is_disabled() {
        return Ok(());
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Ok(());
    }
    for (name, value) in propagation::headers_for(&cx) {
        request.insert_header(name, value)?;
    }
    Ok(())
}

/// Records the gRPC outcome on a span (an error status for server-side failure codes).
pub fn record_status(span: &Span, code: u16) {
    if span.is_disabled() {
        return;
    }
    // As i64: tracing-opentelemetry exports unsigned integers as strings.
    span.record("rpc.grpc.status_code", i64::from(code));
    if meshwork_observability::grpc::is_server_error(i32::from(code)) {
        span.record("otel.status_code", "ERROR");
    }
}

/// Marks an attempt that failed before an answer (connect failure, broken stream).
pub fn record_failed_attempt(span: &Span, error: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error);
}

/// Returns the SERVER span of an HTTP short-link redirect; the Resolve call it makes runs in it
/// and carries its context. A redirect the gateway roots and does not sample still gets a span
/// (parented on a fresh unsampled context, so the SDK drops it) so that the Resolve call carries
/// flags 00 and the service builds no spans either.
pub fn redirect_span(headers: &http::HeaderMap, code: &str) -> Span {
    if !tracing::enabled!(target: "meshwork::gateway", tracing::Level::INFO) {
        return Span::none();
    }
    let parent = match sampling::decide(headers) {
        Head::Sampled(parent) => parent,
        Head::RootUnsampled => {
            let mut unsampled = http::HeaderMap::new();
            unsampled.insert("traceparent", sampling::unsampled_traceparent());
            Some(propagation::extract(&unsampled))
        }
        Head::CallerUnsampled => Some(propagation::extract(headers)),
    };
    let span = tracing::info_span!(
        target: "meshwork::gateway",
        "gateway.redirect",
        otel.name = "GET /{code}",
        otel.kind = "server",
        http.request.method = "GET",
        http.route = "/{code}",
        meshwork.code = %code,
        http.response.status_code = Empty,
        meshwork.service = "gateway",
        sampling.priority = Empty,
    );
    sampling::adopt(&span, parent);
    span
}
