//! Vehicle routing for meshwork: VRPLIB reading, a capacitated VRP solver (Clarke-Wright
//! savings, granular local search and SISR under simulated annealing), an independent
//! solution checker, multi-trip routes with unloading stops, warehouse pick paths, and the
//! benchmark over VRPLIB instances behind `meshwork route-bench`.
//!
//! The API is general: a [`Problem`] is a distance matrix (or coordinates with a metric),
//! demands and a capacity; a [`Solution`] is a list of routes. Services build problems from
//! their own data (haversine over lat/lon for waste collection, aisle distances for picking).

pub mod bench;
pub mod check;
pub mod construct;
pub mod local_search;
pub mod multitrip;
pub mod pickpath;
pub mod problem;
pub mod rng;
pub mod solver;
pub mod vrplib;

pub use bench::{BenchRow, route_bench};
pub use check::{Violation, check};
pub use multitrip::{MultiTripPlan, MultiTripProblem, Trip, TruckRoute, solve_multi_trip};
pub use pickpath::{PickBench, PickPlan, Warehouse, pick_bench, plan_picks};
pub use problem::{DistanceMatrix, Metric, Problem, Solution};
pub use solver::{SolveOptions, SolveStats, solve};
