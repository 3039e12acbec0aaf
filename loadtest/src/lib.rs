//! meshwork's ghz-style load generator (`meshwork load`): unary gRPC calls sent as raw h2
//! frames over shared connections, request bodies encoded from JSON through descriptors
//! (server reflection v1/v1alpha or a protoset), HdrHistogram latencies merged at the end,
//! fixed-rate and scheduled load without coordinated omission, and reports as ghz prints
//! them (summary text, ghz's JSON shape, a self-contained HTML page). Scenarios in TOML mix
//! several calls with a key distribution and append their table to `docs/BENCHMARKS.md`.

#![forbid(unsafe_code)]

pub mod args;
pub mod duration;
pub mod engine;
pub mod payload;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod schema;
pub mod stats;
pub mod status;
pub mod template;
pub mod transport;

pub use args::{LoadArgs, OutputFormat};

use std::path::PathBuf;

/// Everything that can go wrong in a load run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or scenario field is missing, malformed or contradicts another.
    #[error("{0}")]
    Config(String),
    /// A `-d`/`-m` template does not parse or render.
    #[error("template: {0}")]
    Template(String),
    /// JSON data does not fit the request message.
    #[error("request data for {message}: {reason}")]
    Data { message: String, reason: String },
    /// The method or its message types could not be found or loaded.
    #[error("schema: {0}")]
    Schema(String),
    /// Server reflection failed (neither v1 nor v1alpha answered usefully).
    #[error("reflection: {0}")]
    Reflection(String),
    /// Connecting to the target failed.
    #[error("connecting to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A scenario's setup step failed.
    #[error("scenario setup: {0}")]
    Setup(String),
    /// A histogram could not be created.
    #[error("histogram: {0}")]
    Histogram(String),
    /// The tokio runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}

/// Runs `meshwork load` to completion: a single call (`--call`) or a scenario (`--scenario`),
/// then writes the report.
pub fn run(args: LoadArgs) -> Result<(), Error> {
    args.validate().map_err(Error::Config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime)?;
    runtime.block_on(run_async(&args))
}

/// Runs `meshwork load` on the current tokio runtime (`args` already validated).
pub async fn run_async(args: &LoadArgs) -> Result<(), Error> {
    match &args.scenario {
        Some(path) => scenario::run_file(path, args).await,
        None => {
            let (options, result) = args::run_call(args).await?;
            args::write_report(args, options, &result)
        }
    }
}
