//! W3C trace-context propagation (`traceparent`, `tracestate`) over HTTP headers and gRPC
//! metadata: extract the caller's context on the way in, inject the current one on the way out.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Some(value)) = (http::HeaderName::from_bytes(key.as_bytes()), header_value(&value)) {
            self.0.insert(name, value);
        }
    }
}

/// Returns a header value marked "never indexed" for HPACK, for values new on every call (a
/// `traceparent`, the gateway's `grpc-timeout`). Indexing one would only fill the h2
/// connection's dynamic table (4 KiB: about 40 traceparents) and push out the headers that do
/// repeat (`:path`, `content-type`...), which then travel as literals again.
pub fn header_value(value: impl AsRef<[u8]>) -> Option<http::HeaderValue> {
    let mut value = http::HeaderValue::from_bytes(value.as_ref()).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Returns the remote context carried by `headers` (an empty context when there is none).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `cx` into `headers` as `traceparent` (and `tracestate`).
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Returns the `traceparent` (version 00) of a span, never indexed (see [`header_value`]).
/// Written digit by digit: the gateway makes one per call (the propagator formats into a
/// `String` and a map).
pub fn traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> http::HeaderValue {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    fn hex(bytes: &[u8], out: &mut [u8]) {
        for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
    }
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&trace_id.to_bytes(), &mut text[3..35]);
    hex(&span_id.to_bytes(), &mut text[36..52]);
    if sampled {
        text[54] = b'1';
    }
    header_value(text).expect("hex digits and dashes are a valid header value")
}

/// Returns the `(name, value)` header pairs that carry the span context `sc`: `traceparent`,
/// and `tracestate` when it has entries (for proxies whose header type is not an
/// `http::HeaderMap`, such as Pingora's `RequestHeader`), values as [`header_value`].
pub fn headers_for(sc: &SpanContext) -> impl Iterator<Item = (&'static str, http::HeaderValue)> {
    let valid = sc.is_valid();
    let parent = valid.then(|| ("traceparent", traceparent(sc.trace_id(), sc.span_id(), sc.is_sampled())));
    let state = valid.then(|| sc.trace_state().header()).filter(|state| !state.is_empty());
    parent.into_iter().chain(state.and_then(header_value).map(|value| ("tracestate", value)))
}

/// Returns true when `cx` carries a valid remote parent that was not sampled (`traceparent`
/// flags 00): the whole call below it can skip building spans.
pub fn is_unsampled(cx: &Context) -> bool {
    use opentelemetry::trace::TraceContextExt;
    let sc = cx.span().span_context().clone();
    sc.is_valid() && !sc.is_sampled()
}

/// Returns the current OpenTelemetry context: a service call's SERVER span, or the innermost
/// entered `tracing` span below it (the tracing layer attaches each one's context on entry).
pub fn current() -> Context {
    Context::current()
}

/// A tonic client interceptor that sends the current span's context with every call, so
/// service-to-service calls join the caller's trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceInterceptor;

impl tonic::service::Interceptor for TraceInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        use opentelemetry::trace::TraceContextExt;
        // Into the metadata's own header map, so the values stay as `inject` made them.
        let mut headers = std::mem::take(request.metadata_mut()).into_headers();
        let cx = current();
        if cx.span().span_context().is_valid() {
            inject(&cx, &mut headers);
        } else {
            let _ = PASS_ON.try_with(|passed| passed.write(&mut headers));
        }
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        Ok(request)
    }
}

tokio::task_local! {
    /// What the call being served passes on when it built no span ([`PassOn::scope`]). Boxed:
    /// the task-local moves its value in and out on every poll.
    static PASS_ON: Box<PassOn>;
}

/// The W3C header names, made once: a lookup by `&str` parses and validates the name first.
pub static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// See [`TRACEPARENT`].
pub static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The trace context that a call which built no span passes on to the calls it makes, kept in
/// a task-local for [`TraceInterceptor`]: the caller's `traceparent`
/// and `tracestate` as they came (the caller did not sample the trace, or this process exports
/// nothing), or a fresh unsampled `traceparent` when this process roots the trace and did not
/// sample it. Without it, a service's outgoing calls would carry no `traceparent`, and the next
/// hop would draw a root sampling decision of its own: a trace the caller turned down could be
/// sampled halfway down, without its upper part. (A task-local rather than a value of the
/// OpenTelemetry context: attaching a context on every poll cost an unsampled call 2,300
/// instructions under callgrind, the task-local a small part of that. Like the context, it
/// does not follow the call into tasks it spawns.)
#[derive(Debug)]
pub struct PassOn {
    /// Set from the start, or (for a new trace) made by the first outgoing call: most calls
    /// make none and pay nothing for it.
    traceparent: std::sync::OnceLock<http::HeaderValue>,
    tracestate: Option<http::HeaderValue>,
    /// The trace of a new trace's `traceparent`, made when first needed.
    trace_id: opentelemetry::trace::TraceId,
}

impl PassOn {
    /// The caller's context as it came in `headers`; `None` when it sent no `traceparent`.
    pub fn from_caller(headers: &http::HeaderMap) -> Option<PassOn> {
        let traceparent = never_indexed(headers.get(&TRACEPARENT)?);
        Some(PassOn {
            traceparent: traceparent.into(),
            tracestate: caller_tracestate(headers),
            trace_id: opentelemetry::trace::TraceId::INVALID,
        })
    }

    /// The caller's trace, declined here ([`crate::sampling::Head::Declined`]): `traceparent`
    /// instead of the caller's, with the caller's `tracestate`.
    pub fn declined(traceparent: http::HeaderValue, headers: &http::HeaderMap) -> PassOn {
        PassOn {
            traceparent: traceparent.into(),
            tracestate: caller_tracestate(headers),
            trace_id: opentelemetry::trace::TraceId::INVALID,
        }
    }

    /// New trace `trace_id`, which this process did not sample (flags `00`, one fresh span id
    /// for every call it makes).
    pub fn unsampled_root(trace_id: opentelemetry::trace::TraceId) -> PassOn {
        PassOn { traceparent: std::sync::OnceLock::new(), tracestate: None, trace_id }
    }

    /// Runs `future` (the call being served) with this as what its outgoing calls pass on.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        PASS_ON.scope(Box::new(self), future).await
    }

    /// Writes the context into an outgoing call's headers.
    fn write(&self, headers: &mut http::HeaderMap) {
        let traceparent = self.traceparent.get_or_init(|| crate::sampling::unsampled_traceparent(self.trace_id));
        headers.insert(TRACEPARENT.clone(), traceparent.clone());
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE.clone(), state.clone());
        }
    }
}

/// Returns a copy of a header value that goes out never indexed, as [`header_value`] makes them.
fn never_indexed(value: &http::HeaderValue) -> http::HeaderValue {
    let mut value = value.clone();
    value.set_sensitive(true);
    value
}

/// Returns the caller's `tracestate`, never indexed; a list split over several header lines is
/// one list (W3C), joined with commas.
fn caller_tracestate(headers: &http::HeaderMap) -> Option<http::HeaderValue> {
    let mut states = headers.get_all(&TRACESTATE).iter();
    match (states.next(), states.next()) {
        (None, _) => None,
        (Some(one), None) => Some(never_indexed(one)),
        (Some(first), Some(second)) => {
            let mut joined = [first, second].into_iter().chain(states).fold(Vec::new(), |mut list, line| {
                list.extend_from_slice(line.as_bytes());
                list.push(b',');
                list
            });
            joined.pop();
            header_value(joined)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn unsampled_headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".parse().unwrap());
        headers
    }

    #[test]
    fn traceparent_round_trips() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let cx = extract(&headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut out = http::HeaderMap::new();
        inject(&cx, &mut out);
        assert_eq!(out.get("traceparent").unwrap(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(out.get("traceparent").unwrap().is_sensitive(), "never indexed by HPACK");
        // The hand-written headers agree with the propagator's.
        let sc = cx.span().span_context().clone();
        let written: Vec<_> = headers_for(&sc).collect();
        assert_eq!(written.len(), 1, "no tracestate header for an empty state");
        assert_eq!(written[0].0, "traceparent");
        assert_eq!(&written[0].1, out.get("traceparent").unwrap());
        assert!(written[0].1.is_sensitive());
        let unsampled_sc = extract(&unsampled_headers()).span().span_context().clone();
        let mut propagated = http::HeaderMap::new();
        inject(&Context::new().with_remote_span_context(unsampled_sc.clone()), &mut propagated);
        assert_eq!(headers_for(&unsampled_sc).next().unwrap().1, propagated["traceparent"]);
        let with_state = SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags(),
            false,
            "vendor=abc,other=1".parse().unwrap(),
        );
        let written: std::collections::HashMap<_, _> = headers_for(&with_state).collect();
        assert_eq!(written["tracestate"], "vendor=abc,other=1");
        assert_eq!(headers_for(&SpanContext::empty_context()).count(), 0);
        assert!(!extract(&http::HeaderMap::new()).span().span_context().is_valid());
        assert!(!is_unsampled(&cx));
        assert!(is_unsampled(&extract(&unsampled_headers())));
        assert!(!is_unsampled(&extract(&http::HeaderMap::new())));
    }

    #[test]
    fn the_client_interceptor_sends_the_current_span_and_keeps_other_metadata() {
        use opentelemetry::trace::TracerProvider as _;
        use tonic::service::Interceptor as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
            let span = tracing::info_span!("call");
            let _ = span.set_parent(extract(&headers));
            let _entered = span.enter();
            let mut request = tonic::Request::new(());
            request.metadata_mut().insert("x-keep", "1".parse().unwrap());
            let request = TraceInterceptor.call(request).unwrap();
            let traceparent = request.metadata().get("traceparent").expect("traceparent sent");
            assert!(
                traceparent.to_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{traceparent:?}"
            );
            assert!(traceparent.is_sensitive(), "never indexed by HPACK");
            assert_eq!(request.metadata().get("x-keep").unwrap(), "1");
        });
    }
}
