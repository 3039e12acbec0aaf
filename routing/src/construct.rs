//! Clarke-Wright savings construction (parallel version).
//!
//! Every customer starts on its own route; pairs are merged in decreasing order of the saving
//! `d(0,i) + d(0,j) - d(i,j)` when `i` and `j` end two different routes and the merged load
//! fits. Ties break on the node indices, so the result is deterministic.

use crate::problem::Problem;

/// Builds routes by the savings heuristic.
pub fn savings(p: &Problem) -> Vec<Vec<usize>> {
    let n = p.len();
    let customers: Vec<usize> = (1..n).collect();
    let mut routes: Vec<Vec<usize>> = customers.iter().map(|&c| vec![c]).collect();
    // route_of[c] is the index into `routes` of the route holding c (c - 1 initially).
    let mut route_of: Vec<usize> = (0..n).map(|c| c.saturating_sub(1)).collect();
    let mut load: Vec<i64> = customers.iter().map(|&c| p.demand[c]).collect();
    let mut pairs: Vec<(i64, usize, usize)> = Vec::new();
    for i in 1..n {
        for j in (i + 1)..n {
            let s = p.dist.get(0, i) + p.dist.get(0, j) - p.dist.get(i, j);
            if s > 0 {
                pairs.push((s, i, j));
            }
        }
    }
    pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (_, i, j) in pairs {
        let (ri, rj) = (route_of[i], route_of[j]);
        if ri == rj || load[ri] + load[rj] > p.capacity {
            continue;
        }
        let i_end = routes[ri].last() == Some(&i);
        let i_front = routes[ri].first() == Some(&i);
        let j_front = routes[rj].first() == Some(&j);
        let j_end = routes[rj].last() == Some(&j);
        if !(i_end || i_front) || !(j_front || j_end) {
            continue;
        }
        // Orient so that ri ends with i and rj starts with j, then append rj to ri.
        let mut a = std::mem::take(&mut routes[ri]);
        let mut b = std::mem::take(&mut routes[rj]);
        if !i_end {
            a.reverse();
        }
        if !j_front {
            b.reverse();
        }
        for &c in &b {
            route_of[c] = ri;
        }
        a.extend(b);
        routes[ri] = a;
        load[ri] += load[rj];
        load[rj] = 0;
    }
    routes.into_iter().filter(|r| !r.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;
    use crate::problem::Metric;

    #[test]
    fn savings_is_feasible_and_merges() {
        let coords: Vec<(f64, f64)> = (0..30).map(|i| ((i * 37 % 101) as f64, (i * 53 % 97) as f64)).collect();
        let mut demand: Vec<i64> = (0..30).map(|i| 1 + i % 7).collect();
        demand[0] = 0;
        let p = Problem::from_coords("t", coords, demand, 20, Metric::Euclidean).expect("ok");
        let routes = savings(&p);
        assert!(routes.len() < 29);
        let cost = p.cost(&routes);
        assert_eq!(check(&p, &routes, cost), Ok(cost));
    }
}
