//! The gateway's spans: a SERVER span per downstream call (child of the caller's
//! `traceparent`) and a CLIENT span per upstream attempt (so retries show as siblings), whose
//! context is injected into the upstream request.
//!
//! The call spans are built on the OpenTelemetry API directly
//! ([`meshwork_telemetry::telemetry::tracer`]), not through `tracing`: a call crosses many
//! Pingora hooks, so they live in the request context and are never entered, and `tracing`
//! would only add its registry, layer callbacks and a copy of every attribute. When no trace
//! exporter is installed none is built and the hot path pays one check.
//!
//! Head sampling happens here, before any span exists: a call whose caller sent a sampled
//! `traceparent` is traced; one whose caller sent an unsampled one is not, and neither is a new
//! trace the root sampler turns down (it gets a fresh unsampled `traceparent` upstream instead).
//! See [`meshwork_telemetry::sampling`].

use std::borrow::Cow;

use meshwork_telemetry::propagation;
use meshwork_telemetry::sampling::{self, Head, SAMPLING_PRIORITY};
use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use pingora_core::Result;
use pingora_http::RequestHeader;
use tracing::field::Empty;

/// One of the gateway's call spans, or nothing when the call is not traced. Ends when dropped.
/// Boxed: an SDK span is a few hundred bytes, and the request context it lives in is moved
/// around with Pingora's futures.
#[derive(Debug, Default)]
pub struct CallSpan(Option<Box<opentelemetry_sdk::trace::Span>>);

impl CallSpan {
    /// Sets an attribute (nothing when there is no span).
    pub fn set(&mut self, attribute: KeyValue) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(attribute);
        }
    }

    /// Returns the span's context, `None` when there is no span.
    fn span_context(&self) -> Option<&SpanContext> {
        self.0.as_ref().map(|s| s.span_context()).filter(|sc| sc.is_valid())
    }
}

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
    /// The gateway is the root, did not sample the trace and does not propagate that
    /// (`propagate_unsampled = false`): no trace headers go upstream.
    Dropped,
    /// The caller's trace, declined by a sampler that does not follow the caller (`always_off`,
    /// `traceidratio`): no spans; this `traceparent` (the caller's trace, flags 00) replaces the
    /// caller's upstream.
    Declined(http::HeaderValue),
    /// Sampled: the call's SERVER span.
    Sampled(CallSpan),
}

impl CallTrace {
    /// The SERVER span, when sampled.
    pub fn server_mut(&mut self) -> Option<&mut CallSpan> {
        match self {
            CallTrace::Sampled(span) => Some(span),
            _ => None,
        }
    }
}

/// Decides how a gRPC call to `service`/`method` is traced and builds its SERVER span when it
/// is sampled: a child of the caller's sampled context, or a new root when the caller sent none
/// and the root sampler says yes. Nothing is built for calls that are not sampled; a new trace
/// turned down here gets an unsampled `traceparent` upstream when `propagate_unsampled`, none
/// otherwise.
pub fn server_span(
    headers: &http::HeaderMap,
    path: &str,
    service: &str,
    method: &str,
    propagate_unsampled: bool,
) -> CallTrace {
    if meshwork_telemetry::grpc::untraced(path) {
        return CallTrace::Off;
    }
    if !meshwork_telemetry::telemetry::exporting() {
        return CallTrace::Off;
    }
    let parent = match sampling::decide(headers) {
        Head::Sampled(parent) => parent,
        Head::CallerUnsampled => return CallTrace::Off,
        Head::Declined(traceparent) => return CallTrace::Declined(traceparent),
        Head::RootUnsampled(trace_id) if propagate_unsampled => {
            return CallTrace::Unsampled(sampling::unsampled_traceparent(trace_id));
        }
        Head::RootUnsampled(_) => return CallTrace::Dropped,
    };
    let Some(tracer) = meshwork_telemetry::telemetry::tracer() else { return CallTrace::Off };
    let mut attributes = Vec::with_capacity(6);
    attributes.extend([
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_string()),
        KeyValue::new("rpc.method", method.to_string()),
        KeyValue::new(meshwork_telemetry::grpc::SERVICE_ATTRIBUTE, "gateway"),
    ]);
    // A new root carries the decision just taken, so that the SDK sampler does not draw again.
    if parent.is_none() {
        attributes.push(KeyValue::new(SAMPLING_PRIORITY, 1i64));
    }
    let span = tracer
        .span_builder(Cow::Owned(path.trim_start_matches('/').to_string()))
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent.unwrap_or_default());
    CallTrace::Sampled(CallSpan(Some(Box::new(span))))
}

/// Returns the CLIENT span of one upstream attempt of the call to `path`, child of the call's
/// SERVER span (none when the call is not sampled).
pub fn client_span(call: &CallTrace, path: &str, replica: std::net::SocketAddr, attempt: usize) -> CallSpan {
    let CallTrace::Sampled(server) = call else { return CallSpan(None) };
    let Some(parent) = server.span_context() else { return CallSpan(None) };
    let Some(tracer) = meshwork_telemetry::telemetry::tracer() else { return CallSpan(None) };
    // The server span is local: its context as a (non-remote) parent.
    let parent = SpanContext::new(
        parent.trace_id(),
        parent.span_id(),
        parent.trace_flags(),
        false,
        parent.trace_state().clone(),
    );
    let span = tracer
        .span_builder(Cow::Owned(path.trim_start_matches('/').to_string()))
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("server.address", replica.ip().to_string()),
            KeyValue::new("server.port", i64::from(replica.port())),
            KeyValue::new(meshwork_telemetry::grpc::SERVICE_ATTRIBUTE, "gateway"),
            KeyValue::new("meshwork.attempt", attempt as i64),
        ])
        .start_with_context(&tracer, &Context::new().with_remote_span_context(parent));
    CallSpan(Some(Box::new(span)))
}

/// The trace headers of the upstream request: the names removed from what the caller sent,
/// then the fields added. The current attempt's CLIENT span when sampled, the unsampled root's
/// `traceparent` otherwise. When the gateway roots the trace, whatever the caller sent (an
/// invalid `traceparent`, a `tracestate` that belongs to no valid parent) does not go on, as
/// W3C has it; a declined caller's trace goes on with its list.
fn upstream_edits(
    trace: &CallTrace,
    span: &CallSpan,
) -> (&'static [&'static str], Vec<(&'static str, http::HeaderValue)>) {
    const BOTH: &[&str] = &["traceparent", "tracestate"];
    match trace {
        CallTrace::Off => (&[], Vec::new()),
        CallTrace::Dropped => (BOTH, Vec::new()),
        CallTrace::Unsampled(traceparent) => (BOTH, vec![("traceparent", traceparent.clone())]),
        CallTrace::Declined(traceparent) => (&["traceparent"], vec![("traceparent", traceparent.clone())]),
        // A child carries its caller's list (in `headers_for`); a new root, none.
        CallTrace::Sampled(_) => match span.span_context() {
            Some(sc) => (BOTH, propagation::headers_for(sc).collect()),
            None => (&[], Vec::new()),
        },
    }
}

/// Writes the call's trace context into the upstream request (`traceparent`, `tracestate`),
/// as [`upstream_edits`] has it.
pub fn inject(trace: &CallTrace, span: &CallSpan, request: &mut RequestHeader) -> Result<()> {
    let (remove, add) = upstream_edits(trace, span);
    for name in remove {
        request.remove_header(*name);
    }
    for (name, value) in add {
        request.insert_header(name, value)?;
    }
    Ok(())
}

/// The same edits as [`inject`], for the gRPC fast path's relay: names removed from the
/// caller's request, then fields added.
pub fn inject_fields(
    trace: &CallTrace,
    span: &CallSpan,
    remove: &mut Vec<bytes::Bytes>,
    add: &mut Vec<(bytes::Bytes, bytes::Bytes)>,
) {
    let (names, fields) = upstream_edits(trace, span);
    remove.extend(names.iter().map(|n| bytes::Bytes::from_static(n.as_bytes())));
    add.extend(
        fields
            .into_iter()
            .map(|(n, v)| (bytes::Bytes::from_static(n.as_bytes()), bytes::Bytes::copy_from_slice(v.as_bytes()))),
    );
}

/// The call's trace id (hex) when the gateway knows one it propagates: the sampled SERVER
/// span's, or the `traceparent` it sends upstream for an unsampled or declined trace.
pub fn trace_id(trace: &CallTrace) -> Option<String> {
    match trace {
        CallTrace::Sampled(span) => span.span_context().map(|sc| sc.trace_id().to_string()),
        CallTrace::Unsampled(tp) | CallTrace::Declined(tp) => tp.to_str().ok()?.get(3..35).map(str::to_string),
        CallTrace::Off | CallTrace::Dropped => None,
    }
}

/// The access log's target: one INFO event per gRPC call (`meshwork up` ships them into its log
/// store under `service="gateway"`; the console leaves them out unless `RUST_LOG` asks).
pub const ACCESS: &str = "meshwork_gateway::access";

/// Logs one gRPC call to the access log: method path, grpc-status, duration and trace id. The
/// path is taken as bytes (the fast path holds it so) and read as UTF-8 only when the access
/// log is on, so a call pays nothing for it otherwise.
pub fn access_log(path: &[u8], code: u16, elapsed: std::time::Duration, trace: &CallTrace) {
    if !tracing::enabled!(target: ACCESS, tracing::Level::INFO) {
        return;
    }
    let path = std::str::from_utf8(path).unwrap_or("");
    let trace_id = trace_id(trace);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    tracing::info!(target: ACCESS, method = path, grpc_status = code, duration_ms, trace_id = trace_id.as_deref(), "call");
}

/// Records the gRPC outcome on a span (an error status for server-side failure codes).
pub fn record_status(span: &mut CallSpan, code: u16) {
    let Some(span) = &mut span.0 else { return };
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
    if meshwork_telemetry::grpc::is_server_error(i32::from(code)) {
        span.set_status(Status::error(""));
    }
}

/// Marks an attempt that failed before an answer (connect failure, broken stream).
pub fn record_failed_attempt(span: &mut CallSpan, error: &str) {
    let Some(span) = &mut span.0 else { return };
    span.set_status(Status::error(""));
    span.set_attribute(KeyValue::new("error.type", error.to_string()));
}

/// Writes the trace headers of a call the gateway makes itself (an HTTP route's gRPC call) into
/// its metadata, exactly as [`inject`] does for a proxied call whose caller sent `caller`.
pub(crate) fn inject_metadata(
    trace: &CallTrace,
    span: &CallSpan,
    caller: &http::HeaderMap,
    metadata: &mut http::HeaderMap,
) {
    use propagation::{TRACEPARENT, TRACESTATE};
    let Ok(mut request) = RequestHeader::build("POST", b"/", Some(2)) else { return };
    for name in [&TRACEPARENT, &TRACESTATE] {
        if let Some(value) = caller.get(name) {
            let _ = request.insert_header(name.clone(), value.clone());
        }
    }
    if inject(trace, span, &mut request).is_err() {
        return;
    }
    for name in [&TRACEPARENT, &TRACESTATE] {
        if let Some(value) = request.headers.get(name) {
            metadata.insert(name.clone(), value.clone());
        }
    }
}

/// Returns the SERVER span of an HTTP redirect route (`route` is its path template, `path` the
/// request's); the call it makes runs in it and carries its context. A redirect the gateway
/// roots and does not sample still gets a span (parented on a fresh unsampled context, so the
/// SDK drops it) so that the call carries flags 00 and the service builds no spans either
/// (unless not `propagate_unsampled`: then the redirect gets no span and the call no trace
/// headers).
pub fn redirect_span(headers: &http::HeaderMap, route: &str, path: &str, propagate_unsampled: bool) -> tracing::Span {
    if !tracing::enabled!(target: "meshwork::gateway", tracing::Level::INFO) {
        return tracing::Span::none();
    }
    let parent = match sampling::decide(headers) {
        Head::Sampled(parent) => parent,
        Head::RootUnsampled(_) if !propagate_unsampled => return tracing::Span::none(),
        Head::RootUnsampled(trace_id) => Some(sampling::unsampled_parent(trace_id)),
        Head::CallerUnsampled => Some(propagation::extract(headers)),
        Head::Declined(traceparent) => {
            let mut declined = headers.clone();
            declined.insert("traceparent", traceparent);
            Some(propagation::extract(&declined))
        }
    };
    let span = tracing::info_span!(
        target: "meshwork::gateway",
        "gateway.redirect",
        otel.name = %format_args!("GET {route}"),
        otel.kind = "server",
        http.request.method = "GET",
        http.route = %route,
        url.path = %path,
        http.response.status_code = Empty,
        meshwork.service = "gateway",
        sampling.priority = Empty,
    );
    let root = parent.is_none();
    sampling::adopt(&span, parent);
    if root {
        // Built now, on the thread that took the decision, so that the span gets the trace id
        // the decision was drawn on (`sampling::DecidedIds`) and not a later decision's.
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.context();
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream request carrying what a caller sent: an invalid `traceparent` and a
    /// `tracestate`.
    fn upstream() -> RequestHeader {
        let mut request = RequestHeader::build("POST", b"/pkg.Svc/Get", None).unwrap();
        request.insert_header("traceparent", "00-garbage-01").unwrap();
        request.insert_header("tracestate", "vendor=abc").unwrap();
        request
    }

    #[test]
    fn a_trace_rooted_here_carries_nothing_of_what_the_caller_sent() {
        let headers = |request: &RequestHeader| {
            ["traceparent", "tracestate"].map(|name| request.headers.get(name).map(|v| v.to_str().unwrap().to_string()))
        };
        // Not traced here (a valid unsampled caller, or no exporter): the headers go on as they came.
        let mut request = upstream();
        inject(&CallTrace::Off, &CallSpan::default(), &mut request).unwrap();
        assert_eq!(headers(&request), [Some("00-garbage-01".into()), Some("vendor=abc".into())]);
        // A new unsampled root: its own traceparent, no tracestate.
        let fresh = sampling::unsampled_traceparent(opentelemetry::trace::TraceId::from(7));
        let mut request = upstream();
        inject(&CallTrace::Unsampled(fresh.clone()), &CallSpan::default(), &mut request).unwrap();
        assert_eq!(headers(&request), [Some(fresh.to_str().unwrap().to_string()), None]);
        // A caller's trace declined here (a sampler that does not follow the caller): its
        // traceparent replaced, its list kept.
        let declined = sampling::unsampled_traceparent(opentelemetry::trace::TraceId::from(9));
        let mut request = upstream();
        inject(&CallTrace::Declined(declined.clone()), &CallSpan::default(), &mut request).unwrap();
        assert_eq!(headers(&request), [Some(declined.to_str().unwrap().to_string()), Some("vendor=abc".into())]);
        // propagate_unsampled = false: nothing.
        let mut request = upstream();
        inject(&CallTrace::Dropped, &CallSpan::default(), &mut request).unwrap();
        assert_eq!(headers(&request), [None, None]);
    }
}
