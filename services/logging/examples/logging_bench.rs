//! The log store benchmark: `cargo run --release -p meshwork-logging --example logging_bench --
//! [lines=10000000] [concurrency=8] [dir=/tmp/meshwork-logging-bench] [writer_shards=cores]`. See
//! `meshwork_logging::bench`.

// The allocator `meshwork up` links (src/main.rs), so that the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use meshwork_logging::bench::{BenchOptions, run};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lines = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let concurrency = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let dir = args.get(2).cloned().unwrap_or_else(|| "/tmp/meshwork-logging-bench".into());
    let dir = std::path::PathBuf::from(dir);
    let writer_shards = args.get(3).and_then(|a| a.parse().ok());
    let _ = std::fs::remove_dir_all(&dir);
    let report = run(BenchOptions { lines, batch: 1000, concurrency, dir: dir.clone(), writer_shards }).await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report?);
    Ok(())
}
