//! Runs the offline evaluation outside the `meshwork` binary (the same flags as
//! `meshwork recommend-eval`), e.g. for a release build of just this crate:
//! `cargo run --release -p meshwork-recommendation --example recommend_eval -- --interactions
//! /tmp/movielens/interactions.csv --split random --k 10 --write-split /tmp/movielens/split`.

use clap::Parser;
use meshwork_recommendation::eval::{self, EvalArgs};

/// Offline evaluation of the recommendation model against a popularity baseline.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EvalArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match eval::run(&cli.args) {
        Ok(report) => {
            print!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("recommend-eval: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
