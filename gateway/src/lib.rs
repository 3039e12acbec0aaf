//! meshwork's gateway: the data plane of the mesh, built on Pingora 0.9.
//!
//! One port serves h2c gRPC and HTTP/1.1 (or, with `[tls]`, TLS with ALPN h2 and http/1.1;
//! see [`tls`], which also covers mutual TLS to replicas). gRPC calls are routed by service name
//! (`/<package>.<Service>/<Method>`, longest route wins) to pools of replicas, balanced by a
//! per-pool policy (round robin, weighted, random, least request, peak EWMA, consistent hash,
//! IP hash) over the replicas that pass active gRPC health checks and are not ejected as
//! outliers. Connect failures are retried on another replica, UNAVAILABLE too for idempotent
//! methods within a retry budget; `grpc-timeout` is honoured and forwarded; per-client rate limits
//! and message size caps answer RESOURCE_EXHAUSTED; an optional admin port serves Prometheus
//! metrics, readiness and the routing table. Pools may also follow an etcd registry
//! ([`registry`]): replicas register under a lease and join or leave pools live. Failures are gRPC-shaped (`grpc-status` 12 for an
//! unknown service, 14 when no replica is reachable), never HTML. The gateway itself answers gRPC
//! reflection (v1 and v1alpha) and health for the whole mesh, from the protobuf descriptors it
//! is given (`descriptor_sets`). HTTP routes on the same port ([`http_routes`]) answer JSON for
//! methods with `google.api.http` annotations (gRPC-JSON transcoding) and redirect through a
//! unary call (`GET /{code}` -> `302 Location`); the gateway knows no service's domain. Browsers
//! call any routed service on the same port with gRPC-Web (binary or base64 text), with CORS
//! for the origins listed in `[cors]`. HTTP/2 connections (h2c, or TLS with ALPN h2) are
//! served by the frame-level relay of `meshwork-h2relay` with every data-plane feature of the
//! proxy path; their requests that are not native gRPC go to the proxy path in process (see the
//! `fastpath` module; `fast_path = false` serves them with Pingora's HTTP/2 proxy).
//!
//! ```no_run
//! let config = meshwork_gateway::GatewayConfig::from_file("gateway/examples/gateway.toml")?;
//! let gateway = meshwork_gateway::spawn(config)?;
//! // ... serve ...
//! gateway.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Pingora logs through the `log` crate; a `tracing-subscriber` initialised with its default
//! `tracing-log` feature (as `init()` does) forwards those records into `tracing`.

mod admin;
mod authn;
pub mod balance;
mod config;
mod fastpath;
mod grpc_errors;
mod grpc_web;
mod guard;
pub mod http_routes;
mod internal;
mod limits;
mod metrics;
mod pool;
mod proxy;
pub mod registry;
mod routing;
mod server;
pub mod tls;
pub mod trace;

/// The gateway's byte parsers that are private to the data plane, exposed for the fuzz targets
/// (`fuzz/`) and their stable corpus replay (`meshwork-fuzz-bodies`); not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::grpc_errors::{encode_grpc_message, grpc_message_value, is_grpc_content_type};
    pub use crate::grpc_web::{InvalidBase64, WebCall, WebMode, trailer_frame, web_mode};
    pub use crate::limits::MessageMeter;
    pub use crate::proxy::parse_status as parse_grpc_status;
}

use std::net::SocketAddr;

pub use authn::{API_KEY_HEADER, AuthConfig};
pub use balance::Policy;
pub use config::{
    BUILTIN_SERVICES, ConfigError, CorsConfig, EndpointConfig, GatewayConfig, HealthCheckConfig, HealthCheckOverride,
    OutlierConfig, OutlierOverride, PoolConfig, RateLimitConfig, RegistryConfig, RetryBudgetConfig,
    RetryBudgetOverride, RouteConfig, SplitConfig,
};
pub use http_routes::{DescriptorSet, HttpRouteConfig, RedirectRouteConfig, StatusRuleConfig, TranscodeRouteConfig};
pub use registry::RegistryError;
pub use server::{GatewayHandle, run, spawn, spawn_with_clock};
pub use tls::{ListenerTlsConfig, UpstreamTlsConfig, install_crypto_provider};

/// Why the gateway could not start or did not stop cleanly. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A pool endpoint's host name does not resolve.
    #[error("pool \"{pool}\": cannot resolve endpoint \"{endpoint}\": {reason}")]
    Resolve {
        /// The pool.
        pool: String,
        /// The endpoint as configured.
        endpoint: String,
        /// The resolver's answer.
        reason: String,
    },
    /// A listening address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Starting failed for another reason.
    #[error("gateway failed to start: {0}")]
    Start(String),
    /// Stopping did not go cleanly.
    #[error("gateway did not stop cleanly: {0}")]
    Stopped(String),
}
