//! The capacitated vehicle routing problem as the solver sees it: a square integer distance
//! matrix over nodes (node 0 is the depot), a demand per node and one vehicle capacity.
//!
//! Distances are integers so that costs compare exactly and a checker can recompute them:
//! VRPLIB's EUC_2D rounds each Euclidean edge to the nearest integer, and lat/lon input uses
//! haversine metres rounded the same way.

use anyhow::{Result, bail};

/// Mean Earth radius in metres (IUGG), used by [`haversine_m`].
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// How the distance between two coordinates is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// VRPLIB EUC_2D: the Euclidean distance rounded to the nearest integer.
    Euclidean,
    /// Coordinates are (latitude, longitude) in degrees; great-circle metres, rounded.
    Haversine,
}

/// VRPLIB's EUC_2D edge weight: `nint(sqrt(dx² + dy²))`.
pub fn euc2d(a: (f64, f64), b: (f64, f64)) -> i64 {
    let dx = a.0 - b.0;
    let dy = a.1 - b.1;
    (dx * dx + dy * dy).sqrt().round() as i64
}

/// Great-circle distance in metres between two (lat, lon) points in degrees.
pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The distance between two coordinates under `metric`, as an integer.
pub fn distance(metric: Metric, a: (f64, f64), b: (f64, f64)) -> i64 {
    match metric {
        Metric::Euclidean => euc2d(a, b),
        Metric::Haversine => haversine_m(a, b).round() as i64,
    }
}

/// A square matrix of integer distances, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistanceMatrix {
    n: usize,
    d: Vec<i64>,
}

impl DistanceMatrix {
    /// Builds the matrix of every pair of `coords` under `metric`.
    pub fn from_coords(coords: &[(f64, f64)], metric: Metric) -> Self {
        let n = coords.len();
        let mut d = vec![0; n * n];
        for i in 0..n {
            for j in (i + 1)..n {
                let v = distance(metric, coords[i], coords[j]);
                d[i * n + j] = v;
                d[j * n + i] = v;
            }
        }
        DistanceMatrix { n, d }
    }

    /// Wraps explicit rows; every row must have `rows.len()` non-negative entries.
    pub fn from_rows(rows: &[Vec<i64>]) -> Result<Self> {
        let n = rows.len();
        let mut d = Vec::with_capacity(n * n);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n {
                bail!("row {i} has {} entries, expected {n}", row.len());
            }
            if row.iter().any(|&v| v < 0) {
                bail!("row {i} has a negative distance");
            }
            d.extend_from_slice(row);
        }
        Ok(DistanceMatrix { n, d })
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the matrix has no nodes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The distance from `i` to `j`.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> i64 {
        self.d[i * self.n + j]
    }
}

/// A CVRP instance: node 0 is the depot, nodes `1..n` are customers.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Instance name (for reports).
    pub name: String,
    /// Distances between every pair of nodes.
    pub dist: DistanceMatrix,
    /// Demand of each node; `demand[0]` (the depot) is ignored.
    pub demand: Vec<i64>,
    /// Capacity of every vehicle.
    pub capacity: i64,
    /// Coordinates, when the instance has them (the checker recomputes costs from them).
    pub coords: Option<Vec<(f64, f64)>>,
    /// The metric the matrix was built with, when built from coordinates.
    pub metric: Option<Metric>,
}

impl Problem {
    /// A problem over coordinates: `coords[0]` is the depot.
    pub fn from_coords(
        name: &str,
        coords: Vec<(f64, f64)>,
        demand: Vec<i64>,
        capacity: i64,
        metric: Metric,
    ) -> Result<Self> {
        let dist = DistanceMatrix::from_coords(&coords, metric);
        let p = Problem { name: name.to_string(), dist, demand, capacity, coords: Some(coords), metric: Some(metric) };
        p.validate()?;
        Ok(p)
    }

    /// A problem over an explicit distance matrix: node 0 is the depot.
    pub fn from_matrix(name: &str, dist: DistanceMatrix, demand: Vec<i64>, capacity: i64) -> Result<Self> {
        let p = Problem { name: name.to_string(), dist, demand, capacity, coords: None, metric: None };
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        if self.dist.is_empty() {
            bail!("a problem needs at least the depot");
        }
        if self.demand.len() != self.dist.len() {
            bail!("{} demands for {} nodes", self.demand.len(), self.dist.len());
        }
        if self.capacity <= 0 {
            bail!("capacity must be positive");
        }
        for (i, &q) in self.demand.iter().enumerate().skip(1) {
            if q < 0 || q > self.capacity {
                bail!("customer {i} has demand {q}, outside 0..={}", self.capacity);
            }
        }
        Ok(())
    }

    /// Number of nodes including the depot.
    pub fn len(&self) -> usize {
        self.dist.len()
    }

    /// Whether there are no customers.
    pub fn is_empty(&self) -> bool {
        self.dist.len() <= 1
    }

    /// The cost of one route (customers only; the depot is implied at both ends).
    pub fn route_cost(&self, route: &[usize]) -> i64 {
        let mut prev = 0;
        let mut cost = 0;
        for &c in route {
            cost += self.dist.get(prev, c);
            prev = c;
        }
        cost + self.dist.get(prev, 0)
    }

    /// The load of one route.
    pub fn route_load(&self, route: &[usize]) -> i64 {
        route.iter().map(|&c| self.demand[c]).sum()
    }

    /// The total cost of a set of routes.
    pub fn cost(&self, routes: &[Vec<usize>]) -> i64 {
        routes.iter().map(|r| self.route_cost(r)).sum()
    }
}

/// A solution: routes of customer indices (the depot is not listed), and its cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Solution {
    /// Each route's customers in visiting order.
    pub routes: Vec<Vec<usize>>,
    /// The total distance.
    pub cost: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euc2d_rounds_to_nearest() {
        assert_eq!(euc2d((0.0, 0.0), (3.0, 4.0)), 5);
        assert_eq!(euc2d((0.0, 0.0), (1.0, 1.0)), 1); // 1.414
        assert_eq!(euc2d((0.0, 0.0), (1.0, 2.0)), 2); // 2.236
        assert_eq!(euc2d((0.0, 0.0), (2.0, 3.0)), 4); // 3.606
    }

    #[test]
    fn haversine_known_distance() {
        // Paris to London is about 343.5 km.
        let d = haversine_m((48.8566, 2.3522), (51.5074, -0.1278));
        assert!((d - 343_500.0).abs() < 1_500.0, "{d}");
        assert_eq!(haversine_m((10.0, 10.0), (10.0, 10.0)), 0.0);
    }

    #[test]
    fn problem_rejects_bad_input() {
        let coords = vec![(0.0, 0.0), (1.0, 0.0)];
        assert!(Problem::from_coords("x", coords.clone(), vec![0, 5], 4, Metric::Euclidean).is_err());
        assert!(Problem::from_coords("x", coords.clone(), vec![0], 4, Metric::Euclidean).is_err());
        assert!(Problem::from_coords("x", coords, vec![0, 1], 0, Metric::Euclidean).is_err());
        assert!(DistanceMatrix::from_rows(&[vec![0, 1], vec![1]]).is_err());
    }
}
