//! Runs the VRPLIB benchmark: `route_bench [DIR] [SECONDS] [SEED]`
//! (defaults: `routing/data/cvrp`, 10, 1). Build it in release mode.

use std::path::PathBuf;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "routing/data/cvrp".into()));
    let secs: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10.0);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let rows = meshwork_routing::route_bench(&dir, Duration::from_secs_f64(secs), seed)?;
    print!("{}", meshwork_routing::bench::format_table("meshwork", &rows));
    Ok(())
}
