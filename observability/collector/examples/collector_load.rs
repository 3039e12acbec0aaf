//! Collector ingest cost: pushes OTLP/gRPC exports of realistic spans (shaped like what a traced
//! gateway + urlshortener pair sends: the gateway's exports hold 2 spans per trace, the
//! service's 3, each export ~100 traces, SDK-like resource attributes) into a running
//! `meshwork traces` and reports the collector's CPU time per span, read from /proc/<pid>/stat
//! after the collector has gone idle again (so its background writer is counted).
//!
//! usage: cargo run --release -p meshwork-collector --example collector_load -- \
//!          <otlp grpc endpoint, e.g. http://127.0.0.1:4317> <collector pid> [traces=50000]

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};

const TRACES_PER_EXPORT: usize = 100;
const CONCURRENCY: usize = 4;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", service),
            kv("service.version", "0.1.0"),
            kv("service.instance.id", "6f1d2c3b-7a8e-4f00-9b1c-2d3e4f5a6b7c"),
            kv("host.name", "bench-host"),
            kv("process.pid", "12345"),
            kv("telemetry.sdk.name", "opentelemetry"),
            kv("telemetry.sdk.language", "rust"),
            kv("telemetry.sdk.version", "0.31.0"),
        ],
        ..Default::default()
    }
}

fn span(trace: u64, id: u64, parent: u64, name: &str, kind: SpanKind, attrs: Vec<KeyValue>) -> Span {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&trace.to_be_bytes());
    trace_id[8..].copy_from_slice(&(trace ^ 0x9e37_79b9_7f4a_7c15).to_be_bytes());
    Span {
        trace_id: trace_id.to_vec(),
        span_id: (trace.wrapping_mul(8) + id).to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 { Vec::new() } else { (trace.wrapping_mul(8) + parent).to_be_bytes().to_vec() },
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: now - 1_000_000 + id * 1000,
        end_time_unix_nano: now - id * 1000,
        attributes: attrs,
        ..Default::default()
    }
}

/// One export of `traces` traces from the gateway (`gateway == true`) or from the service.
fn export(first_trace: u64, traces: usize, gateway: bool) -> ExportTraceServiceRequest {
    let method = "/meshwork.urlshortener.v1.UrlShortener/Resolve";
    let mut spans = Vec::new();
    for t in first_trace..first_trace + traces as u64 {
        if gateway {
            spans.push(span(
                t,
                1,
                0,
                method,
                SpanKind::Server,
                vec![
                    kv("rpc.system", "grpc"),
                    kv("rpc.service", "meshwork.urlshortener.v1.UrlShortener"),
                    kv("rpc.method", "Resolve"),
                    kv("meshwork.service", "gateway"),
                    kv("rpc.grpc.status_code", "0"),
                ],
            ));
            spans.push(span(
                t,
                2,
                1,
                method,
                SpanKind::Client,
                vec![
                    kv("rpc.system", "grpc"),
                    kv("server.address", "127.0.0.1"),
                    kv("server.port", "50051"),
                    kv("meshwork.pool", "urlshortener"),
                ],
            ));
        } else {
            spans.push(span(
                t,
                3,
                2,
                method,
                SpanKind::Server,
                vec![
                    kv("rpc.system", "grpc"),
                    kv("rpc.method", "Resolve"),
                    kv("meshwork.service", "urlshortener"),
                    kv("rpc.grpc.status_code", "0"),
                ],
            ));
            spans.push(span(t, 4, 3, "storage.get", SpanKind::Internal, vec![kv("db.system", "embedded")]));
            spans.push(span(t, 5, 3, "cache.lookup", SpanKind::Internal, vec![kv("cache.hit", "false")]));
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(if gateway { "gateway" } else { "urlshortener" })),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "meshwork".into(), ..Default::default() }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("collector pid");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Waits (up to 60 s) until the collector used no CPU for a second.
async fn settle(pid: u32) {
    for _ in 0..60 {
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cpu_ticks(pid) <= before + 1 {
            return;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, pid, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: collector_load <otlp grpc endpoint> <collector pid> [traces]");
    };
    let pid: u32 = pid.parse()?;
    let traces: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(50_000);
    let hz = 100.0; // CLK_TCK on Linux
    let client = TraceServiceClient::connect(endpoint.clone()).await?.max_encoding_message_size(64 << 20);
    // A distinct trace id space per run, so that repeated runs against one collector do not collide.
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as u64 * 1000;
    let exports: Vec<ExportTraceServiceRequest> = (0..traces.div_ceil(TRACES_PER_EXPORT))
        .flat_map(|i| {
            let first = base + (i * TRACES_PER_EXPORT) as u64;
            [export(first, TRACES_PER_EXPORT, true), export(first, TRACES_PER_EXPORT, false)]
        })
        .collect();
    let spans: usize =
        exports.iter().flat_map(|e| &e.resource_spans).flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    settle(pid).await;
    let cpu0 = cpu_ticks(pid);
    let started = Instant::now();
    let mut chunks: Vec<Vec<ExportTraceServiceRequest>> = (0..CONCURRENCY).map(|_| Vec::new()).collect();
    for (i, e) in exports.into_iter().enumerate() {
        chunks[i % CONCURRENCY].push(e);
    }
    let mut tasks = Vec::new();
    for chunk in chunks {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            for e in chunk {
                client.export(e).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let sent = started.elapsed();
    settle(pid).await;
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / hz;
    println!(
        "spans={spans} send_s={:.2} collector_cpu_s={cpu:.2} collector_cpu_us/span={:.2}",
        sent.as_secs_f64(),
        cpu * 1e6 / spans as f64
    );
    Ok(())
}
