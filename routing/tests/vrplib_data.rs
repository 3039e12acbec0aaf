//! The six X instances in `routing/data/cvrp` (a copy of `../shared/data/cvrp`, MIT, with its
//! LICENSE): every file parses, every best-known solution passes the checker at its stated cost,
//! and a short solve is feasible.

use std::path::PathBuf;

use meshwork_routing::vrplib::{read_instance, read_solution};
use meshwork_routing::{SolveOptions, check, solve};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/cvrp")
}

#[test]
fn best_known_solutions_pass_the_checker() {
    let dir = data_dir();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the shared cvrp data directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "vrp") {
            continue;
        }
        let p = read_instance(&path).expect("instance");
        let sol = read_solution(&path.with_extension("sol")).expect("solution");
        assert_eq!(check(&p, &sol.routes, sol.cost), Ok(sol.cost), "{}", path.display());
        // A wrong claimed cost is caught.
        assert!(check(&p, &sol.routes, sol.cost - 1).is_err());
        seen += 1;
    }
    assert_eq!(seen, 6);
}

#[test]
fn a_short_solve_is_feasible_and_near_best_known() {
    let path = data_dir().join("X-n101-k25.vrp");
    let p = read_instance(&path).expect("instance");
    let best = read_solution(&path.with_extension("sol")).expect("sol").cost;
    let (sol, _) = solve(&p, &SolveOptions::iterations(3_000, 1));
    assert_eq!(check(&p, &sol.routes, sol.cost), Ok(sol.cost));
    // Even a debug-mode budget of a few thousand iterations stays within 10% of best-known.
    assert!((sol.cost as f64) < best as f64 * 1.10, "{} vs {best}", sol.cost);
}
