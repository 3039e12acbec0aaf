//! Observability for every meshwork process: `tracing` everywhere, exported as OpenTelemetry
//! spans over OTLP/gRPC (batch processor, parent-based ratio sampling, configured by the
//! standard `OTEL_*` variables), W3C `traceparent` propagation for tonic clients and servers and
//! for the gateway, log lines that carry `trace_id`/`span_id`, and the embedded trace backend
//! (`collector`): an OTLP receiver, a bounded trace store, the Jaeger query API (v1 and v3) and
//! a built-in web page.

#![forbid(unsafe_code)]

pub mod collector;
pub mod export;
pub mod grpc;
pub mod metrics;
pub mod propagation;
pub mod sampling;
pub mod telemetry;

pub use telemetry::{TelemetryConfig, TelemetryGuard, init, init_logs_only};
