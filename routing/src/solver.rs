//! The CVRP solver: Clarke-Wright savings, granular local search, then SISR — "Slack
//! Induction by String Removals" (Christiaens & Vanden Berghe, Transportation Science 2020)
//! — under simulated annealing until the time limit or the iteration budget.
//!
//! One SISR iteration removes a few strings (runs of consecutive customers) from routes near
//! a random seed customer, sometimes keeping a middle piece ("split string"), then reinserts
//! the removed customers one by one, each at its cheapest feasible position while skipping
//! every position with a small probability ("blinks"). The result replaces the current
//! solution when `cost(new) < cost(cur) - T ln U`. Every new best solution is polished by the
//! local search.
//!
//! Determinism: every decision comes from the seeded [`Rng`] and the iteration count. The
//! temperature falls geometrically from `T0` to `Tf` over a *cycle* of iterations; with an
//! iteration budget there is one cycle over the whole budget; with only a time limit the
//! cycles have fixed lengths (`CYCLE0 · 2^k`, each restarting from the best solution), so the
//! clock decides only when to stop: a run that stops later has made the same decisions up to
//! the earlier stopping point.

use std::time::{Duration, Instant};

use crate::construct::savings;
use crate::local_search::{improve, neighbours};
use crate::problem::{Problem, Solution};
use crate::rng::Rng;

/// Average number of customers removed per iteration (SISR's c̄).
const AVG_REMOVED: f64 = 10.0;
/// Longest string removed (SISR's L^max).
const MAX_STRING: f64 = 10.0;
/// Split-string depth parameter (SISR's α... the "m" growth stops with this probability).
const SPLIT_RATE: f64 = 0.5;
/// Probability of skipping a position during insertion (SISR's β).
const BLINK_RATE: f64 = 0.01;
/// Length of the first annealing cycle when only a time limit is given.
const CYCLE0: u64 = 300_000;
/// Granular neighbourhood size of the local search.
const GRANULAR: usize = 20;

/// Options of one solve.
#[derive(Clone, Copy, Debug)]
pub struct SolveOptions {
    /// Wall-clock limit; the only use of the clock is to decide when to stop.
    pub time_limit: Duration,
    /// Stop after this many SISR iterations (and anneal over them); `None` = until the limit.
    pub max_iterations: Option<u64>,
    /// Seed of the random number generator.
    pub seed: u64,
}

impl SolveOptions {
    /// Options with a time limit and a seed, no iteration budget.
    pub fn timed(time_limit: Duration, seed: u64) -> Self {
        SolveOptions { time_limit, max_iterations: None, seed }
    }

    /// Options with an iteration budget (and a generous time limit as a safety net).
    pub fn iterations(max_iterations: u64, seed: u64) -> Self {
        SolveOptions { time_limit: Duration::from_secs(3600), max_iterations: Some(max_iterations), seed }
    }
}

/// Statistics of one solve.
#[derive(Clone, Copy, Debug, Default)]
pub struct SolveStats {
    /// SISR iterations performed.
    pub iterations: u64,
    /// Cost after construction and local search, before the metaheuristic.
    pub initial_cost: i64,
}

#[derive(Clone, Debug, Default)]
struct State {
    routes: Vec<Vec<usize>>,
    load: Vec<i64>,
    rcost: Vec<i64>,
    route_of: Vec<usize>,
    cost: i64,
}

impl State {
    fn new(p: &Problem, routes: Vec<Vec<usize>>) -> Self {
        let mut s = State { route_of: vec![usize::MAX; p.len()], ..Default::default() };
        for r in routes.into_iter().filter(|r| !r.is_empty()) {
            s.push_route(p, r);
        }
        s
    }

    fn push_route(&mut self, p: &Problem, r: Vec<usize>) {
        let idx = self.routes.len();
        for &c in &r {
            self.route_of[c] = idx;
        }
        self.load.push(p.route_load(&r));
        let rc = p.route_cost(&r);
        self.rcost.push(rc);
        self.cost += rc;
        self.routes.push(r);
    }

    fn copy_from(&mut self, other: &State) {
        self.routes.clone_from(&other.routes);
        self.load.clone_from(&other.load);
        self.rcost.clone_from(&other.rcost);
        self.route_of.clone_from(&other.route_of);
        self.cost = other.cost;
    }

    fn compact(&mut self) {
        let mut w = 0;
        for r in 0..self.routes.len() {
            if self.routes[r].is_empty() {
                continue;
            }
            if w != r {
                self.routes.swap(w, r);
                self.load[w] = self.load[r];
                self.rcost[w] = self.rcost[r];
                for &c in &self.routes[w] {
                    self.route_of[c] = w;
                }
            }
            w += 1;
        }
        self.routes.truncate(w);
        self.load.truncate(w);
        self.rcost.truncate(w);
    }
}

struct Sisr<'a> {
    p: &'a Problem,
    adj: Vec<Vec<usize>>,
    rng: Rng,
    removed: Vec<usize>,
    ruined: Vec<usize>,
    is_removed: Vec<bool>,
}

impl<'a> Sisr<'a> {
    fn ruin(&mut self, s: &mut State) {
        self.removed.clear();
        self.ruined.clear();
        let customers = self.p.len() - 1;
        if customers == 0 || s.routes.is_empty() {
            return;
        }
        let avg_len = customers as f64 / s.routes.len() as f64;
        let ls_max = MAX_STRING.min(avg_len);
        let ks_max = 4.0 * AVG_REMOVED / (1.0 + ls_max) - 1.0;
        let ks = (self.rng.unit() * ks_max).floor() as usize + 1;
        let seed = 1 + self.rng.below(customers);
        let adj = std::mem::take(&mut self.adj);
        for &c in &adj[seed] {
            if self.ruined.len() >= ks {
                break;
            }
            if self.is_removed[c] {
                continue;
            }
            let r = s.route_of[c];
            if self.ruined.contains(&r) {
                continue;
            }
            let len = s.routes[r].len();
            let lmax = (len as f64).min(ls_max);
            let l = ((self.rng.unit() * lmax).floor() as usize + 1).min(len);
            let pos = s.routes[r].iter().position(|&x| x == c).unwrap_or(0);
            if l == len || self.rng.unit() < 0.5 {
                self.remove_string(s, r, pos, l);
            } else {
                self.remove_split_string(s, r, pos, l);
            }
            self.ruined.push(r);
        }
        self.adj = adj;
    }

    fn take(&mut self, s: &mut State, r: usize, keep: impl Fn(usize) -> bool) {
        let route = std::mem::take(&mut s.routes[r]);
        let mut kept = Vec::with_capacity(route.len());
        for (i, &c) in route.iter().enumerate() {
            if keep(i) {
                kept.push(c);
            } else {
                self.removed.push(c);
                self.is_removed[c] = true;
                s.load[r] -= self.p.demand[c];
            }
        }
        let rc = self.p.route_cost(&kept);
        s.cost += rc - s.rcost[r];
        s.rcost[r] = rc;
        s.routes[r] = kept;
    }

    fn remove_string(&mut self, s: &mut State, r: usize, pos: usize, l: usize) {
        let len = s.routes[r].len();
        let lo = (pos + 1).saturating_sub(l);
        let hi = pos.min(len - l);
        let start = lo + self.rng.below(hi - lo + 1);
        self.take(s, r, |i| i < start || i >= start + l);
    }

    fn remove_split_string(&mut self, s: &mut State, r: usize, pos: usize, l: usize) {
        let len = s.routes[r].len();
        let mut m = 1;
        while m < len - l && self.rng.unit() > SPLIT_RATE {
            m += 1;
        }
        let total = l + m;
        let lo = (pos + 1).saturating_sub(total);
        let hi = pos.min(len - total);
        let start = lo + self.rng.below(hi - lo + 1);
        // Keep m consecutive customers somewhere inside the string of l + m.
        let keep_from = start + self.rng.below(l + 1);
        self.take(s, r, |i| i < start || i >= start + total || (i >= keep_from && i < keep_from + m));
    }

    fn recreate(&mut self, s: &mut State) {
        let p = self.p;
        let mut removed = std::mem::take(&mut self.removed);
        match self.rng.below(11) {
            0..=3 => self.rng.shuffle(&mut removed),
            4..=7 => removed.sort_by_key(|&c| (std::cmp::Reverse(p.demand[c]), c)),
            8..=9 => removed.sort_by_key(|&c| (std::cmp::Reverse(p.dist.get(0, c)), c)),
            _ => removed.sort_by_key(|&c| (p.dist.get(0, c), c)),
        }
        let blink = (BLINK_RATE * u64::MAX as f64) as u64;
        for &c in &removed {
            let q = p.demand[c];
            let mut best = 2 * p.dist.get(0, c);
            let mut best_at: Option<(usize, usize)> = None;
            for (r, route) in s.routes.iter().enumerate() {
                if route.is_empty() || s.load[r] + q > p.capacity {
                    continue;
                }
                let mut prev = 0;
                for i in 0..=route.len() {
                    let next = if i < route.len() { route[i] } else { 0 };
                    if self.rng.next_u64() >= blink {
                        let delta = p.dist.get(prev, c) + p.dist.get(c, next) - p.dist.get(prev, next);
                        if delta < best {
                            best = delta;
                            best_at = Some((r, i));
                        }
                    }
                    prev = next;
                }
            }
            match best_at {
                Some((r, i)) => {
                    s.routes[r].insert(i, c);
                    s.load[r] += q;
                    s.rcost[r] += best;
                    s.cost += best;
                    s.route_of[c] = r;
                }
                None => s.push_route(p, vec![c]),
            }
            self.is_removed[c] = false;
        }
        removed.clear();
        self.removed = removed;
        s.compact();
    }
}

/// Solves a CVRP instance; see the module documentation for the method.
pub fn solve(p: &Problem, opts: &SolveOptions) -> (Solution, SolveStats) {
    let started = Instant::now();
    let mut rng = Rng::new(opts.seed);
    let near = neighbours(p, GRANULAR);
    let mut stats = SolveStats::default();
    let initial = improve(p, savings(p), &near, &mut rng);
    let mut cur = State::new(p, initial);
    stats.initial_cost = cur.cost;
    let mut best = cur.clone();
    let n = p.len();
    if n <= 2 {
        return (finish(p, &best), stats);
    }
    // Every customer's list of other customers by distance (the seed's neighbourhood for ruin).
    let adj: Vec<Vec<usize>> = (0..n)
        .map(|c| {
            if c == 0 {
                return Vec::new();
            }
            let mut o: Vec<usize> = (1..n).collect();
            o.sort_unstable_by_key(|&x| (p.dist.get(c, x), x));
            o
        })
        .collect();
    // Temperatures scale with the instance's typical edge (SISR uses 100 → 1 on X instances,
    // whose mean pairwise distance is about 500).
    let mut sum = 0i64;
    let mut cnt = 0i64;
    for i in (0..n).step_by((n / 50).max(1)) {
        for j in (0..n).step_by((n / 50).max(1)) {
            if i != j {
                sum += p.dist.get(i, j);
                cnt += 1;
            }
        }
    }
    let mean = (sum as f64 / cnt.max(1) as f64).max(1.0);
    let (t0, tf) = (mean / 5.0, mean / 500.0);
    let mut sisr = Sisr {
        p,
        adj,
        rng: Rng::new(opts.seed ^ 0x5151_5151),
        removed: Vec::new(),
        ruined: Vec::new(),
        is_removed: vec![false; n],
    };
    let mut work = cur.clone();
    let mut cycle_len = opts.max_iterations.unwrap_or(CYCLE0).max(1);
    let mut in_cycle = 0u64;
    loop {
        if let Some(max) = opts.max_iterations
            && stats.iterations >= max
        {
            break;
        }
        if stats.iterations % 64 == 0 && started.elapsed() >= opts.time_limit {
            break;
        }
        if in_cycle >= cycle_len {
            in_cycle = 0;
            cycle_len *= 2;
            cur.copy_from(&best);
        }
        let t = t0 * (tf / t0).powf(in_cycle as f64 / cycle_len as f64);
        in_cycle += 1;
        stats.iterations += 1;
        work.copy_from(&cur);
        sisr.ruin(&mut work);
        sisr.recreate(&mut work);
        let threshold = cur.cost as f64 - t * sisr.rng.unit().max(1e-300).ln();
        if (work.cost as f64) < threshold {
            if work.cost < best.cost {
                let polished = improve(p, work.routes.clone(), &near, &mut rng);
                work = State::new(p, polished);
                best.copy_from(&work);
            }
            std::mem::swap(&mut cur, &mut work);
        }
    }
    (finish(p, &best), stats)
}

fn finish(p: &Problem, s: &State) -> Solution {
    let routes: Vec<Vec<usize>> = s.routes.iter().filter(|r| !r.is_empty()).cloned().collect();
    let cost = p.cost(&routes);
    Solution { routes, cost }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;
    use crate::problem::Metric;

    fn random_problem(seed: u64, n: usize, cap: i64) -> Problem {
        let mut g = Rng::new(seed);
        let coords: Vec<(f64, f64)> = (0..n).map(|_| (g.below(1000) as f64, g.below(1000) as f64)).collect();
        let mut demand: Vec<i64> = (0..n).map(|_| 1 + g.below(10) as i64).collect();
        demand[0] = 0;
        Problem::from_coords("r", coords, demand, cap, Metric::Euclidean).expect("ok")
    }

    #[test]
    fn finds_the_optimum_of_a_small_instance() {
        // Customers on a circle of radius 100 around the depot, capacity for all of them:
        // the optimum is the single tour around the circle.
        let mut coords = vec![(0.0, 0.0)];
        for k in 0..8 {
            let a = k as f64 * std::f64::consts::PI / 4.0;
            coords.push((100.0 * a.cos(), 100.0 * a.sin()));
        }
        let p =
            Problem::from_coords("circle", coords, vec![0, 1, 1, 1, 1, 1, 1, 1, 1], 8, Metric::Euclidean).expect("ok");
        let (sol, _) = solve(&p, &SolveOptions::iterations(2_000, 1));
        // 7 chords of 2·100·sin(π/8) = 76.5 → 77 each, plus 2 radii of 100.
        assert_eq!(sol.cost, 7 * 77 + 200);
        assert_eq!(check(&p, &sol.routes, sol.cost), Ok(sol.cost));
        // With capacity 2 the optimum is 4 routes over adjacent pairs.
        let p2 = Problem { capacity: 2, ..p };
        let (sol2, _) = solve(&p2, &SolveOptions::iterations(2_000, 1));
        assert_eq!(sol2.cost, 4 * (200 + 77));
        assert_eq!(check(&p2, &sol2.routes, sol2.cost), Ok(sol2.cost));
    }

    #[test]
    fn same_seed_same_solution() {
        let p = random_problem(11, 60, 40);
        let a = solve(&p, &SolveOptions::iterations(3_000, 42)).0;
        let b = solve(&p, &SolveOptions::iterations(3_000, 42)).0;
        assert_eq!(a, b);
        assert_eq!(check(&p, &a.routes, a.cost), Ok(a.cost));
    }

    #[test]
    fn metaheuristic_improves_on_construction() {
        let p = random_problem(5, 80, 30);
        let (sol, stats) = solve(&p, &SolveOptions::iterations(5_000, 7));
        assert!(sol.cost <= stats.initial_cost);
        assert_eq!(stats.iterations, 5_000);
        assert_eq!(check(&p, &sol.routes, sol.cost), Ok(sol.cost));
    }

    #[test]
    fn handles_degenerate_instances() {
        let p = Problem::from_coords("one", vec![(0.0, 0.0)], vec![0], 5, Metric::Euclidean).expect("ok");
        let (sol, _) = solve(&p, &SolveOptions::iterations(10, 1));
        assert!(sol.routes.is_empty());
        let p =
            Problem::from_coords("two", vec![(0.0, 0.0), (3.0, 4.0)], vec![0, 2], 5, Metric::Euclidean).expect("ok");
        let (sol, _) = solve(&p, &SolveOptions::iterations(10, 1));
        assert_eq!(sol.cost, 10);
    }
}
