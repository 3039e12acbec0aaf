//! The gateway's configuration: a TOML file (or string) deserialised into [`GatewayConfig`],
//! then checked by [`GatewayConfig::validate`], which names the first problem in one line.
//!
//! ```toml
//! listen = "127.0.0.1:8080"          # required; h2c gRPC and HTTP/1.1 share this port
//! threads = 2                        # worker threads of the proxy (default 2)
//! grace_period_seconds = 5           # how long shutdown waits for in-flight calls (default 5)
//! upgrade_sock = "/run/meshwork-gw.upgrade" # graceful upgrade hand-over (default /tmp/meshwork-gateway-<port>.upgrade)
//!
//! [pools.urlshortener]
//! endpoints = ["127.0.0.1:50051", "127.0.0.1:50052"]
//!
//! [[routes]]
//! service = "meshwork.urlshortener.v1.UrlShortener"   # or a package prefix: "meshwork.urlshortener.v1"
//! pool = "urlshortener"
//!
//! descriptor_sets = ["meshwork.bin"]  # FileDescriptorSets: reflection and HTTP routes
//!
//! [[http_routes]]                    # optional: JSON over HTTP from google.api.http annotations
//! kind = "transcode"
//! services = ["meshwork.urlshortener.v1.UrlShortener"]
//!
//! [cors]                             # optional: pages of these origins may call with gRPC-Web
//! allowed_origins = ["https://app.example.com"]
//!
//! [health_check]                     # every pool's; also [retry_budget] and [outlier]
//! interval_ms = 2000
//!
//! [pools.urlshortener.health_check]  # this pool's changes; the other fields are inherited
//! interval_ms = 500
//! ```
//!
//! Pools choose a balancing `policy`, may weight endpoints (`{ address = "...", weight = 3 }`),
//! cap calls in flight per replica, ramp returning replicas (`slow_start_ms`). Active health
//! checks (`[health_check]`), the retry budget (`[retry_budget]`) and passive outlier ejection
//! (`[outlier]`) are set for every pool, and each pool may change some of their fields in
//! `[pools.NAME.health_check]`, `[pools.NAME.retry_budget]` and `[pools.NAME.outlier]`; the
//! fields it leaves out keep the global values. (The old top-level `health_check_interval_ms`,
//! `retry_budget_percent`, `registry_prefix`... fail to parse with a message naming the table
//! they moved to.) Routes mark `idempotent_methods` (UNAVAILABLE is retried on another
//! replica for those only) and may cap the deadline (`timeout_ms`). `[[http_routes]]` serve
//! HTTP on the same port from the `descriptor_sets` (see [`crate::http_routes`]): JSON
//! transcoding of annotated methods, and redirect routes (`GET /{code}` -> `302 Location`).
//! `[rate_limit]` adds
//! per-client token buckets, `admin_listen` a Prometheus / readiness / routing-table port,
//! `[registry]` replicas from a service registry.
//! `[tls]` puts TLS on the listener and `[pools.NAME.tls]` (mutual) TLS towards a pool's
//! replicas (see [`crate::tls`]); their PEM files are read and checked by `validate`.
//! `[auth]` makes callers prove who they are (JWT or API key; routes opt out with
//! `allow_anonymous = true`; see [`crate::authn`]); its files are read and checked by `validate`.
//! gRPC-Web needs no setting: it is served on `listen` beside native gRPC. Without `[cors]` only
//! same-origin pages (and non-browser clients) may use it: a gateway in front of internal
//! services should not be callable from every web site a user's browser opens. `meshwork up`,
//! the local development mesh, allows every origin.
//! `gateway/examples/gateway.toml` shows every field with its default.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::authn::AuthConfig;
use crate::balance::Policy;
use crate::http_routes::{DescriptorSet, HttpRouteConfig};
use crate::tls::{ListenerTlsConfig, TlsMaterial, UpstreamTlsConfig};

/// gRPC services that the gateway answers itself (merged health and reflection); routes may not
/// claim them.
pub const BUILTIN_SERVICES: &[&str] =
    &["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// Why a configuration could not be loaded or is not usable. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read gateway config {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TOML text is malformed or has unknown / mistyped fields.
    #[error("invalid gateway config{location}: {message}")]
    Parse {
        /// " (file, line N)" or " (line N)", empty when unknown.
        location: String,
        /// The parser's message, on one line.
        message: String,
    },
    /// The configuration parsed but is not consistent (empty pool, unknown pool, bad address...).
    /// The message quotes configured values, whose control characters are shown escaped.
    #[error("invalid gateway config: {}", one_line(.0))]
    Invalid(String),
}

/// Escapes the control characters of `message` (a configured name or address may hold a
/// newline: TOML's quoted keys and strings allow `\n`), so that the message stays one line.
fn one_line(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.chars().any(char::is_control) {
        return message.into();
    }
    message.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect()
}

/// The whole gateway configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the gateway listens on (h2c gRPC and HTTP/1.1 on the same port). Port 0 is not
    /// allowed: callers need to know the port.
    pub listen: SocketAddr,
    /// Worker threads of the proxy. Default 2.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// On shutdown, how long in-flight calls may take to finish before they are cut. Default 5.
    #[serde(default = "default_grace_period_seconds")]
    pub grace_period_seconds: u64,
    /// The Unix socket over which a new gateway process takes over this one's listening socket
    /// in a graceful upgrade (`meshwork gateway --upgrade`, then SIGQUIT to the running one).
    /// Default: `/tmp/meshwork-gateway-<listen port>.upgrade`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_sock: Option<std::path::PathBuf>,
    /// Take the listening socket over from the gateway running with the same `upgrade_sock`
    /// instead of binding it (set by `meshwork gateway --upgrade`, never by the file).
    #[serde(skip)]
    pub take_over: bool,
    /// Timeout of a TCP connect to a replica, in milliseconds. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Concurrent HTTP/2 streams a downstream client may open on one connection. Default 1024.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Largest request header list a client may send, in bytes: on HTTP/2 the decoded list
    /// (names, values and 32 bytes per field, as HTTP/2 counts it; advertised in SETTINGS, and
    /// it also caps what a HEADERS + CONTINUATION block may buffer), on HTTP/1.1 the request
    /// head (answered 431). Default 16384 (16 KiB); 1024 to 1048576.
    #[serde(default = "default_max_header_list_bytes")]
    pub max_header_list_bytes: u32,
    /// HTTP/2 streams a client may open and reset before the gateway has taken them up, on one
    /// connection; one more ends the connection with GOAWAY ENHANCE_YOUR_CALM (the rapid-reset
    /// attack, CVE-2023-44487). Default 20; 1 to 10000.
    #[serde(default = "default_max_pending_reset_streams")]
    pub max_pending_reset_streams: u32,
    /// HTTP/2 streams the gateway may reset on one connection because of the client's
    /// protocol errors; one more ends the connection with GOAWAY ENHANCE_YOUR_CALM.
    /// Default 1024; 1 to 100000.
    #[serde(default = "default_max_error_reset_streams")]
    pub max_error_reset_streams: u32,
    /// How long an HTTP/2 connection may stay without a call in flight before the gateway
    /// closes it (half-open connections, clients that trickle a frame), in milliseconds.
    /// Default 120000 (2 minutes); 100 to 3600000.
    #[serde(default = "default_h2_idle_timeout_ms")]
    pub h2_idle_timeout_ms: u64,
    /// How long a client has to send a whole HTTP/1.1 request head (or the HTTP/2 connection
    /// preface), from its first byte (or from the end of the previous response), in
    /// milliseconds; later, HTTP/1.1 is answered 408 and the connection closed (slowloris).
    /// Default 10000; 100 to 300000.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Concurrent calls multiplexed on one upstream HTTP/2 connection before the gateway opens
    /// another one to the same replica. Default 128.
    #[serde(default = "default_upstream_max_h2_streams")]
    pub upstream_max_h2_streams: usize,
    /// Largest gRPC request message, in bytes; larger ones end the call RESOURCE_EXHAUSTED.
    /// Default 4194304 (4 MiB, gRPC's default).
    #[serde(default = "default_max_message_bytes")]
    pub max_request_message_bytes: u32,
    /// Largest gRPC response message, in bytes; larger ones end the call RESOURCE_EXHAUSTED.
    /// Default 4194304.
    #[serde(default = "default_max_message_bytes")]
    pub max_response_message_bytes: u32,
    /// Per-client rate limit; none by default.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Address of the admin HTTP port (`/metrics`, `/ready`, `/routes`); none by default.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Active health checks of every pool's replicas (`[health_check]`); a pool may change
    /// some of them in `[pools.NAME.health_check]`. Every field has its default when absent.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// Retry budget of every pool (`[retry_budget]`); a pool may change some of it in
    /// `[pools.NAME.retry_budget]`. Every field has its default when absent.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// Passive outlier ejection in every pool (`[outlier]`); a pool may change some of it in
    /// `[pools.NAME.outlier]`. Every field has its default when absent.
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// Service registry (`[registry]`): replicas registered there join the pool of their name.
    /// None by default.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// Named pools of replicas.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Routes from gRPC service names (or package prefixes) to pools; the longest match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Encoded protobuf `FileDescriptorSet`s of the routed services (TOML: file paths, relative
    /// to the configuration file). Reflection at the gateway describes the routed services from
    /// them, and `http_routes` read their methods and `google.api.http` annotations. None by
    /// default (reflection then lists only health and reflection).
    #[serde(default)]
    pub descriptor_sets: Vec<DescriptorSet>,
    /// HTTP routes on `listen`: gRPC-JSON transcoding and redirects. None by default.
    #[serde(default)]
    pub http_routes: Vec<HttpRouteConfig>,
    /// TLS on `listen` (ALPN h2 and http/1.1) instead of h2c; none by default.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// Authentication of callers (JWT, API keys; see [`crate::authn`]); none by default: every
    /// call goes through, as without it.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Whether a call the gateway roots and does not sample goes upstream with a `traceparent`
    /// (fresh ids, flags `00`) so that every hop below follows the decision, as W3C Trace
    /// Context has it. `false`: such calls go upstream with no trace headers, which spares
    /// every unsampled call the HPACK work of a header that is new each time (docs/BENCHMARKS.md:
    /// about 3% of the gateway's and the service's instructions per call); the replicas must
    /// then root no traces of their own (`--trace-sampling 0`, or
    /// `OTEL_TRACES_SAMPLER=parentbased_always_off`), or they sample calls that the gateway
    /// turned down, and their traces lack the gateway's spans. Default true.
    #[serde(default = "default_propagate_unsampled")]
    pub propagate_unsampled: bool,
    /// Which web origins may call through the gateway with gRPC-Web (CORS). None by default:
    /// only same-origin pages (and non-browser clients) can, because a gateway in front of
    /// internal services should not be callable from every site a user's browser visits.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// The gRPC fast path (on by default): HTTP/2 connections (h2c with prior knowledge, or
    /// TLS with ALPN h2) are served by the frame-level relay of `meshwork-h2relay` instead of
    /// Pingora's generic HTTP/2 proxy. Its gRPC calls get everything the proxy path gives:
    /// routing (method overrides, header matches, weighted splits), authentication, the
    /// per-client rate limit, every balancing policy with health, outlier ejection, slow start
    /// and concurrency caps, retries within the retry budget, `grpc-timeout` and route
    /// deadlines, message size caps, metrics, spans and trace propagation, TLS and mutual TLS
    /// to replicas, and the gateway's own reflection and health. Requests on such a connection
    /// that are not native gRPC (gRPC-Web, the HTTP routes) are handed to the proxy path in
    /// process. HTTP/1.1 connections take the proxy path. `false` serves every connection
    /// with Pingora's HTTP/2 proxy.
    #[serde(default = "default_fast_path")]
    pub fast_path: bool,
}

/// A pool of interchangeable replicas of one or more services.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Replicas as `"host:port"` (h2c gRPC) or `{ address = "host:port", weight = N }`.
    pub endpoints: Vec<EndpointConfig>,
    /// Balancing policy: `round_robin` (default), `weighted`, `random`, `least_request`,
    /// `peak_ewma`, `consistent_hash`, `ip_hash`.
    #[serde(default)]
    pub policy: Policy,
    /// For `consistent_hash`: the metadata header whose value is hashed (calls without it go
    /// round robin).
    #[serde(default)]
    pub hash_key: Option<String>,
    /// Calls in flight per replica; when every replica is full the call fails UNAVAILABLE at
    /// once. 0 (default) means no cap.
    #[serde(default)]
    pub max_inflight_per_replica: usize,
    /// A replica that returns (healthy again, ejection over, newly registered) gets a share of
    /// calls ramping from 10% to 100% over this window, in milliseconds. 0 (default) disables.
    #[serde(default)]
    pub slow_start_ms: u64,
    /// This pool's changes to `[health_check]`; none by default.
    #[serde(default)]
    pub health_check: HealthCheckOverride,
    /// This pool's changes to `[retry_budget]`; none by default.
    #[serde(default)]
    pub retry_budget: RetryBudgetOverride,
    /// This pool's changes to `[outlier]`; none by default.
    #[serde(default)]
    pub outlier: OutlierOverride,
    /// TLS or mutual TLS to the replicas (and their health checks); h2c when none (default).
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
}

impl PoolConfig {
    /// A round-robin pool over `endpoints` with every default.
    pub fn new<E: Into<EndpointConfig>>(endpoints: impl IntoIterator<Item = E>) -> Self {
        Self { endpoints: endpoints.into_iter().map(Into::into).collect(), ..Self::default() }
    }
}

/// One replica of a pool.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum EndpointConfig {
    /// `"host:port"`, weight 1.
    Address(String),
    /// `{ address = "host:port", weight = N }`.
    Weighted {
        /// `host:port`.
        address: String,
        /// Relative weight (1..=1000) for `weighted` and the hashing policies. Default 1.
        #[serde(default = "default_weight")]
        weight: u32,
    },
}

impl EndpointConfig {
    /// The `host:port`.
    pub fn address(&self) -> &str {
        match self {
            EndpointConfig::Address(a) | EndpointConfig::Weighted { address: a, .. } => a,
        }
    }

    /// The weight (1 unless given).
    pub fn weight(&self) -> u32 {
        match self {
            EndpointConfig::Address(_) => 1,
            EndpointConfig::Weighted { weight, .. } => *weight,
        }
    }
}

impl From<String> for EndpointConfig {
    fn from(address: String) -> Self {
        EndpointConfig::Address(address)
    }
}

impl From<&str> for EndpointConfig {
    fn from(address: &str) -> Self {
        EndpointConfig::Address(address.to_string())
    }
}

/// Active gRPC health checks (`[health_check]`): every replica is asked
/// `grpc.health.v1.Health/Check` for service `""` (SERVING or UNIMPLEMENTED passes), and
/// selection avoids replicas that failed `unhealthy_threshold` checks in a row until
/// `healthy_threshold` pass. `[pools.NAME.health_check]` changes fields for one pool.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// How often every replica is checked, in milliseconds (100..=3600000). Default 2000.
    #[serde(default = "default_health_check_interval_ms")]
    pub interval_ms: u64,
    /// Timeout of one check, in milliseconds (1..=60000). Default 1000.
    #[serde(default = "default_health_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failed checks that mark a replica unhealthy (1..=100). Default 2.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Consecutive passed checks that mark an unhealthy replica healthy again (1..=100).
    /// Default 1.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval_ms: default_health_check_interval_ms(),
            timeout_ms: default_health_check_timeout_ms(),
            unhealthy_threshold: default_unhealthy_threshold(),
            healthy_threshold: default_healthy_threshold(),
        }
    }
}

impl HealthCheckConfig {
    /// Checks `[health_check]`; errors name `health_check.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|why| invalid_in("health_check", why))
    }

    /// Names the first field out of range, relative to the table.
    fn check(&self) -> Result<(), String> {
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return Err(format!("interval_ms = {}: must be between 100 and 3600000", self.interval_ms));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(format!("timeout_ms = {}: must be between 1 and 60000", self.timeout_ms));
        }
        for (field, value) in
            [("unhealthy_threshold", self.unhealthy_threshold), ("healthy_threshold", self.healthy_threshold)]
        {
            if !(1..=100).contains(&value) {
                return Err(format!("{field} = {value}: must be between 1 and 100"));
            }
        }
        Ok(())
    }
}

/// `[pools.NAME.health_check]`: the fields given replace those of `[health_check]` for this
/// pool; the others are inherited.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckOverride {
    /// [`HealthCheckConfig::interval_ms`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// [`HealthCheckConfig::timeout_ms`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// [`HealthCheckConfig::unhealthy_threshold`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// [`HealthCheckConfig::healthy_threshold`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
}

impl HealthCheckOverride {
    /// Returns `global` with the fields given here replaced.
    pub fn over(&self, global: &HealthCheckConfig) -> HealthCheckConfig {
        HealthCheckConfig {
            interval_ms: self.interval_ms.unwrap_or(global.interval_ms),
            timeout_ms: self.timeout_ms.unwrap_or(global.timeout_ms),
            unhealthy_threshold: self.unhealthy_threshold.unwrap_or(global.unhealthy_threshold),
            healthy_threshold: self.healthy_threshold.unwrap_or(global.healthy_threshold),
        }
    }
}

/// Retry budget of a pool (`[retry_budget]`): retries of UNAVAILABLE on idempotent methods are
/// allowed for `percent` of the pool's calls plus `min_per_second`, as in linkerd and Finagle.
/// `[pools.NAME.retry_budget]` changes fields for one pool.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a share of calls, in percent (0..=100). Default 20.
    #[serde(default = "default_retry_budget_percent")]
    pub percent: u32,
    /// Retries per second always allowed, on top of the share. Default 10.
    #[serde(default = "default_retry_budget_min_per_second")]
    pub min_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self { percent: default_retry_budget_percent(), min_per_second: default_retry_budget_min_per_second() }
    }
}

impl RetryBudgetConfig {
    /// Checks `[retry_budget]`; errors name `retry_budget.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|why| invalid_in("retry_budget", why))
    }

    fn check(&self) -> Result<(), String> {
        if self.percent > 100 {
            return Err(format!("percent = {}: at most 100", self.percent));
        }
        Ok(())
    }
}

/// `[pools.NAME.retry_budget]`: the fields given replace those of `[retry_budget]` for this
/// pool; the others are inherited.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetOverride {
    /// [`RetryBudgetConfig::percent`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// [`RetryBudgetConfig::min_per_second`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_second: Option<u32>,
}

impl RetryBudgetOverride {
    /// Returns `global` with the fields given here replaced.
    pub fn over(&self, global: &RetryBudgetConfig) -> RetryBudgetConfig {
        RetryBudgetConfig {
            percent: self.percent.unwrap_or(global.percent),
            min_per_second: self.min_per_second.unwrap_or(global.min_per_second),
        }
    }
}

/// Passive outlier ejection (`[outlier]`): consecutive connect failures or UNAVAILABLE answers
/// eject a replica for a while. `[pools.NAME.outlier]` changes fields for one pool.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// Consecutive connect failures or UNAVAILABLE answers that eject a replica; 0 disables.
    /// Default 5.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// First ejection, in milliseconds (at least 1); each further ejection doubles it. Default
    /// 5000.
    #[serde(default = "default_base_ejection_ms")]
    pub base_ejection_ms: u64,
    /// Longest ejection, in milliseconds (at least `base_ejection_ms`). Default 300000.
    #[serde(default = "default_max_ejection_ms")]
    pub max_ejection_ms: u64,
    /// At most this share of a pool (percent, 0..=100) is ejected at once. Default 50.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive_failures(),
            base_ejection_ms: default_base_ejection_ms(),
            max_ejection_ms: default_max_ejection_ms(),
            max_ejection_percent: default_max_ejection_percent(),
        }
    }
}

impl OutlierConfig {
    /// Checks `[outlier]`; errors name `outlier.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|why| invalid_in("outlier", why))
    }

    fn check(&self) -> Result<(), String> {
        if self.max_ejection_percent > 100 {
            return Err(format!("max_ejection_percent = {}: at most 100", self.max_ejection_percent));
        }
        if self.base_ejection_ms == 0 || self.max_ejection_ms < self.base_ejection_ms {
            return Err("base_ejection_ms must be at least 1 and at most max_ejection_ms".into());
        }
        Ok(())
    }
}

/// `[pools.NAME.outlier]`: the fields given replace those of `[outlier]` for this pool; the
/// others are inherited.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutlierOverride {
    /// [`OutlierConfig::consecutive_failures`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// [`OutlierConfig::base_ejection_ms`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_ms: Option<u64>,
    /// [`OutlierConfig::max_ejection_ms`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_ms: Option<u64>,
    /// [`OutlierConfig::max_ejection_percent`] of this pool. Default: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

impl OutlierOverride {
    /// Returns `global` with the fields given here replaced.
    pub fn over(&self, global: &OutlierConfig) -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: self.consecutive_failures.unwrap_or(global.consecutive_failures),
            base_ejection_ms: self.base_ejection_ms.unwrap_or(global.base_ejection_ms),
            max_ejection_ms: self.max_ejection_ms.unwrap_or(global.max_ejection_ms),
            max_ejection_percent: self.max_ejection_percent.unwrap_or(global.max_ejection_percent),
        }
    }
}

/// The service registry (`[registry]`): replicas registered under `prefix` +
/// `<pool>/<host:port>` join the pool of that name (beside its static endpoints, which may
/// then be empty) and leave it when their key goes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The store replicas register in: `etcd://host:port[,host:port...]`. Required.
    pub url: String,
    /// Key prefix of the registry (ends with '/'). Default `meshwork/registry/`.
    #[serde(default = "default_registry_prefix")]
    pub prefix: String,
}

impl RegistryConfig {
    /// The registry at `url` with the default prefix.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), prefix: default_registry_prefix() }
    }

    /// Checks `[registry]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // RegistryError::Url names the section and the URL: `registry "etcd:/x": ...`.
        crate::registry::parse_url(&self.url).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !self.prefix.ends_with('/') {
            return Err(invalid_in("registry", format!("prefix = \"{}\": must end with '/'", self.prefix)));
        }
        Ok(())
    }
}

/// The error for `why` (which names a field of `table`): `table.field ...`.
fn invalid_in(table: &str, why: String) -> ConfigError {
    ConfigError::Invalid(format!("{table}.{why}"))
}

/// One routing rule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A full gRPC service name (`meshwork.urlshortener.v1.UrlShortener`), a package prefix
    /// (`meshwork.urlshortener.v1`, `meshwork`) that matches whole dot-separated segments, or
    /// one method (`meshwork.urlshortener.v1.UrlShortener/Resolve`, a method-level override that
    /// wins over the service's route).
    pub service: String,
    /// The pool that serves it.
    pub pool: String,
    /// The route applies only to calls whose metadata has all these keys with these exact
    /// values (`{ "x-canary" = "1" }`); such routes are tried before the route of the same
    /// service without matches. Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Share of calls for `pool` when `splits` are given. Default 100.
    #[serde(default = "default_route_weight")]
    pub weight: u32,
    /// Other pools that get a share of the calls in proportion to their weights
    /// (`[{ pool = "urlshortener-canary", weight = 5 }]`). Default none.
    #[serde(default)]
    pub splits: Vec<SplitConfig>,
    /// Methods (names like `Resolve`, or `"*"` for all) that are safe to send twice: a call
    /// answered UNAVAILABLE is retried on another replica, within the retry budget. Default none.
    #[serde(default)]
    pub idempotent_methods: Vec<String>,
    /// Longest time a call may take, in milliseconds; a shorter `grpc-timeout` from the client
    /// wins. None (default) leaves calls without a client deadline unbounded.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// With `[auth]`: callers without credentials may call this route (a bad credential is
    /// still refused). Default false: the route needs credentials. No effect without `[auth]`.
    #[serde(default)]
    pub allow_anonymous: bool,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            service: String::new(),
            pool: String::new(),
            headers: BTreeMap::new(),
            weight: default_route_weight(),
            splits: Vec::new(),
            idempotent_methods: Vec::new(),
            timeout_ms: None,
            allow_anonymous: false,
        }
    }
}

impl RouteConfig {
    /// A route from `service` to `pool` with every default.
    pub fn new(service: impl Into<String>, pool: impl Into<String>) -> Self {
        Self { service: service.into(), pool: pool.into(), ..Self::default() }
    }
}

/// A weighted share of a route's calls for another pool.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// The pool.
    pub pool: String,
    /// Its weight, relative to the route's `weight`.
    pub weight: u32,
}

/// Per-client token buckets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Calls per second each client may make on average.
    pub requests_per_second: u32,
    /// Calls a client may make at once after being idle. Default: `requests_per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Metadata header that names the client (like `x-client-id`); calls without it, or when
    /// unset, are keyed by the client's IP address.
    #[serde(default)]
    pub key: Option<String>,
}

/// CORS for gRPC-Web calls from pages of other origins (`[cors]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`scheme://host[:port]`, like `https://app.example.com` or
    /// `http://127.0.0.1:3000`) whose pages may call; `"*"` allows every origin. The request's
    /// origin is echoed back with `Vary: Origin`. Empty: no cross-origin calls.
    pub allowed_origins: Vec<String>,
    /// Request headers (metadata keys) allowed besides the built-in `content-type`,
    /// `x-grpc-web`, `x-user-agent`, `grpc-timeout`, `authorization`, `keep-alive`. Default none.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers a page may read besides `grpc-status`, `grpc-message` and
    /// `grpc-status-details-bin` (list custom metadata here: in a trailers-only answer the
    /// trailers are headers). Default none.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds (`Access-Control-Max-Age`;
    /// Chromium caps it at 7200). Default 7200.
    #[serde(default = "default_cors_max_age_seconds")]
    pub max_age_seconds: u32,
    /// Sends `Access-Control-Allow-Credentials: true` (cookies and HTTP auth from the browser).
    /// Default false.
    #[serde(default)]
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            max_age_seconds: default_cors_max_age_seconds(),
            allow_credentials: false,
        }
    }
}

impl CorsConfig {
    /// CORS that lets pages of any origin call (what `meshwork up` uses for development).
    pub fn any_origin() -> Self {
        Self { allowed_origins: vec!["*".to_string()], ..Self::default() }
    }
}

fn default_cors_max_age_seconds() -> u32 {
    7200
}
fn default_fast_path() -> bool {
    true
}

fn default_propagate_unsampled() -> bool {
    true
}

fn default_threads() -> usize {
    2
}
fn default_grace_period_seconds() -> u64 {
    5
}
fn default_connect_timeout_ms() -> u64 {
    1000
}
fn default_max_concurrent_streams() -> u32 {
    1024
}
fn default_max_header_list_bytes() -> u32 {
    16 << 10
}
fn default_max_pending_reset_streams() -> u32 {
    20
}
fn default_max_error_reset_streams() -> u32 {
    1024
}
fn default_h2_idle_timeout_ms() -> u64 {
    120_000
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_upstream_max_h2_streams() -> usize {
    128
}
fn default_health_check_interval_ms() -> u64 {
    2000
}
fn default_health_check_timeout_ms() -> u64 {
    1000
}
fn default_unhealthy_threshold() -> u32 {
    2
}
fn default_healthy_threshold() -> u32 {
    1
}
fn default_retry_budget_percent() -> u32 {
    20
}
fn default_retry_budget_min_per_second() -> u32 {
    10
}
fn default_max_message_bytes() -> u32 {
    4 << 20
}
fn default_route_weight() -> u32 {
    100
}
fn default_registry_prefix() -> String {
    crate::registry::DEFAULT_PREFIX.to_string()
}
fn default_weight() -> u32 {
    1
}
fn default_consecutive_failures() -> u32 {
    5
}
fn default_base_ejection_ms() -> u64 {
    5000
}
fn default_max_ejection_ms() -> u64 {
    300_000
}
fn default_max_ejection_percent() -> u32 {
    50
}

impl GatewayConfig {
    /// A configuration with every default, listening on `listen`, with no pools or routes.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            threads: default_threads(),
            grace_period_seconds: default_grace_period_seconds(),
            upgrade_sock: None,
            take_over: false,
            connect_timeout_ms: default_connect_timeout_ms(),
            max_concurrent_streams: default_max_concurrent_streams(),
            max_header_list_bytes: default_max_header_list_bytes(),
            max_pending_reset_streams: default_max_pending_reset_streams(),
            max_error_reset_streams: default_max_error_reset_streams(),
            h2_idle_timeout_ms: default_h2_idle_timeout_ms(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            upstream_max_h2_streams: default_upstream_max_h2_streams(),
            max_request_message_bytes: default_max_message_bytes(),
            max_response_message_bytes: default_max_message_bytes(),
            rate_limit: None,
            admin_listen: None,
            health_check: HealthCheckConfig::default(),
            retry_budget: RetryBudgetConfig::default(),
            outlier: OutlierConfig::default(),
            registry: None,
            pools: BTreeMap::new(),
            routes: Vec::new(),
            descriptor_sets: Vec::new(),
            http_routes: Vec::new(),
            tls: None,
            auth: None,
            propagate_unsampled: default_propagate_unsampled(),
            cors: None,
            fast_path: default_fast_path(),
        }
    }

    /// The upgrade socket's path: `upgrade_sock`, or one per listening port under /tmp.
    pub fn upgrade_sock_path(&self) -> std::path::PathBuf {
        self.upgrade_sock.clone().unwrap_or_else(|| {
            std::path::PathBuf::from(format!("/tmp/meshwork-gateway-{}.upgrade", self.listen.port()))
        })
    }

    /// Parses a TOML document (it is not validated; call [`GatewayConfig::validate`]).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, None)
    }

    /// Reads and parses a TOML file (it is not validated; call [`GatewayConfig::validate`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let mut config = Self::parse(&text, Some(path))?;
        // Descriptor files are named relative to the configuration file.
        if let Some(dir) = path.parent() {
            for set in &mut config.descriptor_sets {
                if let DescriptorSet::File(file) = set
                    && file.is_relative()
                {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let location = |line: Option<usize>| match (path, line) {
            (Some(p), Some(l)) => format!(" ({}, line {l})", p.display()),
            (Some(p), None) => format!(" ({})", p.display()),
            (None, Some(l)) => format!(" (line {l})"),
            (None, None) => String::new(),
        };
        toml::from_str(text).map_err(|e: toml::de::Error| {
            // A setting that moved into a table fails as an unknown field (or, for `registry`,
            // a mistyped one); say where it went instead.
            if let Some((line, message)) = moved_setting(text) {
                return ConfigError::Parse { location: location(line), message };
            }
            let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            ConfigError::Parse { location: location(line), message }
        })
    }

    /// Checks the configuration and names the first problem found, in one line: each section
    /// on its own (top-level settings, `[health_check]`, `[retry_budget]`, `[outlier]`,
    /// `[rate_limit]`, `[registry]`, each pool, each route, `[cors]`), then what ties sections
    /// together (ports, pools' tables over the global ones, routes' pools), then what needs
    /// files (`descriptor_sets` and `[[http_routes]]`, `[tls]`, `[auth]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_top_level()?;
        self.health_check.validate()?;
        self.retry_budget.validate()?;
        self.outlier.validate()?;
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        if let Some(registry) = &self.registry {
            registry.validate()?;
        }
        for (name, pool) in &self.pools {
            pool.validate(name)?;
        }
        for route in &self.routes {
            route.validate()?;
        }
        if let Some(cors) = &self.cors {
            cors.validate()?;
        }
        self.check_ports()?;
        self.check_pools()?;
        self.check_routes()?;
        self.validate_http_routes()?;
        TlsMaterial::load(self)?;
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        Ok(())
    }

    /// Checks the top-level settings (listener, threads, timeouts, streams, message sizes).
    fn validate_top_level(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.listen.port() == 0 {
            return invalid(format!("listen = \"{}\": port 0 is not allowed, give a fixed port", self.listen));
        }
        if !(1..=256).contains(&self.threads) {
            return invalid(format!("threads = {}: must be between 1 and 256", self.threads));
        }
        if self.grace_period_seconds > 3600 {
            return invalid(format!("grace_period_seconds = {}: at most 3600", self.grace_period_seconds));
        }
        if !(1..=60_000).contains(&self.connect_timeout_ms) {
            return invalid(format!("connect_timeout_ms = {}: must be between 1 and 60000", self.connect_timeout_ms));
        }
        if self.max_concurrent_streams == 0 {
            return invalid("max_concurrent_streams must be at least 1".to_string());
        }
        self.validate_client_limits()?;
        if !(1..=10_000).contains(&self.upstream_max_h2_streams) {
            return invalid(format!(
                "upstream_max_h2_streams = {}: must be between 1 and 10000",
                self.upstream_max_h2_streams
            ));
        }
        if self.max_request_message_bytes == 0 || self.max_response_message_bytes == 0 {
            return invalid("max_request_message_bytes and max_response_message_bytes must be at least 1".into());
        }
        Ok(())
    }

    /// Checks the limits on what one client connection may do (headers, resets, timeouts).
    fn validate_client_limits(&self) -> Result<(), ConfigError> {
        let out_of = |field: &str, value: u64, low: u64, high: u64| {
            Err(ConfigError::Invalid(format!("{field} = {value}: must be between {low} and {high}")))
        };
        if !(1024..=1 << 20).contains(&self.max_header_list_bytes) {
            return out_of("max_header_list_bytes", self.max_header_list_bytes.into(), 1024, 1 << 20);
        }
        if !(1..=10_000).contains(&self.max_pending_reset_streams) {
            return out_of("max_pending_reset_streams", self.max_pending_reset_streams.into(), 1, 10_000);
        }
        if !(1..=100_000).contains(&self.max_error_reset_streams) {
            return out_of("max_error_reset_streams", self.max_error_reset_streams.into(), 1, 100_000);
        }
        if !(100..=3_600_000).contains(&self.h2_idle_timeout_ms) {
            return out_of("h2_idle_timeout_ms", self.h2_idle_timeout_ms, 100, 3_600_000);
        }
        if !(100..=300_000).contains(&self.header_read_timeout_ms) {
            return out_of("header_read_timeout_ms", self.header_read_timeout_ms, 100, 300_000);
        }
        Ok(())
    }

    /// The admin port must not be the gateway's: the same address, or the same port where one
    /// of them listens on every address.
    fn check_ports(&self) -> Result<(), ConfigError> {
        if let Some(admin) = self.admin_listen
            && admin.port() == self.listen.port()
            && (admin.ip() == self.listen.ip() || admin.ip().is_unspecified() || self.listen.ip().is_unspecified())
        {
            return Err(ConfigError::Invalid(format!(
                "admin_listen = \"{admin}\": must differ from listen (\"{}\")",
                self.listen
            )));
        }
        Ok(())
    }

    /// Every pool has replicas (static, or from the registry), and its `health_check`,
    /// `retry_budget` and `outlier` tables merged over the global ones are valid.
    fn check_pools(&self) -> Result<(), ConfigError> {
        for (name, pool) in &self.pools {
            if pool.endpoints.is_empty() && self.registry.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "pool \"{name}\" has no endpoints (and no registry is configured)"
                )));
            }
            let in_pool = |table: &'static str| {
                move |why: String| ConfigError::Invalid(format!("pool \"{name}\": {table}.{why}"))
            };
            pool.health_check.over(&self.health_check).check().map_err(in_pool("health_check"))?;
            pool.retry_budget.over(&self.retry_budget).check().map_err(in_pool("retry_budget"))?;
            pool.outlier.over(&self.outlier).check().map_err(in_pool("outlier"))?;
        }
        Ok(())
    }

    /// Every route (and split) goes to a configured pool, and no route is listed twice.
    fn check_routes(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let mut services = BTreeSet::new();
        for route in &self.routes {
            for split in &route.splits {
                if !self.pools.contains_key(&split.pool) {
                    return invalid(format!("route \"{}\" splits to unknown pool \"{}\"", route.service, split.pool));
                }
            }
            if !self.pools.contains_key(&route.pool) {
                return invalid(format!("route \"{}\" points to unknown pool \"{}\"", route.service, route.pool));
            }
            if !services.insert((route.service.as_str(), &route.headers)) {
                return invalid(format!("route service \"{}\" is listed twice (with the same headers)", route.service));
            }
        }
        Ok(())
    }

    /// Reads `descriptor_sets` and compiles `[[http_routes]]` against them and the routes.
    fn validate_http_routes(&self) -> Result<(), ConfigError> {
        let descriptors = crate::http_routes::Descriptors::load(&self.descriptor_sets).map_err(ConfigError::Invalid)?;
        crate::http_routes::RouteTable::compile(self, &descriptors).map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

impl PoolConfig {
    /// Checks pool `name` on its own: its name, endpoints, policy, `hash_key` and
    /// `slow_start_ms`. ([`GatewayConfig::validate`] checks its tables merged over the global
    /// ones, and that it has endpoints unless a registry may add them.)
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return invalid(format!("pool name \"{name}\": use letters, digits, '_', '-' or '.'"));
        }
        let mut seen = BTreeSet::new();
        for endpoint in &self.endpoints {
            let address = endpoint.address();
            if let Err(why) = check_endpoint(address) {
                return invalid(format!("pool \"{name}\": endpoint \"{address}\" {why}"));
            }
            if !(1..=1000).contains(&endpoint.weight()) {
                return invalid(format!(
                    "pool \"{name}\": endpoint \"{address}\" weight {}: must be between 1 and 1000",
                    endpoint.weight()
                ));
            }
            if !seen.insert(address) {
                return invalid(format!("pool \"{name}\": endpoint \"{address}\" is listed twice"));
            }
        }
        match (&self.hash_key, self.policy) {
            (None, Policy::ConsistentHash) => {
                return invalid(format!("pool \"{name}\": policy consistent_hash needs hash_key"));
            }
            (Some(key), Policy::ConsistentHash) => {
                if let Err(why) = check_metadata_key(key) {
                    return invalid(format!("pool \"{name}\": hash_key \"{key}\" {why}"));
                }
            }
            (Some(_), policy) => {
                return invalid(format!(
                    "pool \"{name}\": hash_key is only used by policy consistent_hash, not {}",
                    policy.as_str()
                ));
            }
            (None, _) => {}
        }
        if self.slow_start_ms > 3_600_000 {
            return invalid(format!("pool \"{name}\": slow_start_ms = {}: at most 3600000", self.slow_start_ms));
        }
        Ok(())
    }
}

impl RouteConfig {
    /// Checks the route on its own: service (or method) name, headers, weights, idempotent
    /// methods, timeout. ([`GatewayConfig::validate`] checks that its pools exist and that it
    /// is not listed twice.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let (service, method) = match self.service.split_once('/') {
            Some((service, method)) => (service, Some(method)),
            None => (self.service.as_str(), None),
        };
        if self.service.starts_with('/') || self.service.matches('/').count() > 1 {
            return invalid(format!(
                "route service \"{}\" is not a dot-separated gRPC service name or package (like \
                 meshwork.urlshortener.v1), nor <service>/<Method>",
                self.service
            ));
        }
        if let Err(why) = check_service_name(service) {
            return invalid(format!("route service \"{}\" {why}", self.service));
        }
        if let Some(method) = method
            && (method.is_empty() || !method.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return invalid(format!(
                "route service \"{}\": the method after '/' must be a method name like Resolve",
                self.service
            ));
        }
        for key in self.headers.keys() {
            if let Err(why) = check_metadata_key(key) {
                return invalid(format!("route \"{}\": header \"{key}\" {why}", self.service));
            }
        }
        if let Some((key, _)) = self.headers.iter().find(|(_, v)| http::HeaderValue::from_str(v).is_err()) {
            return invalid(format!(
                "route \"{}\": header \"{key}\" has a value that is not valid metadata",
                self.service
            ));
        }
        let total: u64 = u64::from(self.weight) + self.splits.iter().map(|s| u64::from(s.weight)).sum::<u64>();
        if self.weight > 10_000 || self.splits.iter().any(|s| s.weight > 10_000) || total == 0 {
            return invalid(format!("route \"{}\": weights must be between 0 and 10000 and not all 0", self.service));
        }
        if BUILTIN_SERVICES.contains(&service) {
            return invalid(format!(
                "route service \"{}\" is served by the gateway itself and cannot be routed",
                self.service
            ));
        }
        for method in &self.idempotent_methods {
            let ok =
                method == "*" || (!method.is_empty() && method.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !ok {
                return invalid(format!(
                    "route \"{}\": idempotent method \"{method}\" must be a method name like Resolve, or \"*\"",
                    self.service
                ));
            }
        }
        if let Some(timeout) = self.timeout_ms
            && !(1..=86_400_000).contains(&timeout)
        {
            return invalid(format!(
                "route \"{}\": timeout_ms = {timeout}: must be between 1 and 86400000",
                self.service
            ));
        }
        Ok(())
    }
}

impl RateLimitConfig {
    /// Checks `[rate_limit]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.requests_per_second == 0 {
            return invalid("rate_limit.requests_per_second must be at least 1".into());
        }
        if self.burst == Some(0) {
            return invalid("rate_limit.burst must be at least 1".into());
        }
        if let Some(key) = &self.key
            && let Err(why) = check_metadata_key(key)
        {
            return invalid(format!("rate_limit.key \"{key}\" {why}"));
        }
        Ok(())
    }
}

impl CorsConfig {
    /// Checks `[cors]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        for origin in &self.allowed_origins {
            if let Err(why) = check_origin(origin) {
                return invalid(format!("cors.allowed_origins: \"{origin}\" {why}"));
            }
        }
        for (field, names) in [("allow_headers", &self.allow_headers), ("expose_headers", &self.expose_headers)] {
            for name in names {
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
                if !valid {
                    return invalid(format!(
                        "cors.{field}: \"{name}\" must be a lower-case header name like x-client-id"
                    ));
                }
            }
        }
        if self.max_age_seconds > 86_400 {
            return invalid(format!("cors.max_age_seconds = {}: at most 86400", self.max_age_seconds));
        }
        if self.allow_credentials && self.allowed_origins.iter().any(|o| o == "*") {
            return invalid(
                "cors: allow_credentials with allowed_origins \"*\" would let every site use the user's \
                 credentials; list the origins"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Top-level settings that moved into a table: (old key, table, key in the table, whether a
/// pool may override it in `[pools.NAME.<table>]`).
const MOVED_SETTINGS: &[(&str, &str, &str, bool)] = &[
    ("health_check_interval_ms", "health_check", "interval_ms", true),
    ("health_check_timeout_ms", "health_check", "timeout_ms", true),
    ("unhealthy_threshold", "health_check", "unhealthy_threshold", true),
    ("healthy_threshold", "health_check", "healthy_threshold", true),
    ("retry_budget_percent", "retry_budget", "percent", true),
    ("retry_budget_min_per_second", "retry_budget", "min_per_second", true),
    ("registry_prefix", "registry", "prefix", false),
];

/// The first setting of `text` (in file order) written where it used to be, with its line
/// (when found) and a message saying where it goes now; `None` when there is none, or `text`
/// is not TOML.
fn moved_setting(text: &str) -> Option<(Option<usize>, String)> {
    let top: toml::Table = toml::from_str(text).ok()?;
    let mut found: Vec<(Option<usize>, String)> = MOVED_SETTINGS
        .iter()
        .filter_map(|(old, table, key, per_pool)| {
            let value = top.get(*old)?;
            let pool = if *per_pool { format!(" (for one pool: [pools.NAME.{table}])") } else { String::new() };
            Some((top_level_line(text, old), format!("{old} has moved: write {key} = {value} under [{table}]{pool}")))
        })
        .collect();
    if let Some(url) = top.get("registry").filter(|v| v.is_str()) {
        let message = format!("registry = {url} has moved: write url = {url} under [registry]");
        found.push((top_level_line(text, "registry"), message));
    }
    found.into_iter().min_by_key(|(line, _)| line.unwrap_or(usize::MAX))
}

/// The line (from 1) of top-level `key = ...` in `text`: before the first table header.
fn top_level_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .map(str::trim_start)
        .take_while(|line| !line.starts_with('['))
        .position(|line| line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
        .map(|index| index + 1)
}

/// Checks a CORS origin: `"*"` or `scheme://host[:port]` as browsers send it (lower-case, no
/// path, no trailing slash).
fn check_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" {
        return Ok(());
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err("must be \"*\" or scheme://host[:port], like https://app.example.com");
    };
    if scheme != "http" && scheme != "https" {
        return Err("must start with http:// or https://");
    }
    if rest.is_empty() || rest.contains('/') {
        return Err("must have a host and no path (not even a trailing '/')");
    }
    if rest.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lower-case, as browsers send it");
    }
    let host_ok =
        rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']' | b'_'));
    if !host_ok {
        return Err("has an invalid host");
    }
    Ok(())
}

/// Checks the `host:port` syntax of an endpoint (name resolution happens at start).
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        return if addr.port() == 0 { Err("needs a port between 1 and 65535") } else { Ok(()) };
    }
    if endpoint.contains("://") {
        return Err("must be host:port without a scheme");
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err("must be host:port");
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if host.starts_with('[') || host.contains(':') {
        return Err("is not a valid IPv6 address with port ([addr]:port)");
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err("has an invalid host name");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("needs a port between 1 and 65535"),
        Ok(_) => Ok(()),
    }
}

/// Checks a gRPC metadata key (a lower-case HTTP header name, not binary, not reserved).
fn check_metadata_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty()
        || !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("must be a lower-case metadata key like x-client-id");
    }
    if key.starts_with("grpc-") || key.starts_with(':') {
        return Err("is reserved by gRPC");
    }
    Ok(())
}

/// Checks a dot-separated gRPC service name or package prefix.
fn check_service_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.split('.').any(|segment| {
        segment.is_empty()
            || segment.starts_with(|c: char| c.is_ascii_digit())
            || !segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        return Err("is not a dot-separated gRPC service name or package (like meshwork.urlshortener.v1)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:8080"

[pools.urlshortener]
endpoints = ["127.0.0.1:50051", "localhost:50052"]

[[routes]]
service = "meshwork.urlshortener.v1.UrlShortener"
pool = "urlshortener"
"#;

    fn good() -> GatewayConfig {
        GatewayConfig::from_toml_str(GOOD).unwrap()
    }

    fn invalid_message(config: &GatewayConfig) -> String {
        let err = config.validate().unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "one line: {msg}");
        msg
    }

    /// Found by the `gateway_config` fuzz target: a newline in a configured endpoint made a
    /// two-line message.
    #[test]
    fn messages_quoting_values_stay_one_line() {
        let text = GOOD.replace("localhost:50052", "localhost:0010\\n4");
        let msg = invalid_message(&GatewayConfig::from_toml_str(&text).unwrap());
        assert!(msg.contains(r#"endpoint "localhost:0010\n4""#), "{msg}");
    }

    #[test]
    fn defaults_apply_and_good_config_validates() {
        let config = good();
        assert_eq!(config.threads, 2);
        assert_eq!(config.grace_period_seconds, 5);
        assert_eq!(config.upstream_max_h2_streams, 128);
        assert_eq!(config.pools["urlshortener"].endpoints.len(), 2);
        config.validate().unwrap();
    }

    /// The limits on hostile clients have safe defaults, and values that would switch them off
    /// (or make the gateway unusable) are refused, naming the field.
    #[test]
    fn client_limits_default_safely_and_are_bounded() {
        let config = good();
        assert_eq!(
            (config.max_header_list_bytes, config.max_pending_reset_streams, config.max_error_reset_streams),
            (16384, 20, 1024)
        );
        assert_eq!((config.h2_idle_timeout_ms, config.header_read_timeout_ms), (120_000, 10_000));
        type Set = fn(&mut GatewayConfig);
        let cases: [(&str, Set); 10] = [
            ("max_header_list_bytes = 1023", |c| c.max_header_list_bytes = 1023),
            ("max_header_list_bytes = 1048577", |c| c.max_header_list_bytes = (1 << 20) + 1),
            ("max_pending_reset_streams = 0", |c| c.max_pending_reset_streams = 0),
            ("max_pending_reset_streams = 10001", |c| c.max_pending_reset_streams = 10_001),
            ("max_error_reset_streams = 0", |c| c.max_error_reset_streams = 0),
            ("max_error_reset_streams = 100001", |c| c.max_error_reset_streams = 100_001),
            ("h2_idle_timeout_ms = 99", |c| c.h2_idle_timeout_ms = 99),
            ("h2_idle_timeout_ms = 3600001", |c| c.h2_idle_timeout_ms = 3_600_001),
            ("header_read_timeout_ms = 0", |c| c.header_read_timeout_ms = 0),
            ("header_read_timeout_ms = 300001", |c| c.header_read_timeout_ms = 300_001),
        ];
        for (field, set) in cases {
            let mut config = good();
            set(&mut config);
            let msg = invalid_message(&config);
            assert!(msg.contains(field) && msg.contains("must be between"), "{field}: {msg}");
        }
        let parsed = GatewayConfig::from_toml_str(
            "listen = \"127.0.0.1:8080\"\nmax_header_list_bytes = 8192\nheader_read_timeout_ms = 500\n",
        )
        .unwrap();
        assert_eq!((parsed.max_header_list_bytes, parsed.header_read_timeout_ms), (8192, 500));
        parsed.validate().unwrap();
    }

    #[test]
    fn example_file_is_valid_and_shows_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.toml");
        let example = GatewayConfig::from_file(path).unwrap();
        example.validate().unwrap();
        // "Every field other than `listen` has the default shown": the tables it spells out are
        // the defaults, and so are the top-level settings.
        let defaults = GatewayConfig::new(example.listen);
        assert_eq!(example.health_check, HealthCheckConfig::default());
        assert_eq!(example.retry_budget, RetryBudgetConfig::default());
        assert_eq!(example.outlier, OutlierConfig::default());
        assert_eq!(
            (example.threads, example.grace_period_seconds, example.connect_timeout_ms),
            (defaults.threads, defaults.grace_period_seconds, defaults.connect_timeout_ms)
        );
        assert_eq!(
            (example.max_concurrent_streams, example.upstream_max_h2_streams, example.propagate_unsampled),
            (defaults.max_concurrent_streams, defaults.upstream_max_h2_streams, defaults.propagate_unsampled)
        );
        assert_eq!(
            (example.max_request_message_bytes, example.max_response_message_bytes),
            (defaults.max_request_message_bytes, defaults.max_response_message_bytes)
        );
        assert_eq!(
            (example.max_header_list_bytes, example.max_pending_reset_streams, example.max_error_reset_streams),
            (defaults.max_header_list_bytes, defaults.max_pending_reset_streams, defaults.max_error_reset_streams)
        );
        assert_eq!(
            (example.h2_idle_timeout_ms, example.header_read_timeout_ms),
            (defaults.h2_idle_timeout_ms, defaults.header_read_timeout_ms)
        );
        let pool = &example.pools["urlshortener"];
        assert_eq!(
            (pool.health_check, pool.retry_budget, pool.outlier),
            (HealthCheckOverride::default(), RetryBudgetOverride::default(), OutlierOverride::default()),
            "the example's pool inherits every table"
        );
        assert_eq!(example.cors.as_ref().unwrap().max_age_seconds, CorsConfig::default().max_age_seconds);
    }

    /// A change to [`good`] and the message it must give.
    type Case = (Box<dyn Fn(&mut GatewayConfig)>, &'static str);

    /// Checks that `change` applied to [`good`] fails validation with exactly `expect` (after
    /// "invalid gateway config: ").
    fn assert_invalid(cases: Vec<Case>) {
        for (change, expect) in cases {
            let mut config = good();
            change(&mut config);
            assert_eq!(invalid_message(&config), format!("invalid gateway config: {expect}"));
        }
    }

    fn pool(c: &mut GatewayConfig) -> &mut PoolConfig {
        c.pools.get_mut("urlshortener").unwrap()
    }

    #[test]
    fn top_level_settings_name_the_key() {
        assert_invalid(vec![
            (
                Box::new(|c| c.listen = "127.0.0.1:0".parse().unwrap()),
                "listen = \"127.0.0.1:0\": port 0 is not allowed, give a fixed port",
            ),
            (Box::new(|c| c.threads = 257), "threads = 257: must be between 1 and 256"),
            (Box::new(|c| c.grace_period_seconds = 3601), "grace_period_seconds = 3601: at most 3600"),
            (Box::new(|c| c.connect_timeout_ms = 0), "connect_timeout_ms = 0: must be between 1 and 60000"),
            (Box::new(|c| c.max_concurrent_streams = 0), "max_concurrent_streams must be at least 1"),
            (Box::new(|c| c.upstream_max_h2_streams = 0), "upstream_max_h2_streams = 0: must be between 1 and 10000"),
            (
                Box::new(|c| c.max_response_message_bytes = 0),
                "max_request_message_bytes and max_response_message_bytes must be at least 1",
            ),
        ]);
    }

    #[test]
    fn global_tables_name_table_and_field() {
        assert_invalid(vec![
            (
                Box::new(|c| c.health_check.interval_ms = 99),
                "health_check.interval_ms = 99: must be between 100 and 3600000",
            ),
            (Box::new(|c| c.health_check.timeout_ms = 0), "health_check.timeout_ms = 0: must be between 1 and 60000"),
            (
                Box::new(|c| c.health_check.unhealthy_threshold = 0),
                "health_check.unhealthy_threshold = 0: must be between 1 and 100",
            ),
            (
                Box::new(|c| c.health_check.healthy_threshold = 101),
                "health_check.healthy_threshold = 101: must be between 1 and 100",
            ),
            (Box::new(|c| c.retry_budget.percent = 101), "retry_budget.percent = 101: at most 100"),
            (Box::new(|c| c.outlier.max_ejection_percent = 101), "outlier.max_ejection_percent = 101: at most 100"),
            (
                Box::new(|c| c.outlier.base_ejection_ms = 0),
                "outlier.base_ejection_ms must be at least 1 and at most max_ejection_ms",
            ),
            (
                Box::new(|c| c.outlier.max_ejection_ms = 10),
                "outlier.base_ejection_ms must be at least 1 and at most max_ejection_ms",
            ),
            (
                Box::new(|c| {
                    c.rate_limit = Some(RateLimitConfig { requests_per_second: 1, burst: Some(0), key: None })
                }),
                "rate_limit.burst must be at least 1",
            ),
            (
                Box::new(|c| {
                    c.rate_limit =
                        Some(RateLimitConfig { requests_per_second: 1, burst: None, key: Some("grpc-x".into()) })
                }),
                "rate_limit.key \"grpc-x\" is reserved by gRPC",
            ),
            (
                Box::new(|c| {
                    c.registry = Some(RegistryConfig { prefix: String::new(), ..RegistryConfig::new("etcd://h:1") })
                }),
                "registry.prefix = \"\": must end with '/'",
            ),
            (
                Box::new(|c| {
                    c.cors = Some(CorsConfig { expose_headers: vec![String::new()], ..CorsConfig::any_origin() })
                }),
                "cors.expose_headers: \"\" must be a lower-case header name like x-client-id",
            ),
        ]);
        // Each table's own validate() gives the same message.
        let bad = HealthCheckConfig { timeout_ms: 60_001, ..HealthCheckConfig::default() };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "invalid gateway config: health_check.timeout_ms = 60001: must be between 1 and 60000"
        );
        let bad = RetryBudgetConfig { percent: 200, ..RetryBudgetConfig::default() };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "invalid gateway config: retry_budget.percent = 200: at most 100"
        );
        RetryBudgetConfig { percent: 0, min_per_second: 0 }.validate().unwrap();
    }

    #[test]
    fn pools_and_routes_name_themselves() {
        assert_invalid(vec![
            (
                Box::new(|c| {
                    let p = c.pools.remove("urlshortener").unwrap();
                    c.pools.insert("bad name".into(), p);
                    c.routes.clear();
                }),
                "pool name \"bad name\": use letters, digits, '_', '-' or '.'",
            ),
            (
                Box::new(|c| pool(c).endpoints.push("127.0.0.1:50051".into())),
                "pool \"urlshortener\": endpoint \"127.0.0.1:50051\" is listed twice",
            ),
            (
                Box::new(|c| pool(c).slow_start_ms = 3_600_001),
                "pool \"urlshortener\": slow_start_ms = 3600001: at most 3600000",
            ),
            (
                Box::new(|c| {
                    c.routes[0].headers.insert("x-a".into(), "\u{7f}".into());
                }),
                "route \"meshwork.urlshortener.v1.UrlShortener\": header \"x-a\" has a value that is not valid metadata",
            ),
            (
                Box::new(|c| c.routes[0].weight = 10_001),
                "route \"meshwork.urlshortener.v1.UrlShortener\": weights must be between 0 and 10000 and not all 0",
            ),
            (
                Box::new(|c| c.routes[0].service = "meshwork.urlshortener.v1.UrlShortener/".into()),
                "route service \"meshwork.urlshortener.v1.UrlShortener/\": the method after '/' must be a method name \
                 like Resolve",
            ),
        ]);
        let route = RouteConfig { timeout_ms: Some(86_400_001), ..RouteConfig::new("a.B", "p") };
        assert_eq!(
            route.validate().unwrap_err().to_string(),
            "invalid gateway config: route \"a.B\": timeout_ms = 86400001: must be between 1 and 86400000"
        );
        assert_eq!(
            PoolConfig::new(["h:1", "h:2"]).validate("").unwrap_err().to_string(),
            "invalid gateway config: pool name \"\": use letters, digits, '_', '-' or '.'"
        );
        // A pool without endpoints is fine on its own: whether a registry fills it is the
        // gateway's business.
        PoolConfig::default().validate("p").unwrap();
    }

    #[test]
    fn cross_section_checks() {
        assert_invalid(vec![
            (
                Box::new(|c| c.admin_listen = Some(c.listen)),
                "admin_listen = \"127.0.0.1:8080\": must differ from listen (\"127.0.0.1:8080\")",
            ),
            (
                Box::new(|c| c.admin_listen = Some("0.0.0.0:8080".parse().unwrap())),
                "admin_listen = \"0.0.0.0:8080\": must differ from listen (\"127.0.0.1:8080\")",
            ),
            (
                Box::new(|c| c.routes[0].pool = "orders".into()),
                "route \"meshwork.urlshortener.v1.UrlShortener\" points to unknown pool \"orders\"",
            ),
            (
                Box::new(|c| c.routes[0].splits.push(SplitConfig { pool: "canary".into(), weight: 5 })),
                "route \"meshwork.urlshortener.v1.UrlShortener\" splits to unknown pool \"canary\"",
            ),
            (
                Box::new(|c| c.routes.push(c.routes[0].clone())),
                "route service \"meshwork.urlshortener.v1.UrlShortener\" is listed twice (with the same headers)",
            ),
            (
                Box::new(|c| pool(c).endpoints.clear()),
                "pool \"urlshortener\" has no endpoints (and no registry is configured)",
            ),
        ]);
        // Other ports, or another address on the same port, are fine.
        let mut config = good();
        config.admin_listen = Some("127.0.0.2:8080".parse().unwrap());
        config.validate().unwrap();
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        config.validate().unwrap();
    }

    #[test]
    fn pool_tables_are_checked_merged_over_the_global_ones() {
        assert_invalid(vec![
            (
                Box::new(|c| pool(c).health_check.interval_ms = Some(50)),
                "pool \"urlshortener\": health_check.interval_ms = 50: must be between 100 and 3600000",
            ),
            (
                Box::new(|c| pool(c).health_check.unhealthy_threshold = Some(0)),
                "pool \"urlshortener\": health_check.unhealthy_threshold = 0: must be between 1 and 100",
            ),
            (
                Box::new(|c| pool(c).retry_budget.percent = Some(101)),
                "pool \"urlshortener\": retry_budget.percent = 101: at most 100",
            ),
            (
                // Valid alone, but above the global max_ejection_ms it inherits.
                Box::new(|c| pool(c).outlier.base_ejection_ms = Some(400_000)),
                "pool \"urlshortener\": outlier.base_ejection_ms must be at least 1 and at most max_ejection_ms",
            ),
        ]);
        // ... and a pool may fix what it inherits.
        let mut config = good();
        config.outlier.max_ejection_ms = 10_000;
        pool(&mut config).outlier.base_ejection_ms = Some(10_000);
        config.validate().unwrap();
    }

    #[test]
    fn pool_tables_override_only_the_fields_they_give() {
        let text = format!(
            "{GOOD}[health_check]\ninterval_ms = 500\nhealthy_threshold = 3\n\
             [retry_budget]\npercent = 50\n\
             [outlier]\nconsecutive_failures = 7\n\
             [pools.urlshortener.health_check]\ninterval_ms = 100\ntimeout_ms = 50\n\
             [pools.urlshortener.retry_budget]\nmin_per_second = 0\n\
             [pools.urlshortener.outlier]\nmax_ejection_percent = 10\n\
             [pools.other]\nendpoints = [\"127.0.0.1:1\"]\n"
        );
        let config = GatewayConfig::from_toml_str(&text).unwrap();
        config.validate().unwrap();
        let (own, other) = (&config.pools["urlshortener"], &config.pools["other"]);
        assert_eq!(
            own.health_check.over(&config.health_check),
            HealthCheckConfig { interval_ms: 100, timeout_ms: 50, unhealthy_threshold: 2, healthy_threshold: 3 }
        );
        assert_eq!(own.retry_budget.over(&config.retry_budget), RetryBudgetConfig { percent: 50, min_per_second: 0 });
        assert_eq!(
            own.outlier.over(&config.outlier),
            OutlierConfig { consecutive_failures: 7, max_ejection_percent: 10, ..OutlierConfig::default() }
        );
        // A pool without tables has the global ones.
        assert_eq!(other.health_check.over(&config.health_check), config.health_check);
        assert_eq!(other.retry_budget.over(&config.retry_budget), config.retry_budget);
        assert_eq!(other.outlier.over(&config.outlier), config.outlier);
        assert_eq!(
            config.health_check,
            HealthCheckConfig { interval_ms: 500, healthy_threshold: 3, ..HealthCheckConfig::default() }
        );

        let typo = text.replace("min_per_second = 0", "min_per_sec = 0");
        let msg = GatewayConfig::from_toml_str(&typo).unwrap_err().to_string();
        assert!(msg.contains("unknown field `min_per_sec`") && msg.contains("line 21"), "{msg}");
    }

    #[test]
    fn moved_settings_say_where_they_went() {
        for (line, expect) in [
            (
                "health_check_interval_ms = 200",
                "health_check_interval_ms has moved: write interval_ms = 200 under [health_check] (for one pool: \
                 [pools.NAME.health_check])",
            ),
            (
                "health_check_timeout_ms = 150",
                "health_check_timeout_ms has moved: write timeout_ms = 150 under [health_check] (for one pool: \
                 [pools.NAME.health_check])",
            ),
            (
                "unhealthy_threshold = 3",
                "unhealthy_threshold has moved: write unhealthy_threshold = 3 under [health_check] (for one pool: \
                 [pools.NAME.health_check])",
            ),
            (
                "healthy_threshold = 1",
                "healthy_threshold has moved: write healthy_threshold = 1 under [health_check] (for one pool: \
                 [pools.NAME.health_check])",
            ),
            (
                "retry_budget_percent = 20",
                "retry_budget_percent has moved: write percent = 20 under [retry_budget] (for one pool: \
                 [pools.NAME.retry_budget])",
            ),
            (
                "retry_budget_min_per_second = 10",
                "retry_budget_min_per_second has moved: write min_per_second = 10 under [retry_budget] (for one \
                 pool: [pools.NAME.retry_budget])",
            ),
            ("registry_prefix = \"m/\"", "registry_prefix has moved: write prefix = \"m/\" under [registry]"),
            (
                "registry = \"etcd://127.0.0.1:2379\"",
                "registry = \"etcd://127.0.0.1:2379\" has moved: write url = \"etcd://127.0.0.1:2379\" under [registry]",
            ),
        ] {
            // Old configs had these among the top-level keys, after `listen`.
            let text = GOOD.replace(
                "listen = \"127.0.0.1:8080\"\n",
                &format!("listen = \"127.0.0.1:8080\"\nthreads = 2\n{line}\n"),
            );
            let msg = GatewayConfig::from_toml_str(&text).unwrap_err().to_string();
            assert_eq!(msg, format!("invalid gateway config (line 4): {expect}"), "{text}");
        }
        // The first one in the file is named, and the file too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.toml");
        std::fs::write(&path, format!("retry_budget_percent = 5\nhealth_check_timeout_ms = 5\n{GOOD}")).unwrap();
        let msg = GatewayConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "invalid gateway config ({}, line 1): retry_budget_percent has moved",
                path.display()
            )),
            "{msg}"
        );
        // An unknown key that never existed is still just unknown.
        let msg = GatewayConfig::from_toml_str(&format!("health_check_jitter_ms = 5\n{GOOD}")).unwrap_err().to_string();
        assert!(msg.contains("unknown field `health_check_jitter_ms`"), "{msg}");
    }

    #[test]
    fn descriptor_files_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, format!("descriptor_sets = [\"mesh.bin\", \"/abs/other.bin\"]\n{GOOD}")).unwrap();
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(
            config.descriptor_sets,
            vec![DescriptorSet::File(dir.path().join("mesh.bin")), DescriptorSet::File("/abs/other.bin".into())]
        );
        let msg = invalid_message(&config);
        assert!(msg.contains("descriptor_sets: cannot read") && msg.contains("mesh.bin"), "{msg}");
    }

    #[test]
    fn empty_pool_is_rejected() {
        let mut config = good();
        config.pools.get_mut("urlshortener").unwrap().endpoints.clear();
        assert_eq!(
            invalid_message(&config),
            "invalid gateway config: pool \"urlshortener\" has no endpoints (and no registry is configured)"
        );
        config.registry = Some(RegistryConfig::new("etcd://127.0.0.1:2379"));
        config.validate().unwrap();
        config.registry = Some(RegistryConfig::new("etcd:/x"));
        assert!(invalid_message(&config).contains("registry \"etcd:/x\""), "{}", invalid_message(&config));
        config.registry = Some(RegistryConfig::new("memory:"));
        assert!(invalid_message(&config).contains("must be etcd://"), "{}", invalid_message(&config));
    }

    #[test]
    fn route_to_unknown_pool_is_rejected() {
        let mut config = good();
        config.routes.push(RouteConfig::new("meshwork.orders.v1", "orders"));
        let msg = invalid_message(&config);
        assert!(msg.contains("unknown pool \"orders\""), "{msg}");
    }

    #[test]
    fn bad_endpoints_are_rejected() {
        for (endpoint, expect) in [
            ("127.0.0.1", "must be host:port"),
            ("http://127.0.0.1:80", "without a scheme"),
            ("127.0.0.1:0", "port between 1 and 65535"),
            ("127.0.0.1:99999", "port between 1 and 65535"),
            (":80", "has no host"),
            ("bad host:80", "invalid host name"),
        ] {
            let mut config = good();
            config.pools.get_mut("urlshortener").unwrap().endpoints = vec![endpoint.into()];
            let msg = invalid_message(&config);
            assert!(msg.contains(expect), "{endpoint}: {msg}");
        }
    }

    #[test]
    fn bad_listen_address_is_rejected() {
        let err = GatewayConfig::from_toml_str("listen = \"localhost\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("invalid gateway config (line 1):"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");

        let mut config = good();
        config.listen = "127.0.0.1:0".parse().unwrap();
        assert!(invalid_message(&config).contains("port 0"));
    }

    #[test]
    fn unknown_fields_are_rejected_with_line() {
        let text = GOOD.replace("pool = \"urlshortener\"", "pool = \"urlshortener\"\ntimeout = 3");
        let msg = GatewayConfig::from_toml_str(&text).unwrap_err().to_string();
        assert!(msg.contains("unknown field `timeout`"), "{msg}");
        assert!(msg.contains("(line 10)"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn bad_routes_are_rejected() {
        for (service, expect) in [
            ("", "is empty"),
            ("meshwork..v1", "dot-separated"),
            ("/meshwork.v1.X/", "dot-separated"),
            ("grpc.health.v1.Health", "served by the gateway itself"),
        ] {
            let mut config = good();
            config.routes.push(RouteConfig::new(service, "urlshortener"));
            let msg = invalid_message(&config);
            assert!(msg.contains(expect), "{service}: {msg}");
        }
        let mut config = good();
        config.routes.push(config.routes[0].clone());
        assert!(invalid_message(&config).contains("listed twice"));
    }

    #[test]
    fn pool_policies_weights_and_limits_parse() {
        let text = GOOD.replace(
            "endpoints = [\"127.0.0.1:50051\", \"localhost:50052\"]",
            "endpoints = [\"127.0.0.1:50051\", { address = \"127.0.0.1:50052\", weight = 3 }]\n\
             policy = \"consistent_hash\"\nhash_key = \"x-session\"\n[pools.urlshortener.outlier]\nconsecutive_failures = 2",
        ) + "[rate_limit]\nrequests_per_second = 5\nkey = \"x-client\"\n";
        let config = GatewayConfig::from_toml_str(&text).unwrap();
        config.validate().unwrap();
        let pool = &config.pools["urlshortener"];
        assert_eq!(pool.policy, Policy::ConsistentHash);
        assert_eq!(pool.endpoints[1].address(), "127.0.0.1:50052");
        assert_eq!(pool.endpoints[1].weight(), 3);
        assert_eq!(pool.endpoints[0].weight(), 1);
        assert_eq!(pool.outlier.consecutive_failures, Some(2));
        assert_eq!(pool.outlier.over(&config.outlier).max_ejection_percent, 50);
        assert_eq!(config.rate_limit.as_ref().unwrap().burst, None);
        let bad = text.replace("policy = \"consistent_hash\"", "policy = \"fastest\"");
        let msg = GatewayConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(msg.contains("fastest") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn bad_pool_and_route_settings_are_rejected() {
        type Change = Box<dyn Fn(&mut GatewayConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.pools.get_mut("urlshortener").unwrap().policy = Policy::ConsistentHash), "needs hash_key"),
            (Box::new(|c| c.pools.get_mut("urlshortener").unwrap().hash_key = Some("x-a".into())), "only used by"),
            (
                Box::new(|c| {
                    let pool = c.pools.get_mut("urlshortener").unwrap();
                    pool.policy = Policy::ConsistentHash;
                    pool.hash_key = Some("X-Upper".into());
                }),
                "lower-case metadata key",
            ),
            (
                Box::new(|c| {
                    c.pools.get_mut("urlshortener").unwrap().endpoints[0] =
                        EndpointConfig::Weighted { address: "127.0.0.1:1".into(), weight: 0 }
                }),
                "weight 0",
            ),
            (
                Box::new(|c| c.pools.get_mut("urlshortener").unwrap().outlier.max_ejection_percent = Some(101)),
                "at most 100",
            ),
            (Box::new(|c| c.routes[0].idempotent_methods = vec!["Re solve".into()]), "idempotent method"),
            (Box::new(|c| c.routes[0].timeout_ms = Some(0)), "timeout_ms = 0"),
            (
                Box::new(|c| {
                    c.rate_limit = Some(RateLimitConfig { requests_per_second: 0, burst: None, key: None });
                }),
                "requests_per_second",
            ),
            (Box::new(|c| c.admin_listen = Some(c.listen)), "must differ from listen"),
            (
                Box::new(|c| {
                    c.registry =
                        Some(RegistryConfig { prefix: "x".into(), ..RegistryConfig::new("etcd://127.0.0.1:2379") })
                }),
                "must end with '/'",
            ),
        ];
        for (change, expect) in cases {
            let mut config = good();
            change(&mut config);
            let msg = invalid_message(&config);
            assert!(msg.contains(expect), "{expect}: {msg}");
        }
    }

    #[test]
    fn cors_section_parses_and_is_validated() {
        let text = format!(
            "{GOOD}[cors]\nallowed_origins = [\"https://app.example\", \"http://127.0.0.1:3000\"]\n\
             expose_headers = [\"meshwork-link-state\"]\n"
        );
        let config = GatewayConfig::from_toml_str(&text).unwrap();
        config.validate().unwrap();
        let cors = config.cors.as_ref().unwrap();
        assert_eq!(cors.allowed_origins.len(), 2);
        assert_eq!(cors.max_age_seconds, 7200);
        assert!(!cors.allow_credentials);
        assert!(good().cors.is_none(), "no CORS unless configured");

        for (origins, expect) in [
            (vec!["https://app.example/"], "no path"),
            (vec!["app.example"], "scheme://host"),
            (vec!["ftp://app.example"], "http:// or https://"),
            (vec!["https://App.example"], "lower-case"),
            (vec!["https://a b"], "invalid host"),
        ] {
            let mut config = good();
            config.cors = Some(CorsConfig {
                allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
                ..CorsConfig::default()
            });
            let msg = invalid_message(&config);
            assert!(msg.contains("cors.allowed_origins") && msg.contains(expect), "{origins:?}: {msg}");
        }
        let mut config = good();
        config.cors = Some(CorsConfig { allow_headers: vec!["X-Client".into()], ..CorsConfig::any_origin() });
        assert!(invalid_message(&config).contains("cors.allow_headers: \"X-Client\""));
        config.cors = Some(CorsConfig { allow_credentials: true, ..CorsConfig::any_origin() });
        assert!(invalid_message(&config).contains("allow_credentials"));
        config.cors = Some(CorsConfig { max_age_seconds: 100_000, ..CorsConfig::any_origin() });
        assert!(invalid_message(&config).contains("max_age_seconds"));
        let bad = GatewayConfig::from_toml_str(&format!("{GOOD}[cors]\nallowed_origin = [\"*\"]\n")).unwrap_err();
        assert!(bad.to_string().contains("unknown field `allowed_origin`"), "{bad}");
    }

    #[test]
    fn bad_threads_are_rejected() {
        let mut config = good();
        config.threads = 0;
        assert!(invalid_message(&config).contains("threads = 0"));
    }
}
