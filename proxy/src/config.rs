//! The gateway's configuration: a TOML file (or string) deserialised into [`GatewayConfig`],
//! then checked by [`GatewayConfig::validate`], which names the first problem in one line.
//!
//! ```toml
//! listen = "127.0.0.1:8080"          # required; h2c gRPC and HTTP/1.1 share this port
//! threads = 2                        # worker threads of the proxy (default 2)
//! grace_period_seconds = 5           # how long shutdown waits for in-flight calls (default 5)
//!
//! [pools.urlshortener]
//! endpoints = ["127.0.0.1:50051", "127.0.0.1:50052"]
//!
//! [[routes]]
//! service = "meshwork.urlshortener.v1.UrlShortener"   # or a package prefix: "meshwork.urlshortener.v1"
//! pool = "urlshortener"
//!
//! [redirect]                         # optional: HTTP GET /<code> through the URL shortener
//! pool = "urlshortener"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

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
    #[error("invalid gateway config: {0}")]
    Invalid(String),
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
    /// Timeout of a TCP connect to a replica, in milliseconds. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Concurrent HTTP/2 streams a downstream client may open on one connection. Default 1024.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Concurrent calls multiplexed on one upstream HTTP/2 connection before the gateway opens
    /// another one to the same replica. Default 128.
    #[serde(default = "default_upstream_max_h2_streams")]
    pub upstream_max_h2_streams: usize,
    /// How often every replica is health-checked (gRPC health, service ""), in milliseconds.
    /// Default 2000.
    #[serde(default = "default_health_check_interval_ms")]
    pub health_check_interval_ms: u64,
    /// Named pools of replicas.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Routes from gRPC service names (or package prefixes) to pools; the longest match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where `GET /<code>` short-link redirects are resolved; none disables redirects.
    #[serde(default)]
    pub redirect: Option<RedirectConfig>,
}

/// A pool of interchangeable replicas of one or more services.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Replica addresses as `host:port` (h2c gRPC).
    pub endpoints: Vec<String>,
}

/// One routing rule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A full gRPC service name (`meshwork.urlshortener.v1.UrlShortener`) or a package prefix
    /// (`meshwork.urlshortener.v1`, `meshwork`) that matches whole dot-separated segments.
    pub service: String,
    /// The pool that serves it.
    pub pool: String,
}

/// Short-link redirects (`GET /<code>` -> `302 Location`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// The pool of URL shortener replicas.
    pub pool: String,
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
fn default_upstream_max_h2_streams() -> usize {
    128
}
fn default_health_check_interval_ms() -> u64 {
    2000
}

impl GatewayConfig {
    /// A configuration with every default, listening on `listen`, with no pools or routes.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            threads: default_threads(),
            grace_period_seconds: default_grace_period_seconds(),
            connect_timeout_ms: default_connect_timeout_ms(),
            max_concurrent_streams: default_max_concurrent_streams(),
            upstream_max_h2_streams: default_upstream_max_h2_streams(),
            health_check_interval_ms: default_health_check_interval_ms(),
            pools: BTreeMap::new(),
            routes: Vec::new(),
            redirect: None,
        }
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
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let location = match (path, line) {
                (Some(p), Some(l)) => format!(" ({}, line {l})", p.display()),
                (Some(p), None) => format!(" ({})", p.display()),
                (None, Some(l)) => format!(" (line {l})"),
                (None, None) => String::new(),
            };
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            ConfigError::Parse { location, message }
        })
    }

    /// Checks the configuration and names the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if !(1..=10_000).contains(&self.upstream_max_h2_streams) {
            return invalid(format!(
                "upstream_max_h2_streams = {}: must be between 1 and 10000",
                self.upstream_max_h2_streams
            ));
        }
        if !(100..=3_600_000).contains(&self.health_check_interval_ms) {
            return invalid(format!(
                "health_check_interval_ms = {}: must be between 100 and 3600000",
                self.health_check_interval_ms
            ));
        }
        for (name, pool) in &self.pools {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
                return invalid(format!("pool name \"{name}\": use letters, digits, '_', '-' or '.'"));
            }
            if pool.endpoints.is_empty() {
                return invalid(format!("pool \"{name}\" has no endpoints"));
            }
            let mut seen = BTreeSet::new();
            for endpoint in &pool.endpoints {
                if let Err(why) = check_endpoint(endpoint) {
                    return invalid(format!("pool \"{name}\": endpoint \"{endpoint}\" {why}"));
                }
                if !seen.insert(endpoint.as_str()) {
                    return invalid(format!("pool \"{name}\": endpoint \"{endpoint}\" is listed twice"));
                }
            }
        }
        let mut services = BTreeSet::new();
        for route in &self.routes {
            if let Err(why) = check_service_name(&route.service) {
                return invalid(format!("route service \"{}\" {why}", route.service));
            }
            if BUILTIN_SERVICES.contains(&route.service.as_str()) {
                return invalid(format!(
                    "route service \"{}\" is served by the gateway itself and cannot be routed",
                    route.service
                ));
            }
            if !self.pools.contains_key(&route.pool) {
                return invalid(format!("route \"{}\" points to unknown pool \"{}\"", route.service, route.pool));
            }
            if !services.insert(route.service.as_str()) {
                return invalid(format!("route service \"{}\" is listed twice", route.service));
            }
        }
        if let Some(redirect) = &self.redirect
            && !self.pools.contains_key(&redirect.pool)
        {
            return invalid(format!("redirect points to unknown pool \"{}\"", redirect.pool));
        }
        Ok(())
    }
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

[redirect]
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

    #[test]
    fn defaults_apply_and_good_config_validates() {
        let config = good();
        assert_eq!(config.threads, 2);
        assert_eq!(config.grace_period_seconds, 5);
        assert_eq!(config.upstream_max_h2_streams, 128);
        assert_eq!(config.pools["urlshortener"].endpoints.len(), 2);
        config.validate().unwrap();
    }

    #[test]
    fn example_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.toml");
        GatewayConfig::from_file(path).unwrap().validate().unwrap();
    }

    #[test]
    fn empty_pool_is_rejected() {
        let mut config = good();
        config.pools.get_mut("urlshortener").unwrap().endpoints.clear();
        assert_eq!(invalid_message(&config), "invalid gateway config: pool \"urlshortener\" has no endpoints");
    }

    #[test]
    fn route_to_unknown_pool_is_rejected() {
        let mut config = good();
        config.routes.push(RouteConfig { service: "meshwork.orders.v1".into(), pool: "orders".into() });
        let msg = invalid_message(&config);
        assert!(msg.contains("unknown pool \"orders\""), "{msg}");
    }

    #[test]
    fn redirect_to_unknown_pool_is_rejected() {
        let mut config = good();
        config.redirect = Some(RedirectConfig { pool: "nope".into() });
        assert!(invalid_message(&config).contains("redirect points to unknown pool \"nope\""));
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
            config.pools.get_mut("urlshortener").unwrap().endpoints = vec![endpoint.to_string()];
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
        let text = GOOD.replace("[redirect]", "[redirect]\ntimeout = 3");
        let msg = GatewayConfig::from_toml_str(&text).unwrap_err().to_string();
        assert!(msg.contains("unknown field `timeout`"), "{msg}");
        assert!(msg.contains("(line 12)"), "{msg}");
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
            config.routes.push(RouteConfig { service: service.into(), pool: "urlshortener".into() });
            let msg = invalid_message(&config);
            assert!(msg.contains(expect), "{service}: {msg}");
        }
        let mut config = good();
        config.routes.push(config.routes[0].clone());
        assert!(invalid_message(&config).contains("listed twice"));
    }

    #[test]
    fn bad_threads_are_rejected() {
        let mut config = good();
        config.threads = 0;
        assert!(invalid_message(&config).contains("threads = 0"));
    }
}
