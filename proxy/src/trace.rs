//! The gateway's spans: a SERVER span per downstream call (child of the caller's
//! `traceparent`) and a CLIENT span per upstream attempt (so retries show as siblings), whose
//! context is injected into the upstream request. Spans live in the request context rather than
//! being entered, since a call crosses many Pingora hooks. They are INFO spans under the
//! `meshwork::gateway` target, disabled for logs by default: when no trace exporter is
//! installed they are never created and the hot path pays one disabled-span check.

use opentelemetry::trace::TraceContextExt;
use pingora_core::Result;
use pingora_http::RequestHeader;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Returns the SERVER span of a gRPC call to `service`/`method`, parented on the caller's
/// context in `headers`.
pub fn server_span(headers: &http::HeaderMap, path: &str, service: &str, method: &str) -> Span {
    if !tracing::enabled!(target: "meshwork::gateway", tracing::Level::INFO) {
        return Span::none();
    }
    let parent = meshwork_observability::propagation::extract(headers);
    if meshwork_observability::propagation::is_unsampled(&parent) {
        // The caller did not sample this trace: no spans here or below (the traceparent with
        // flags 00 goes upstream unchanged).
        return Span::none();
    }
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
    );
    if !span.is_disabled() {
        let _ = span.set_parent(parent);
    }
    span
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

/// Writes the context of `span` into the upstream request (`traceparent`, `tracestate`).
pub fn inject(span: &Span, request: &mut RequestHeader) -> Result<()> {
    if span.is_disabled() {
        return Ok(());
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Ok(());
    }
    for (name, value) in meshwork_observability::propagation::headers_for(&cx) {
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
/// and carries its context.
pub fn redirect_span(headers: &http::HeaderMap, code: &str) -> Span {
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
    );
    if !span.is_disabled() {
        let _ = span.set_parent(meshwork_observability::propagation::extract(headers));
    }
    span
}
