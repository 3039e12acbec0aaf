//! A tower layer for tonic servers: one SERVER span per sampled call, child of the caller's
//! `traceparent`, with the OpenTelemetry RPC attributes and the gRPC status of the answer. The
//! span is built on the OpenTelemetry API and attached as the OpenTelemetry context while the
//! call runs; `tracing` spans below it (storage operations) find it there as their parent.
//!
//! Tonic sends handler errors as trailers-only responses (the status in the headers), so the
//! status is read from the response headers; a call that fails in the middle of a stream is
//! recorded as OK (its status is only in the trailers).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context as OtelContext, KeyValue, StringValue};
use tower::{Layer, Service};

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
        // Their context is still passed on to the calls the handler makes, so that the hops
        // below follow the same decision.
        use crate::propagation::PassOn;
        use crate::sampling::Head;
        let (cx, pass_on) = match crate::sampling::decide(request.headers()) {
            Head::Sampled(parent) => {
                let from_caller = parent.is_some();
                match self.server_span(name, service, method, parent) {
                    Some(cx) => (Some(cx), None),
                    // This process exports nothing: a valid caller context goes on unchanged
                    // (an invalid one restarts the trace, W3C says, so it is not passed on).
                    None if from_caller => (None, PassOn::from_caller(request.headers())),
                    None => (None, None),
                }
            }
            Head::CallerUnsampled => (None, PassOn::from_caller(request.headers())),
            Head::Declined(traceparent) => (None, Some(PassOn::declined(traceparent, request.headers()))),
            Head::RootUnsampled(trace_id) => (None, Some(PassOn::unsampled_root(trace_id))),
        };
        let (service, method) = (service.to_string(), method.to_string());
        let started = std::time::Instant::now();
        let future = inner.call(request);
        Box::pin(async move {
            let result = match (&cx, pass_on) {
                // Attached on every poll: log lines carry its ids, storage spans and outgoing
                // calls (`TraceInterceptor`) take it as their parent.
                (Some(cx), _) => future.with_context(cx.clone()).await,
                (None, Some(pass_on)) => pass_on.scope(future).await,
                (None, None) => future.await,
            };
            if let Ok(response) = &result {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                if let Some(cx) = &cx {
                    let span = cx.span();
                    span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
                    if is_server_error(code) {
                        span.set_status(Status::error(""));
                    }
                }
                metrics::GRPC_SERVER_REQUESTS.with_label_values(&[&service, &method, code_name(code)]).inc();
                metrics::GRPC_SERVER_DURATION
                    .with_label_values(&[&service, &method])
                    .observe(started.elapsed().as_secs_f64());
            }
            if let Some(cx) = cx {
                cx.span().end();
            }
            result
        })
    }
}

impl<S> ServerTrace<S> {
    /// Starts the SERVER span of a sampled call to `name` (`service/method`): a child of the
    /// caller's context, or a new root marked with the decision already taken. Built on the
    /// OpenTelemetry API directly, not through `tracing`: it needs no registry entry, layer
    /// callbacks or attribute copies. Returns the context holding it (`None` when nothing is
    /// exported). A call dropped before it answers ends the span when the context goes.
    fn server_span(&self, name: &str, service: &str, method: &str, parent: Option<OtelContext>) -> Option<OtelContext> {
        let tracer = crate::telemetry::tracer()?;
        let mut attributes = Vec::with_capacity(6);
        attributes.extend([
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_string()),
            KeyValue::new("rpc.method", method.to_string()),
            KeyValue::new(SERVICE_ATTRIBUTE, StringValue::from(self.service.clone())),
        ]);
        if parent.is_none() {
            attributes.push(KeyValue::new(crate::sampling::SAMPLING_PRIORITY, 1i64));
        }
        let parent = parent.unwrap_or_default();
        let span = tracer
            .span_builder(name.to_string())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        Some(parent.with_span(span))
    }
}

/// The connections `listener` accepts, as the stream tonic's `serve_with_incoming` takes, each
/// with `TCP_NODELAY` (tonic's own `tcp_nodelay` setting applies only to listeners it binds
/// itself: without this, small answers wait for delayed ACKs, about 40 ms).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        if let Err(e) = &next {
            // Out of file descriptors and the like: tonic logs the error and asks again at
            // once, which would spin.
            tracing::warn!(error = %e, "gRPC server: accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Some((next, listener))
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry_sdk::trace::SpanData;
    use tower::ServiceExt as _;
    use tracing::Instrument as _;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::export::tests::Keep;
    use crate::propagation::TraceInterceptor;
    use crate::telemetry::tests::Buffer;
    use crate::telemetry::{SamplerConfig, TelemetryConfig};

    /// The configuration of the tests' pipelines (exporting into a [`Keep`], flushed quickly).
    fn test_config(sampler: SamplerConfig) -> TelemetryConfig {
        TelemetryConfig {
            service_name: "test".into(),
            otlp_endpoint: None,
            sampler,
            default_log_filter: "info".into(),
            max_queue_size: 64,
            max_export_batch_size: 64,
            export_timeout: std::time::Duration::from_secs(3),
            schedule_delay: std::time::Duration::from_millis(10),
            exporter: Default::default(),
        }
    }

    /// A sampled call through the layer: its SERVER span is the caller's child, a `tracing`
    /// span and a log line inside the handler find it through the OpenTelemetry context, and
    /// a call whose caller did not sample it gets no span at all.
    #[tokio::test(flavor = "current_thread")]
    async fn a_sampled_call_is_the_context_of_what_its_handler_does() {
        let _state = crate::telemetry::tests::process_state().await;
        let kept = Keep::default();
        let logs = Buffer::default();
        let config = test_config(SamplerConfig::AlwaysOn);
        let (otel, guard) = crate::telemetry::export_layer(&config, kept.clone());
        let subscriber =
            tracing_subscriber::registry().with(crate::telemetry::log_layer_to(logs.clone(), false, false)).with(otel);
        let _default = tracing::subscriber::set_default(subscriber);

        let handler = tower::service_fn(|_: http::Request<()>| async {
            // As `TracedStore` does: a storage span only inside a sampled context.
            let sampled = OtelContext::current().span().span_context().is_sampled();
            let storage = if sampled {
                tracing::info_span!(target: "meshwork::storage", "storage.get", otel.kind = "internal")
            } else {
                tracing::Span::none()
            };
            async { tracing::info!(target: "meshwork::test", "inside the handler") }.instrument(storage).await;
            tracing::info!(target: "meshwork::test", "after the storage span");
            Ok::<_, std::convert::Infallible>(http::Response::builder().header("grpc-status", "5").body(()).unwrap())
        });
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        for flags in ["01", "00"] {
            let request = http::Request::builder()
                .uri("/pkg.Svc/Get")
                .header("traceparent", format!("{caller}-{flags}"))
                .body(())
                .unwrap();
            let answer = ServerTraceLayer::new("svc").layer(handler).oneshot(request).await.unwrap();
            assert_eq!(answer.headers()["grpc-status"], "5");
        }
        guard.shutdown();

        let spans = kept.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 2, "one SERVER and one storage span, none for the unsampled call: {spans:#?}");
        let server = spans.iter().find(|s| s.span_kind == SpanKind::Server).expect("a SERVER span");
        let storage = spans.iter().find(|s| s.name == "storage.get").expect("the storage span");
        assert_eq!(server.name, "pkg.Svc/Get");
        assert_eq!(server.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(server.parent_span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
        let attribute =
            |key: &str| server.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone());
        assert_eq!(attribute("rpc.system"), Some("grpc".into()));
        assert_eq!(attribute("rpc.service"), Some("pkg.Svc".into()));
        assert_eq!(attribute("rpc.method"), Some("Get".into()));
        assert_eq!(attribute(SERVICE_ATTRIBUTE), Some("svc".into()));
        assert_eq!(attribute("rpc.grpc.status_code"), Some(5i64.into()));
        assert_eq!(server.status, Status::Unset, "NOT_FOUND is the caller's error, not the server's");
        assert_eq!(storage.parent_span_id, server.span_context.span_id(), "the storage span is the call's child");
        assert_eq!(storage.span_context.trace_id(), server.span_context.trace_id());

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 4, "{logs}");
        let trace_id = server.span_context.trace_id();
        let ids = |span: &SpanData| format!("trace_id={trace_id} span_id={} ", span.span_context.span_id());
        assert!(lines[0].starts_with(&ids(storage)) && lines[0].contains("inside the handler"), "{logs}");
        assert!(lines[1].starts_with(&ids(server)) && lines[1].contains("after the storage span"), "{logs}");
        // The unsampled call: no ids to give.
        assert!(!lines[2].contains("trace_id=") && !lines[3].contains("trace_id="), "{logs}");
    }

    /// Calls a handler through the layer with the caller's `headers`; returns the `traceparent`
    /// and `tracestate` that a call the handler makes (through `TraceInterceptor`) carries.
    async fn passed_on(headers: &[(&str, &str)]) -> (Option<String>, Option<String>) {
        use tonic::service::Interceptor as _;
        let handler = tower::service_fn(|_: http::Request<()>| async {
            let outgoing = TraceInterceptor.call(tonic::Request::new(())).unwrap();
            let again = TraceInterceptor.call(tonic::Request::new(())).unwrap();
            assert_eq!(outgoing.metadata().get("traceparent"), again.metadata().get("traceparent"), "one context");
            let mut answer = http::Response::builder().header("grpc-status", "0");
            for key in ["traceparent", "tracestate"] {
                if let Some(value) = outgoing.metadata().get(key) {
                    assert!(value.is_sensitive(), "{key} goes out never indexed");
                    answer = answer.header(format!("sent-{key}"), value.to_str().unwrap());
                }
            }
            Ok::<_, std::convert::Infallible>(answer.body(()).unwrap())
        });
        let mut request = http::Request::builder().uri("/pkg.Svc/Get");
        for (key, value) in headers {
            request = request.header(*key, *value);
        }
        let answer = ServerTraceLayer::new("svc").layer(handler).oneshot(request.body(()).unwrap()).await.unwrap();
        let sent = |key: &str| answer.headers().get(format!("sent-{key}")).map(|v| v.to_str().unwrap().to_string());
        (sent("traceparent"), sent("tracestate"))
    }

    /// The calls a handler makes follow the decision taken for the call it serves: a sampled
    /// call's own SERVER span is their parent; an unsampled one passes the caller's
    /// `traceparent` and `tracestate` on as they came, or a fresh unsampled `traceparent` when
    /// this process roots the trace; and a process that exports nothing passes the caller's on.
    #[tokio::test(flavor = "current_thread")]
    async fn outgoing_calls_carry_the_decision_taken_for_the_incoming_one() {
        let _state = crate::telemetry::tests::process_state().await;
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let unsampled = "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-00";
        let state = ("tracestate", "vendor=abc");

        // Nothing exported: the caller's context passes through, and without one nothing is sent.
        assert_eq!(
            passed_on(&[("traceparent", sampled), state]).await,
            (Some(sampled.to_string()), Some("vendor=abc".to_string()))
        );
        assert_eq!(passed_on(&[]).await, (None, None));
        let invalid = [("traceparent", "00-not-a-trace-01"), state];
        assert_eq!(passed_on(&invalid).await, (None, None), "an invalid traceparent is not passed on");

        // Exported, no new trace sampled (ratio 0).
        let config = test_config(SamplerConfig::Ratio(0.0));
        let kept = Keep::default();
        let (otel, guard) = crate::telemetry::export_layer(&config, kept.clone());
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(otel));
        assert_eq!(
            passed_on(&[("traceparent", unsampled), state]).await,
            (Some(unsampled.to_string()), Some("vendor=abc".to_string()))
        );
        let (root, _) = passed_on(&[]).await;
        let root = root.expect("a new unsampled trace is passed on");
        assert!(root.len() == 55 && root.ends_with("-00") && !root.contains(&unsampled[3..35]), "{root}");
        let (child, _) = passed_on(&[("traceparent", sampled)]).await;
        let child = child.expect("a sampled call passes its span on");
        assert!(child.starts_with(&sampled[..36]) && child.ends_with("-01"), "{child}");
        assert_ne!(child, sampled, "the parent below is this call's SERVER span, not the caller's");
        // A tracestate split over two header lines goes on as one list.
        let split = [("traceparent", unsampled), ("tracestate", "a=1"), ("tracestate", "b=2")];
        assert_eq!(passed_on(&split).await, (Some(unsampled.to_string()), Some("a=1,b=2".to_string())));
        guard.shutdown();
        let spans = kept.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 1, "one span, the sampled call's: {spans:#?}");
        assert_eq!(&child[36..52], spans[0].span_context.span_id().to_string());
        drop(_default);

        // `always_off` declines a sampled caller's trace: it goes on unsampled, from a new span id,
        // with the caller's list. `always_on` samples an unsampled caller's trace.
        for (sampler, caller, sampled_here) in
            [(SamplerConfig::IgnoreParent(0.0), sampled, false), (SamplerConfig::IgnoreParent(1.0), unsampled, true)]
        {
            let kept = Keep::default();
            let (otel, guard) = crate::telemetry::export_layer(&test_config(sampler), kept.clone());
            let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(otel));
            let (passed, state) = passed_on(&[("traceparent", caller), ("tracestate", "vendor=abc")]).await;
            let passed = passed.expect("the caller's trace is passed on");
            assert!(passed.starts_with(&caller[..36]) && passed[36..52] != caller[36..52], "{passed}");
            assert!(passed.ends_with(if sampled_here { "-01" } else { "-00" }), "{sampler:?}: {passed}");
            assert_eq!(state.as_deref(), Some("vendor=abc"));
            guard.shutdown();
            let spans = kept.0.lock().unwrap().clone();
            assert_eq!(spans.len(), usize::from(sampled_here), "{sampler:?}: {spans:#?}");
        }
    }

    /// A new trace's decision is the trace-id ratio rule on the id its root span gets, so that a
    /// hop deciding on the trace id (`traceidratio`) agrees with it: sampled roots go on sampled
    /// with an id the rule samples, the others unsampled with an id it turns down.
    #[tokio::test]
    async fn a_root_decision_holds_for_every_hop_that_decides_on_the_trace_id() {
        let _state = crate::telemetry::tests::process_state().await;
        let kept = Keep::default();
        // A queue that holds every span of the 200 calls: the test counts them, and with the
        // shared 64-span queue a burst dropped one now and then (as a bounded queue must).
        let config = TelemetryConfig { max_queue_size: 256, ..test_config(SamplerConfig::IgnoreParent(0.3)) };
        let (otel, guard) = crate::telemetry::export_layer(&config, kept.clone());
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(otel));
        let (mut sampled, mut unsampled) = (0, 0);
        for _ in 0..200 {
            let (passed, _) = passed_on(&[]).await;
            let passed = passed.expect("a new trace is passed on");
            let id = TraceId::from_hex(&passed[3..35]).unwrap();
            let here = passed.ends_with("-01");
            assert_eq!(here, crate::sampling::ratio_samples(0.3, id), "{passed}");
            if here { sampled += 1 } else { unsampled += 1 }
        }
        assert!(sampled > 20 && unsampled > 80, "{sampled} sampled, {unsampled} not");
        guard.shutdown();
        assert_eq!(kept.0.lock().unwrap().len(), sampled, "one span per sampled root");
    }
}
