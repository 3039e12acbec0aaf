//! W3C trace-context propagation (`traceparent`, `tracestate`) over HTTP headers and gRPC
//! metadata: extract the caller's context on the way in, inject the current one on the way out.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
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

/// Returns a trace-context header value marked "never indexed" for HPACK. A `traceparent` is
/// new on every call, so indexing it would only fill the h2 connection's dynamic table
/// (4 KiB: about 40 of them) and push out the headers that do repeat (`:path`,
/// `content-type`...), which then travel as literals again.
pub fn header_value(value: &str) -> Option<http::HeaderValue> {
    let mut value = http::HeaderValue::from_str(value).ok()?;
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

/// Returns the `(name, value)` header pairs that carry `cx` (for proxies whose header type is
/// not an `http::HeaderMap`, such as Pingora's `RequestHeader`), values as [`header_value`].
pub fn headers_for(cx: &Context) -> Vec<(String, http::HeaderValue)> {
    let mut map = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut map);
    map.into_iter().filter_map(|(name, value)| Some((name, header_value(&value)?))).collect()
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
        // Into the metadata's own header map, so the values stay as `inject` made them.
        let mut headers = std::mem::take(request.metadata_mut()).into_headers();
        inject(&current(), &mut headers);
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

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
        assert!(headers_for(&cx).iter().any(|(k, _)| k == "traceparent"));
        assert!(!extract(&http::HeaderMap::new()).span().span_context().is_valid());
        assert!(!is_unsampled(&cx));
        let mut unsampled = http::HeaderMap::new();
        unsampled.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".parse().unwrap());
        assert!(is_unsampled(&extract(&unsampled)));
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
