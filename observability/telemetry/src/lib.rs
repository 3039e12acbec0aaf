//! What every meshwork process links for observability: `tracing` everywhere, exported as
//! OpenTelemetry spans over OTLP/gRPC (batch processor, parent-based ratio sampling, configured
//! by the standard `OTEL_*` variables), W3C `traceparent` propagation for tonic clients and
//! servers and for the gateway, log lines that carry `trace_id`/`span_id`, the gRPC server trace
//! layer, and the Prometheus metric helpers (one set of latency buckets for every histogram).
//! The embedded trace backend that receives the spans is a crate of its own,
//! `meshwork-collector` (`observability/collector`).

#![forbid(unsafe_code)]

pub mod export;
pub mod grpc;
pub mod grpc_timeout;
pub mod metrics;
pub mod propagation;
pub mod sampling;
pub mod telemetry;

pub use telemetry::{ExtraLayer, TelemetryConfig, TelemetryGuard, init, init_logs_only, init_with};
