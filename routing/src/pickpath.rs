//! Warehouse pick paths in a single-block warehouse (parallel aisles joined by a front and a
//! back cross aisle; the depot is at the front of aisle 0).
//!
//! - S-shape baseline: every aisle holding a pick is traversed entirely, alternating
//!   direction; with an odd number of such aisles the last one is entered from the front and
//!   left the same way; then back to the depot.
//! - Optimized: a TSP over the picks with shortest aisle-graph distances (`|y₁-y₂|` in one
//!   aisle; otherwise the walk between aisles plus the shorter of going round the front or
//!   the back), solved by the CVRP solver as a single route, and compared with the S-shape
//!   visiting order measured the same way. The shorter of the two is returned, so the
//!   optimized walk is never longer than the S-shape walk (each S-shape leg is at least the
//!   shortest path between its ends).
//!
//! Units are integers (e.g. decimetres) so lengths compare exactly.

use anyhow::{Result, bail};

use crate::problem::{DistanceMatrix, Problem};
use crate::solver::{SolveOptions, solve};

/// Geometry of a single-block warehouse.
#[derive(Clone, Copy, Debug)]
pub struct Warehouse {
    /// Number of aisles (≥ 1).
    pub aisles: usize,
    /// Length of every aisle between the cross aisles (> 0).
    pub aisle_length: i64,
    /// Distance between neighbouring aisles' centre lines (> 0).
    pub aisle_spacing: i64,
}

/// A pick location: aisle index and position along it (0 = front, `aisle_length` = back).
pub type PickLocation = (usize, i64);

/// The result for one pick list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickPlan {
    /// Indices into the pick list, in optimized order.
    pub order: Vec<usize>,
    /// Walking distance of the optimized order, depot to depot.
    pub distance: i64,
    /// Indices in S-shape order.
    pub s_shape_order: Vec<usize>,
    /// Walking distance of the S-shape route.
    pub s_shape_distance: i64,
}

impl Warehouse {
    /// Shortest walking distance between two locations (the depot is `(0, 0)`).
    pub fn distance(&self, a: PickLocation, b: PickLocation) -> i64 {
        if a.0 == b.0 {
            return (a.1 - b.1).abs();
        }
        let across = (a.0 as i64 - b.0 as i64).abs() * self.aisle_spacing;
        let front = a.1 + b.1;
        let back = 2 * self.aisle_length - a.1 - b.1;
        across + front.min(back)
    }

    fn validate(&self, picks: &[PickLocation]) -> Result<()> {
        if self.aisles == 0 || self.aisle_length <= 0 || self.aisle_spacing <= 0 {
            bail!("a warehouse needs aisles, a positive aisle length and spacing");
        }
        for (i, &(a, y)) in picks.iter().enumerate() {
            if a >= self.aisles || y < 0 || y > self.aisle_length {
                bail!("pick {i} at aisle {a}, position {y} is outside the warehouse");
            }
        }
        Ok(())
    }

    /// The S-shape route: its visiting order and its walking length.
    pub fn s_shape(&self, picks: &[PickLocation]) -> (Vec<usize>, i64) {
        let mut aisles: Vec<usize> = picks.iter().map(|p| p.0).collect();
        aisles.sort_unstable();
        aisles.dedup();
        let Some(&last) = aisles.last() else {
            return (Vec::new(), 0);
        };
        let m = aisles.len();
        let mut order = Vec::with_capacity(picks.len());
        let mut length = 2 * last as i64 * self.aisle_spacing;
        for (k, &a) in aisles.iter().enumerate() {
            let mut here: Vec<usize> = (0..picks.len()).filter(|&i| picks[i].0 == a).collect();
            here.sort_by_key(|&i| (picks[i].1, i));
            let return_aisle = m % 2 == 1 && k == m - 1;
            if return_aisle {
                let deepest = here.iter().map(|&i| picks[i].1).max().unwrap_or(0);
                length += 2 * deepest;
            } else {
                length += self.aisle_length;
                if k % 2 == 1 {
                    here.reverse();
                }
            }
            order.extend(here);
        }
        (order, length)
    }
}

/// Length of a closed walk depot → picks in `order` → depot under shortest distances.
pub fn walk_length(w: &Warehouse, picks: &[PickLocation], order: &[usize]) -> i64 {
    let mut at = (0usize, 0i64);
    let mut total = 0;
    for &i in order {
        total += w.distance(at, picks[i]);
        at = picks[i];
    }
    total + w.distance(at, (0, 0))
}

/// Plans a pick walk: S-shape and optimized (never longer than S-shape).
pub fn plan_picks(w: &Warehouse, picks: &[PickLocation], seed: u64) -> Result<PickPlan> {
    w.validate(picks)?;
    let (s_order, s_len) = w.s_shape(picks);
    if picks.is_empty() {
        return Ok(PickPlan { order: Vec::new(), distance: 0, s_shape_order: s_order, s_shape_distance: s_len });
    }
    let nodes: Vec<PickLocation> = std::iter::once((0, 0)).chain(picks.iter().copied()).collect();
    let rows: Vec<Vec<i64>> = nodes.iter().map(|&a| nodes.iter().map(|&b| w.distance(a, b)).collect()).collect();
    let k = picks.len() as i64;
    let mut demand = vec![1; nodes.len()];
    demand[0] = 0;
    let tsp = Problem::from_matrix("picks", DistanceMatrix::from_rows(&rows)?, demand, k)?;
    let budget = (200 * picks.len() as u64).clamp(500, 20_000);
    let (sol, _) = solve(&tsp, &SolveOptions::iterations(budget, seed));
    // One capacity fits all picks, but zero savings can leave several routes: chaining them
    // through the depot is never longer (triangle inequality on shortest paths).
    let tour: Vec<usize> = sol.routes.concat().into_iter().map(|i| i - 1).collect();
    let tour_len = walk_length(w, picks, &tour);
    let s_walk = walk_length(w, picks, &s_order);
    let (order, distance) = if tour_len <= s_walk { (tour, tour_len) } else { (s_order.clone(), s_walk) };
    Ok(PickPlan { order, distance, s_shape_order: s_order, s_shape_distance: s_len })
}

/// Mean walking distances over generated warehouses (for the benchmarks page).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PickBench {
    /// Pick lists planned.
    pub cases: usize,
    /// Mean S-shape walk.
    pub mean_s_shape: f64,
    /// Mean optimized walk.
    pub mean_optimized: f64,
    /// Mean of each case's saving, percent of its S-shape walk.
    pub mean_saving_percent: f64,
}

/// Plans `cases` random pick lists of 5..=40 picks on 20-aisle warehouses (aisles 10 m long,
/// 3 m apart, in decimetres), deterministic for `seed`, and reports the mean saving of the
/// optimized walk over S-shape.
pub fn pick_bench(cases: usize, seed: u64) -> Result<PickBench> {
    let mut g = crate::rng::Rng::new(seed);
    let w = Warehouse { aisles: 20, aisle_length: 100, aisle_spacing: 30 };
    let (mut s_sum, mut o_sum, mut pct) = (0.0, 0.0, 0.0);
    for case in 0..cases {
        let count = 5 + g.below(36);
        let picks: Vec<PickLocation> = (0..count).map(|_| (g.below(20), g.below(101) as i64)).collect();
        let plan = plan_picks(&w, &picks, seed.wrapping_add(case as u64))?;
        s_sum += plan.s_shape_distance as f64;
        o_sum += plan.distance as f64;
        pct += 100.0 * (plan.s_shape_distance - plan.distance) as f64 / plan.s_shape_distance.max(1) as f64;
    }
    let n = cases.max(1) as f64;
    Ok(PickBench { cases, mean_s_shape: s_sum / n, mean_optimized: o_sum / n, mean_saving_percent: pct / n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn distances_in_the_aisle_graph() {
        let w = Warehouse { aisles: 4, aisle_length: 100, aisle_spacing: 10 };
        assert_eq!(w.distance((1, 20), (1, 70)), 50);
        assert_eq!(w.distance((0, 10), (2, 30)), 20 + 40);
        assert_eq!(w.distance((0, 90), (2, 80)), 20 + 30);
    }

    #[test]
    fn s_shape_length_and_order() {
        let w = Warehouse { aisles: 5, aisle_length: 100, aisle_spacing: 10 };
        // Aisles 1 and 3: two full traversals, 2·30 across.
        let picks = vec![(3, 50), (1, 20), (1, 80), (3, 10)];
        let (order, len) = w.s_shape(&picks);
        assert_eq!(order, vec![1, 2, 0, 3]);
        assert_eq!(len, 60 + 200);
        // Odd number of aisles: the last is a return aisle.
        let (_, len) = w.s_shape(&[(2, 30)]);
        assert_eq!(len, 40 + 60);
    }

    #[test]
    fn optimized_is_never_longer_than_s_shape_on_20_aisle_warehouses() {
        let mut g = Rng::new(2024);
        let mut saved = 0i64;
        let mut total = 0i64;
        for case in 0..60u64 {
            let w = Warehouse {
                aisles: 20,
                aisle_length: 50 + g.below(300) as i64,
                aisle_spacing: 20 + g.below(60) as i64,
            };
            let count = 1 + g.below(40);
            let picks: Vec<PickLocation> =
                (0..count).map(|_| (g.below(20), g.below(w.aisle_length as usize + 1) as i64)).collect();
            let plan = plan_picks(&w, &picks, case).expect("plan");
            assert!(plan.distance <= plan.s_shape_distance, "case {case}: {plan:?}");
            assert_eq!(plan.distance, walk_length(&w, &picks, &plan.order));
            let mut sorted = plan.order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..count).collect::<Vec<_>>());
            saved += plan.s_shape_distance - plan.distance;
            total += plan.s_shape_distance;
        }
        // The optimizer does find shorter walks on random pick lists.
        assert!(saved * 20 > total, "saved {saved} of {total}");
    }

    #[test]
    fn pick_bench_reports_a_saving() {
        let b = pick_bench(20, 1).expect("bench");
        eprintln!("pick bench: {b:?}");
        assert_eq!(b.cases, 20);
        assert!(b.mean_optimized <= b.mean_s_shape);
        assert!(b.mean_saving_percent > 0.0);
    }

    #[test]
    fn rejects_picks_outside() {
        let w = Warehouse { aisles: 2, aisle_length: 10, aisle_spacing: 5 };
        assert!(plan_picks(&w, &[(2, 0)], 1).is_err());
        assert!(plan_picks(&w, &[(0, 11)], 1).is_err());
        let bad = Warehouse { aisles: 0, ..w };
        assert!(plan_picks(&bad, &[], 1).is_err());
        assert_eq!(plan_picks(&w, &[], 1).expect("empty").distance, 0);
    }
}
