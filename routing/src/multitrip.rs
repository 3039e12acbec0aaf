//! Multi-trip routes with unloading stops (waste collection: a truck that fills up drives to
//! the landfill, unloads and continues).
//!
//! Reduction used: every trip ends at the landfill (a truck never returns to the depot
//! loaded), so a trip is a loop `landfill → customers → landfill` except that a truck's
//! first trip starts at the depot. We solve the CVRP whose "depot" is the landfill (each route
//! is one trip, one load), then assign trips to trucks longest-first to the truck with the
//! least distance so far (LPT balancing), and give each truck the trip (and direction) that
//! saves most when started from the depot as its first trip. A truck's route is then
//! `depot → trip₁ → landfill → trip₂ → landfill → … → landfill → depot`. When the landfill is
//! the depot this is exactly the CVRP.

use anyhow::{Result, bail};

use crate::problem::{DistanceMatrix, Problem};
use crate::solver::{SolveOptions, solve};

/// A multi-trip problem over an explicit distance matrix of all nodes.
#[derive(Clone, Debug)]
pub struct MultiTripProblem {
    /// Distances between every pair of nodes (depot, landfill and customers).
    pub dist: DistanceMatrix,
    /// Node index of the depot where trucks start and end.
    pub depot: usize,
    /// Node index of the landfill where trucks unload (may equal the depot).
    pub landfill: usize,
    /// Node indices of the customers (bins) to visit.
    pub customers: Vec<usize>,
    /// Demand per node (indexed like `dist`; only customers' entries are used).
    pub demand: Vec<i64>,
    /// Capacity of one load.
    pub capacity: i64,
    /// Number of trucks (at least 1).
    pub trucks: usize,
}

/// One load: customers (node indices) visited before unloading at the landfill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    /// Customers in visiting order.
    pub stops: Vec<usize>,
    /// Total demand collected.
    pub load: i64,
}

/// One truck's route: its trips in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruckRoute {
    /// Trips in order; empty when the truck is not used.
    pub trips: Vec<Trip>,
    /// Distance `depot → trips with landfill visits → depot`.
    pub distance: i64,
}

/// The plan: one route per truck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiTripPlan {
    /// One entry per truck (some may be empty).
    pub trucks: Vec<TruckRoute>,
    /// Total distance.
    pub distance: i64,
}

impl MultiTripProblem {
    /// Distance of one truck's route from its trips.
    pub fn truck_distance(&self, trips: &[Trip]) -> i64 {
        if trips.is_empty() {
            return 0;
        }
        let d = |a: usize, b: usize| self.dist.get(a, b);
        let mut total = 0;
        let mut at = self.depot;
        for t in trips {
            for &c in &t.stops {
                total += d(at, c);
                at = c;
            }
            total += d(at, self.landfill);
            at = self.landfill;
        }
        total + d(at, self.depot)
    }

    /// Checks a plan: every customer exactly once, no trip over capacity, distances right.
    pub fn check(&self, plan: &MultiTripPlan) -> Result<()> {
        let mut seen = vec![false; self.dist.len()];
        let mut total = 0;
        for (k, t) in plan.trucks.iter().enumerate() {
            for trip in &t.trips {
                let load: i64 = trip.stops.iter().map(|&c| self.demand[c]).sum();
                if load != trip.load || load > self.capacity {
                    bail!("truck {k}: a trip carries {load} (stated {}), capacity {}", trip.load, self.capacity);
                }
                for &c in &trip.stops {
                    if !self.customers.contains(&c) || std::mem::replace(&mut seen[c], true) {
                        bail!("truck {k}: node {c} is not a customer or is visited twice");
                    }
                }
            }
            let d = self.truck_distance(&t.trips);
            if d != t.distance {
                bail!("truck {k}: distance {} stated, {d} recomputed", t.distance);
            }
            total += d;
        }
        if let Some(c) = self.customers.iter().find(|&&c| !seen[c]) {
            bail!("customer {c} is not visited");
        }
        if total != plan.distance {
            bail!("total distance {} stated, {total} recomputed", plan.distance);
        }
        Ok(())
    }
}

/// Solves a multi-trip problem by the reduction in the module documentation.
pub fn solve_multi_trip(mt: &MultiTripProblem, opts: &SolveOptions) -> Result<MultiTripPlan> {
    let n = mt.dist.len();
    if mt.trucks == 0 {
        bail!("at least one truck is needed");
    }
    if mt.depot >= n || mt.landfill >= n {
        bail!("depot or landfill outside the matrix");
    }
    for &c in &mt.customers {
        if c >= n || c == mt.depot || c == mt.landfill {
            bail!("customer {c} is outside the matrix or is the depot/landfill");
        }
    }
    // Sub-problem: node 0 = landfill, node k = customers[k-1].
    let nodes: Vec<usize> = std::iter::once(mt.landfill).chain(mt.customers.iter().copied()).collect();
    let rows: Vec<Vec<i64>> = nodes.iter().map(|&a| nodes.iter().map(|&b| mt.dist.get(a, b)).collect()).collect();
    let mut demand: Vec<i64> = nodes.iter().map(|&a| mt.demand[a]).collect();
    demand[0] = 0;
    let sub = Problem::from_matrix("multi-trip", DistanceMatrix::from_rows(&rows)?, demand, mt.capacity)?;
    let (sol, _) = solve(&sub, opts);
    let mut trips: Vec<(i64, Trip)> = sol
        .routes
        .iter()
        .map(|r| {
            let stops: Vec<usize> = r.iter().map(|&k| nodes[k]).collect();
            let load = stops.iter().map(|&c| mt.demand[c]).sum();
            (sub.route_cost(r), Trip { stops, load })
        })
        .collect();
    // Longest trip first to the least-loaded truck (ties: lowest truck index).
    trips.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.stops.cmp(&b.1.stops)));
    let mut assigned: Vec<(i64, Vec<Trip>)> = vec![(0, Vec::new()); mt.trucks];
    for (cost, trip) in trips {
        let k = (0..mt.trucks).min_by_key(|&k| (assigned[k].0, k)).unwrap_or(0);
        assigned[k].0 += cost;
        assigned[k].1.push(trip);
    }
    let d = |a: usize, b: usize| mt.dist.get(a, b);
    let mut trucks = Vec::with_capacity(mt.trucks);
    let mut total = 0;
    for (_, mut list) in assigned {
        // The first trip: the one whose start (either end, by reversing) is best reached
        // from the depot instead of the landfill.
        let mut best: Option<(i64, usize, bool)> = None;
        for (i, t) in list.iter().enumerate() {
            for rev in [false, true] {
                let first = if rev { t.stops.last() } else { t.stops.first() };
                if let Some(&f) = first {
                    let gain = d(mt.depot, f) - d(mt.landfill, f);
                    if best.is_none_or(|b| gain < b.0) {
                        best = Some((gain, i, rev));
                    }
                }
            }
        }
        if let Some((_, i, rev)) = best {
            let mut t = list.remove(i);
            if rev {
                t.stops.reverse();
            }
            list.insert(0, t);
        }
        let distance = mt.truck_distance(&list);
        total += distance;
        trucks.push(TruckRoute { trips: list, distance });
    }
    Ok(MultiTripPlan { trucks, distance: total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Metric;
    use crate::rng::Rng;

    #[test]
    fn trips_respect_capacity_and_cover_every_customer() {
        let mut g = Rng::new(9);
        // Node 0 depot, node 1 landfill, 40 customers.
        let coords: Vec<(f64, f64)> = (0..42).map(|_| (g.below(1000) as f64, g.below(1000) as f64)).collect();
        let dist = DistanceMatrix::from_coords(&coords, Metric::Euclidean);
        let mut demand: Vec<i64> = (0..42).map(|_| 5 + g.below(20) as i64).collect();
        demand[0] = 0;
        demand[1] = 0;
        let total: i64 = demand.iter().sum();
        let mt = MultiTripProblem {
            dist,
            depot: 0,
            landfill: 1,
            customers: (2..42).collect(),
            demand,
            capacity: 100,
            trucks: 2,
        };
        let plan = solve_multi_trip(&mt, &SolveOptions::iterations(2_000, 3)).expect("solve");
        mt.check(&plan).expect("valid plan");
        let trips: usize = plan.trucks.iter().map(|t| t.trips.len()).sum();
        // More than one load is needed, and both trucks work.
        assert!(trips as i64 >= (total + 99) / 100);
        assert!(plan.trucks.iter().all(|t| !t.trips.is_empty()));
        assert!(plan.trucks.iter().any(|t| t.trips.len() > 1));
        // A broken plan is rejected.
        let mut broken = plan.clone();
        if let Some(t) = broken.trucks[0].trips.first_mut() {
            t.stops.pop();
        }
        assert!(mt.check(&broken).is_err());
        let mut over = plan;
        over.trucks[0].trips[0].load += 1_000;
        assert!(mt.check(&over).is_err());
    }

    #[test]
    fn rejects_bad_problems() {
        let dist = DistanceMatrix::from_coords(&[(0.0, 0.0), (1.0, 1.0)], Metric::Euclidean);
        let mt = MultiTripProblem {
            dist,
            depot: 0,
            landfill: 0,
            customers: vec![0],
            demand: vec![0, 1],
            capacity: 5,
            trucks: 1,
        };
        assert!(solve_multi_trip(&mt, &SolveOptions::iterations(10, 1)).is_err());
        let none = MultiTripProblem { trucks: 0, customers: vec![1], ..mt };
        assert!(solve_multi_trip(&none, &SolveOptions::iterations(10, 1)).is_err());
    }
}
