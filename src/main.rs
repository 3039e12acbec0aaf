//! `meshwork`: the command line. Parses and validates flags before anything is bound, then
//! hands over to `run` (see `meshwork --help`).

#![forbid(unsafe_code)]

mod cli;
mod run;
mod services;

use clap::Parser;

// The gateway's hot path is allocation-heavy (Pingora's per-request state, h2 frames, header
// maps): with glibc malloc a quarter of its CPU time went to malloc/free (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // rustls needs one process-wide crypto provider (ring) before any TLS configuration is built.
    meshwork_gateway::install_crypto_provider();
    let cli = cli::Cli::parse();
    let command = match cli.command.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshwork: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run::run(command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshwork: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
