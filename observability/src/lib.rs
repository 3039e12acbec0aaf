//! Tracing for every meshwork process: structured `tracing` output filtered by `RUST_LOG`
//! (default `info`). OTLP export, propagation and the embedded trace view land with the
//! observability issue.

#![forbid(unsafe_code)]

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: human-readable lines to stderr, or JSON lines when
/// `MESHWORK_LOG_FORMAT=json`. Calling it twice is harmless.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("MESHWORK_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
