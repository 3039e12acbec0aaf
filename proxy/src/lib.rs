//! meshwork's gateway: the data plane of the mesh, built on Pingora 0.9.
//!
//! One port serves h2c gRPC and HTTP/1.1. gRPC calls are routed by service name
//! (`/<package>.<Service>/<Method>`, longest route wins) to pools of replicas, round robin, with
//! connect failures retried on another replica. Failures are gRPC-shaped (`grpc-status` 12 for an
//! unknown service, 14 when no replica is reachable), never HTML. The gateway itself answers gRPC
//! reflection (v1 and v1alpha) and health for the whole mesh, and HTTP `GET /<code>` short-link
//! redirects through the URL shortener.
//!
//! ```no_run
//! let config = meshwork_proxy::GatewayConfig::from_file("proxy/examples/gateway.toml")?;
//! let gateway = meshwork_proxy::spawn(config)?;
//! // ... serve ...
//! gateway.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Pingora logs through the `log` crate; a `tracing-subscriber` initialised with its default
//! `tracing-log` feature (as `init()` does) forwards those records into `tracing`.

mod config;
mod grpc_errors;
mod internal;
mod proxy;
mod redirect;
mod routing;
mod server;

use std::net::SocketAddr;

pub use config::{BUILTIN_SERVICES, ConfigError, GatewayConfig, PoolConfig, RedirectConfig, RouteConfig};
pub use redirect::LINK_STATE_KEY;
pub use server::{GatewayHandle, run, spawn};

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
