//! An independent solution checker: every customer exactly once, no route over capacity,
//! and the cost recomputed from the coordinates (or the matrix when there are none) equal to
//! the claimed cost. It shares no code with the solver beyond the distance function.

use crate::problem::{Problem, distance};

/// Why a solution was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A route lists the depot or a node that does not exist.
    UnknownNode(usize),
    /// A customer is visited more than once.
    Duplicate(usize),
    /// A customer is never visited.
    Missing(usize),
    /// A route carries more than the capacity.
    OverCapacity {
        /// Index of the route.
        route: usize,
        /// Its load.
        load: i64,
    },
    /// The recomputed cost differs from the claimed one.
    CostMismatch {
        /// What the solution claims.
        claimed: i64,
        /// What the checker computed.
        computed: i64,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::UnknownNode(n) => write!(f, "node {n} is not a customer"),
            Violation::Duplicate(n) => write!(f, "customer {n} visited more than once"),
            Violation::Missing(n) => write!(f, "customer {n} never visited"),
            Violation::OverCapacity { route, load } => {
                write!(f, "route {route} carries {load}, over capacity")
            }
            Violation::CostMismatch { claimed, computed } => {
                write!(f, "claimed cost {claimed}, recomputed {computed}")
            }
        }
    }
}

/// Checks `routes` (customer indices, depot implied) against `problem` and a claimed cost.
/// Returns the recomputed cost when the solution is feasible and the cost matches.
pub fn check(problem: &Problem, routes: &[Vec<usize>], claimed: i64) -> Result<i64, Violation> {
    let n = problem.len();
    let mut seen = vec![false; n];
    let mut computed = 0i64;
    let edge = |a: usize, b: usize| match (&problem.coords, problem.metric) {
        (Some(c), Some(m)) => distance(m, c[a], c[b]),
        _ => problem.dist.get(a, b),
    };
    for (r, route) in routes.iter().enumerate() {
        let mut load = 0i64;
        let mut prev = 0usize;
        for &c in route {
            if c == 0 || c >= n {
                return Err(Violation::UnknownNode(c));
            }
            if seen[c] {
                return Err(Violation::Duplicate(c));
            }
            seen[c] = true;
            load += problem.demand[c];
            computed += edge(prev, c);
            prev = c;
        }
        if !route.is_empty() {
            computed += edge(prev, 0);
        }
        if load > problem.capacity {
            return Err(Violation::OverCapacity { route: r, load });
        }
    }
    if let Some(missing) = (1..n).find(|&c| !seen[c]) {
        return Err(Violation::Missing(missing));
    }
    if computed != claimed {
        return Err(Violation::CostMismatch { claimed, computed });
    }
    Ok(computed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Metric;

    fn square() -> Problem {
        let coords = vec![(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0)];
        Problem::from_coords("sq", coords, vec![0, 1, 1, 1], 2, Metric::Euclidean).expect("ok")
    }

    #[test]
    fn accepts_a_valid_solution() {
        let p = square();
        assert_eq!(check(&p, &[vec![1, 2], vec![3]], 54), Ok(54));
    }

    #[test]
    fn rejects_broken_solutions() {
        let p = square();
        assert_eq!(check(&p, &[vec![1, 2, 3]], 40), Err(Violation::OverCapacity { route: 0, load: 3 }));
        assert_eq!(check(&p, &[vec![1, 2], vec![2, 3]], 0), Err(Violation::Duplicate(2)));
        assert_eq!(check(&p, &[vec![1, 2]], 34), Err(Violation::Missing(3)));
        assert_eq!(check(&p, &[vec![1, 0], vec![3]], 0), Err(Violation::UnknownNode(0)));
        assert_eq!(check(&p, &[vec![1, 9], vec![3]], 0), Err(Violation::UnknownNode(9)));
        assert_eq!(check(&p, &[vec![1, 2], vec![3]], 50), Err(Violation::CostMismatch { claimed: 50, computed: 54 }));
    }
}
