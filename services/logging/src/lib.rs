//! A Loki-class log store as a gRPC service (`meshwork.logging.v1.Logging`). A stream is a set
//! of labels; its entries (timestamp, line, structured metadata) are acknowledged once durable
//! (group commit into a write-ahead log in the Store), gathered in head chunks, and cut into
//! LZ4-compressed chunks with a bloom filter of their text's grams, found through a label index
//! by stream and time ([`engine`]). Queries are LogQL ([`logql`], [`query`]); `Tail` follows new
//! lines live. The Loki HTTP API ([`loki`]), an OTLP logs receiver ([`otlp`]) and a `tracing`
//! layer that ships the mesh's own logs ([`selflog`]) make existing tools work unchanged.
//! [`generators`] writes realistic log corpora (HDFS, Apache, syslog, OpenSSH) for tests and
//! the benchmark ([`bench`]).

#![forbid(unsafe_code)]

pub mod bench;
pub mod chunk;
pub mod engine;
pub mod generators;
pub mod grpc;
pub mod keys;
pub mod labels;
pub mod logql;
pub mod loki;
pub mod model;
pub mod otlp;
pub mod query;
pub mod selflog;
pub mod service;
pub mod store;
pub mod validate;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::logging::v1::logging_server::LoggingServer;

pub use engine::{Config, Engine};
pub use grpc::LoggingService;
pub use loki::loki_router;
pub use otlp::{OtlpLogsService, otlp_http_router, otlp_to_streams};
pub use selflog::{SelfLogs, self_logs};
pub use service::{Logging, instance};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <LoggingServer<LoggingService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table; the gateway may retry the read-only methods.
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "logging",
        about: "log store: Loki-style labelled streams in compressed chunks, LogQL, live tail",
        grpc_services: vec![grpc_name::<LoggingServer<LoggingService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec!["Query", "QueryRange", "Labels", "LabelValues", "Series", "Tail"],
    }
}

/// Builds the service on `ctx` (the process's one instance per store, see [`instance`]) and
/// opens its engine at once; on shutdown every head is written as a chunk.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(instance(ctx))
}

/// [`hosted`] over a given instance.
pub fn hosted_with(logging: std::sync::Arc<Logging>) -> HostedService {
    let opener = logging.clone();
    let flusher = logging.clone();
    HostedService::builder("logging")
        // Shippers may gzip their pushes.
        .grpc(
            LoggingServer::new(LoggingService::new(logging)).accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .task(async move {
            if let Err(e) = opener.engine().await {
                tracing::error!(error = %e, "log store: opening failed");
            }
        })
        .on_shutdown(move || async move {
            if let Err(e) = flusher.flush().await {
                tracing::warn!(error = %e, "log store: final flush failed");
            }
        })
        .build()
}
