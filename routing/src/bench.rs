//! The VRPLIB benchmark behind `meshwork route-bench`: solve every `*.vrp` in a directory
//! with a time limit, verify the solution with the checker, and compare with the `.sol`
//! best-known cost next to it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::check::check;
use crate::solver::{SolveOptions, solve};
use crate::vrplib::{read_instance, read_solution};

/// One instance's result.
#[derive(Clone, Debug)]
pub struct BenchRow {
    /// Instance name (the file stem).
    pub instance: String,
    /// Cost found.
    pub cost: i64,
    /// Best-known cost from the `.sol` file, if present.
    pub best_known: Option<i64>,
    /// `100 · (cost - best) / best`, if the best-known cost is present.
    pub gap_percent: Option<f64>,
    /// Wall-clock seconds spent solving.
    pub seconds: f64,
    /// Solver iterations performed.
    pub iterations: u64,
    /// `"ok"` or the checker's objection.
    pub checker: String,
}

/// Solves every `*.vrp` in `dir` (sorted by name) with `time_limit` each.
pub fn route_bench(dir: &Path, time_limit: Duration, seed: u64) -> Result<Vec<BenchRow>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "vrp"))
        .collect();
    files.sort();
    let mut rows = Vec::with_capacity(files.len());
    for path in files {
        let problem = read_instance(&path)?;
        let instance = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let started = Instant::now();
        let (sol, stats) = solve(&problem, &SolveOptions::timed(time_limit, seed));
        let seconds = started.elapsed().as_secs_f64();
        let checker = match check(&problem, &sol.routes, sol.cost) {
            Ok(_) => "ok".to_string(),
            Err(v) => v.to_string(),
        };
        let best_known = read_solution(&path.with_extension("sol")).ok().map(|s| s.cost);
        let gap_percent = best_known.map(|b| 100.0 * (sol.cost - b) as f64 / b as f64);
        rows.push(BenchRow {
            instance,
            cost: sol.cost,
            best_known,
            gap_percent,
            seconds,
            iterations: stats.iterations,
            checker,
        });
    }
    Ok(rows)
}

/// Formats rows as the table `route-bench` prints (same columns as `scripts/route_peer.py`),
/// with a final line giving the mean gap.
pub fn format_table(solver: &str, rows: &[BenchRow]) -> String {
    let mut out = format!(
        "{:<8} {:<14} {:>9} {:>9} {:>7} {:>7}  checker\n",
        "solver", "instance", "cost", "best", "gap%", "secs"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<8} {:<14} {:>9} {:>9} {:>7} {:>7.2}  {}\n",
            solver,
            r.instance,
            r.cost,
            r.best_known.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            r.gap_percent.map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into()),
            r.seconds,
            r.checker
        ));
    }
    let gaps: Vec<f64> = rows.iter().filter_map(|r| r.gap_percent).collect();
    if !gaps.is_empty() {
        out.push_str(&format!(
            "{:<8} mean gap {:.2}% over {} instances\n",
            solver,
            gaps.iter().sum::<f64>() / gaps.len() as f64,
            gaps.len()
        ));
    }
    out
}
