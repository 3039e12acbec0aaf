//! What tracing costs one call, on the thread that serves it, for each hop's real span code:
//! the gateway's (`meshwork_gateway::trace`: SERVER span, one CLIENT span, context injected
//! upstream, status recorded) and the service's (`ServerTraceLayer` around a handler), with
//! tracing off, with the call not sampled, and sampled. Spans go through the same pipeline as
//! `meshwork_telemetry::init` (targets, sampler, batch processor) into an exporter that
//! only counts them; a last group measures what the exporter thread spends turning spans into
//! OTLP protobuf (the OTLP/gRPC send itself excluded).
//!
//! `cargo bench -p meshwork-gateway --bench trace_spans`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use meshwork_gateway::trace;
use meshwork_telemetry::grpc::ServerTraceLayer;
use meshwork_telemetry::telemetry::{SamplerConfig, TelemetryConfig, export_layer};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tower::{Layer, Service};
use tracing_subscriber::Registry;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

// The allocator of the meshwork binary: span costs are mostly allocation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATH: &str = "/meshwork.urlshortener.v1.UrlShortener/Resolve";
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

/// Keeps the spans it is given (up to a cap), so that the encoding bench has real ones.
#[derive(Debug, Clone, Default)]
struct KeepExporter(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for KeepExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = 512usize.saturating_sub(kept.len());
        kept.extend(batch.into_iter().take(room));
        Ok(())
    }
}

fn config(sampler: SamplerConfig) -> TelemetryConfig {
    TelemetryConfig {
        service_name: "bench".into(),
        otlp_endpoint: None,
        sampler,
        default_log_filter: "warn".into(),
        // Large enough that the bench thread never finds the queue full (dropping is cheaper).
        max_queue_size: 1 << 16,
        max_export_batch_size: 512,
        export_timeout: meshwork_telemetry::telemetry::DEFAULT_EXPORT_TIMEOUT,
        schedule_delay: meshwork_telemetry::telemetry::DEFAULT_SCHEDULE_DELAY,
        exporter: Default::default(),
    }
}

/// One call through the gateway's span code: decide, SERVER span, CLIENT span, inject, status.
fn gateway_call(headers: &http::HeaderMap) {
    let mut call = trace::server_span(headers, PATH, "meshwork.urlshortener.v1.UrlShortener", "Resolve", true);
    let mut client = trace::client_span(&call, PATH, "127.0.0.1:50051".parse().expect("address"), 1);
    let mut upstream = pingora_http::RequestHeader::build("POST", PATH.as_bytes(), None).expect("request header");
    trace::inject(&call, &client, &mut upstream).expect("inject");
    trace::record_status(&mut client, 0);
    if let Some(server) = call.server_mut() {
        trace::record_status(server, 0);
        server.set(opentelemetry::KeyValue::new("meshwork.attempts", 1i64));
    }
    drop(client);
    drop(call);
    std::hint::black_box(upstream);
}

/// One call through the service's `ServerTraceLayer` around a handler that answers at once.
fn service_call(service: &mut impl Service<http::Request<()>, Response = http::Response<()>>, traceparent: &str) {
    let request =
        http::Request::builder().method("POST").uri(PATH).header("traceparent", traceparent).body(()).expect("request");
    let future = service.call(request);
    let _ = std::hint::black_box(futures::executor::block_on(future));
}

fn handler() -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<http::Response<()>, std::convert::Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_request: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(
            http::Response::builder().header("grpc-status", "0").body(()).expect("response"),
        )
    })
}

fn benches(c: &mut Criterion) {
    let no_headers = http::HeaderMap::new();
    let mut group = c.benchmark_group("gateway call");
    // Tracing off: no OpenTelemetry layer, logs at WARN (what `OTEL_SDK_DISABLED=true` gives).
    tracing::subscriber::with_default(Registry::default().with(LevelFilter::WARN), || {
        group.bench_function("off", |b| b.iter(|| gateway_call(&no_headers)));
    });
    let kept = KeepExporter::default();
    for (name, ratio) in [("root not sampled", 0.0), ("sampled", 1.0)] {
        let (otel, guard) = export_layer(&config(SamplerConfig::Ratio(ratio)), kept.clone());
        tracing::subscriber::with_default(Registry::default().with(otel), || {
            group.bench_function(name, |b| b.iter(|| gateway_call(&no_headers)));
        });
        guard.shutdown();
    }
    // The same calls with cold caches: with 10% sampling a sampled call is rare, so its code
    // and data are seldom in cache. Each call follows a sweep over a buffer larger than the
    // last-level cache (the sweep itself is not timed).
    let mut sweep = vec![0u8; 64 << 20];
    let mut pollute = move || {
        for i in (0..sweep.len()).step_by(64) {
            sweep[i] = sweep[i].wrapping_add(1);
        }
        std::hint::black_box(&sweep);
    };
    tracing::subscriber::with_default(Registry::default().with(LevelFilter::WARN), || {
        group.bench_function("off, cold caches", |b| {
            b.iter_batched(&mut pollute, |()| gateway_call(&no_headers), BatchSize::PerIteration)
        });
    });
    let (otel, guard) = export_layer(&config(SamplerConfig::Ratio(1.0)), kept.clone());
    tracing::subscriber::with_default(Registry::default().with(otel), || {
        group.bench_function("sampled, cold caches", |b| {
            b.iter_batched(&mut pollute, |()| gateway_call(&no_headers), BatchSize::PerIteration)
        });
    });
    guard.shutdown();
    group.finish();

    let mut group = c.benchmark_group("service call");
    let mut service = ServerTraceLayer::new("urlshortener").layer(handler());
    tracing::subscriber::with_default(Registry::default().with(LevelFilter::WARN), || {
        group.bench_function("off", |b| b.iter(|| service_call(&mut service, SAMPLED)));
        group.bench_function("off, cold caches", |b| {
            b.iter_batched(&mut pollute, |()| service_call(&mut service, SAMPLED), BatchSize::PerIteration)
        });
    });
    for (name, traceparent) in [("caller not sampled", UNSAMPLED), ("sampled", SAMPLED)] {
        let (otel, guard) = export_layer(&config(SamplerConfig::Ratio(1.0)), kept.clone());
        tracing::subscriber::with_default(Registry::default().with(otel), || {
            group.bench_function(name, |b| b.iter(|| service_call(&mut service, traceparent)));
            if traceparent == SAMPLED {
                group.bench_function("sampled, cold caches", |b| {
                    b.iter_batched(&mut pollute, |()| service_call(&mut service, SAMPLED), BatchSize::PerIteration)
                });
            }
        });
        guard.shutdown();
    }
    group.finish();

    // The exporter thread's share: SpanData -> OTLP ResourceSpans -> protobuf bytes, per span.
    let spans = kept.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(!spans.is_empty(), "the sampled benches exported no spans");
    let sdk_resource = opentelemetry_sdk::Resource::builder().with_service_name("bench").build();
    let resource = opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(&sdk_resource);
    // Converts a batch to OTLP and encodes it, consuming the batch.
    let encode = |batch: Vec<SpanData>| {
        let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans: opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope(
                batch, &resource,
            ),
        };
        prost::Message::encode_to_vec(&request)
    };
    let mut group = c.benchmark_group("export");
    group.throughput(criterion::Throughput::Elements(spans.len() as u64));
    group.bench_function("encode batch", |b| b.iter_batched(|| spans.clone(), encode, BatchSize::LargeInput));
    // What opentelemetry-otlp 0.33's tonic exporter does on every attempt: a deep copy of the
    // batch (kept for retries) converted and encoded, the original dropped after.
    group.bench_function("copy, encode, drop batch (opentelemetry-otlp 0.33)", |b| {
        b.iter_batched(|| spans.clone(), |batch| encode(batch.clone()), BatchSize::LargeInput)
    });
    // meshwork's exporter: the spans written straight into the request's bytes, the batch
    // dropped after (as the cases above drop it); a retry resends the bytes.
    let encoded_resource = meshwork_telemetry::export::otlp::encode_resource(&sdk_resource);
    group.bench_function("encode, drop batch (meshwork exporter)", |b| {
        b.iter_batched(
            || spans.clone(),
            |batch| meshwork_telemetry::export::otlp::encode_request(&encoded_resource, &batch),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = trace_spans;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(trace_spans);
