//! Reading VRPLIB CVRP instances (`.vrp`) and solutions (`.sol`).
//!
//! Supported: `TYPE : CVRP`, `EDGE_WEIGHT_TYPE : EUC_2D`, `NODE_COORD_SECTION`,
//! `DEMAND_SECTION`, `DEPOT_SECTION` with a single depot. The depot becomes node 0 and the
//! other nodes keep their file order, so with the usual depot `1` the customer numbered `c`
//! in a `.sol` file (which numbers customers from 1, the depot being 0) is node `c`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::problem::{Metric, Problem};

/// A best-known solution read from a `.sol` file.
#[derive(Clone, Debug)]
pub struct KnownSolution {
    /// Routes in the `.sol` numbering (customers from 1).
    pub routes: Vec<Vec<usize>>,
    /// The cost stated in the file.
    pub cost: i64,
}

/// Most nodes an instance may have (its distance matrix has this many squared entries).
pub const MAX_DIMENSION: usize = 5_000;

/// Largest coordinate magnitude accepted.
pub const MAX_COORDINATE: f64 = 1e9;

/// Largest vehicle capacity accepted (demands are at most the capacity).
pub const MAX_CAPACITY: i64 = 1_000_000_000_000;

/// Parses a VRPLIB CVRP instance from text.
pub fn parse_instance(text: &str) -> Result<Problem> {
    let mut name = String::new();
    let mut dimension = 0usize;
    let mut capacity = 0i64;
    let mut weight_type = String::new();
    let mut coords: Vec<Option<(f64, f64)>> = Vec::new();
    let mut demand: Vec<Option<i64>> = Vec::new();
    let mut depots: Vec<usize> = Vec::new();
    let mut section = "";
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            let key = key.trim();
            let value = value.trim().trim_matches('"');
            match key {
                "NAME" => name = value.to_string(),
                "DIMENSION" => {
                    dimension = value.parse().context("DIMENSION")?;
                    // The full distance matrix is n^2 entries: refuse what would not fit
                    // rather than allocate it (the X instances go to 1,001 nodes).
                    if dimension > MAX_DIMENSION {
                        bail!("DIMENSION {dimension} is above the {MAX_DIMENSION} nodes this solver takes");
                    }
                    coords = vec![None; dimension];
                    demand = vec![None; dimension];
                }
                "CAPACITY" => {
                    capacity = value.parse().context("CAPACITY")?;
                    if capacity > MAX_CAPACITY {
                        bail!("CAPACITY {capacity} is above {MAX_CAPACITY}");
                    }
                }
                "EDGE_WEIGHT_TYPE" => weight_type = value.to_string(),
                "TYPE" if value != "CVRP" => bail!("unsupported TYPE {value}"),
                _ => {}
            }
            continue;
        }
        match line {
            "NODE_COORD_SECTION" | "DEMAND_SECTION" | "DEPOT_SECTION" => {
                section = match line {
                    "NODE_COORD_SECTION" => "coord",
                    "DEMAND_SECTION" => "demand",
                    _ => "depot",
                };
                continue;
            }
            "EOF" => break,
            _ => {}
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = || format!("line {}", lineno + 1);
        match section {
            "coord" | "demand" => {
                let id: usize = fields[0].parse().with_context(at)?;
                if id == 0 || id > dimension {
                    bail!("{}: node {id} outside 1..={dimension}", at());
                }
                if section == "coord" {
                    if fields.len() < 3 {
                        bail!("{}: a coordinate needs x and y", at());
                    }
                    let x: f64 = fields[1].parse().with_context(at)?;
                    let y: f64 = fields[2].parse().with_context(at)?;
                    // Bounded, so that distances and their sums stay far inside i64.
                    if !(x.abs() <= MAX_COORDINATE && y.abs() <= MAX_COORDINATE) {
                        bail!("{}: coordinates must be finite and within ±{MAX_COORDINATE}", at());
                    }
                    coords[id - 1] = Some((x, y));
                } else {
                    if fields.len() < 2 {
                        bail!("{}: a demand needs a value", at());
                    }
                    demand[id - 1] = Some(fields[1].parse().with_context(at)?);
                }
            }
            "depot" => {
                let id: i64 = fields[0].parse().with_context(at)?;
                if id >= 1 {
                    depots.push(id as usize);
                }
            }
            _ => bail!("{}: unexpected line {line:?}", at()),
        }
    }
    if weight_type != "EUC_2D" {
        bail!("unsupported EDGE_WEIGHT_TYPE {weight_type:?} (only EUC_2D)");
    }
    if dimension < 2 {
        bail!("DIMENSION must be at least 2");
    }
    let depot = match depots.as_slice() {
        [] => 1,
        [d] if *d <= dimension => *d,
        _ => bail!("exactly one depot within 1..={dimension} is supported"),
    };
    let mut order: Vec<usize> = vec![depot - 1];
    order.extend((0..dimension).filter(|&i| i != depot - 1));
    let mut xy = Vec::with_capacity(dimension);
    let mut q = Vec::with_capacity(dimension);
    for &i in &order {
        xy.push(coords[i].with_context(|| format!("node {} has no coordinates", i + 1))?);
        q.push(demand[i].with_context(|| format!("node {} has no demand", i + 1))?);
    }
    q[0] = 0;
    Problem::from_coords(&name, xy, q, capacity, Metric::Euclidean)
}

/// Reads a VRPLIB CVRP instance from a file.
pub fn read_instance(path: &Path) -> Result<Problem> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_instance(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parses a VRPLIB solution (`Route #k: c c c` lines and a `Cost N` line).
pub fn parse_solution(text: &str) -> Result<KnownSolution> {
    let mut routes = Vec::new();
    let mut cost = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Route") {
            let (_, customers) = rest.split_once(':').context("route line without ':'")?;
            let route = customers
                .split_whitespace()
                .map(|c| c.parse::<usize>().context("customer number"))
                .collect::<Result<Vec<_>>>()?;
            routes.push(route);
        } else if let Some(rest) = line.strip_prefix("Cost") {
            cost = Some(rest.trim().parse::<f64>().context("cost")?.round() as i64);
        }
    }
    Ok(KnownSolution { routes, cost: cost.context("no Cost line")? })
}

/// Reads a VRPLIB solution file.
pub fn read_solution(path: &Path) -> Result<KnownSolution> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_solution(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "NAME : tiny\nTYPE : CVRP\nDIMENSION : 4\nEDGE_WEIGHT_TYPE : EUC_2D\n\
CAPACITY : 10\nNODE_COORD_SECTION\n1 0 0\n2 3 4\n3 6 8\n4 -3 4\nDEMAND_SECTION\n1 0\n2 4\n\
3 4\n4 5\nDEPOT_SECTION\n1\n-1\nEOF\n";

    #[test]
    fn parses_a_small_instance() {
        let p = parse_instance(SMALL).expect("parse");
        assert_eq!(p.name, "tiny");
        assert_eq!(p.len(), 4);
        assert_eq!(p.capacity, 10);
        assert_eq!(p.demand, vec![0, 4, 4, 5]);
        assert_eq!(p.dist.get(0, 1), 5);
        assert_eq!(p.dist.get(0, 2), 10);
        assert_eq!(p.dist.get(1, 3), 6);
    }

    #[test]
    fn rejects_unsupported_or_broken_files() {
        assert!(parse_instance(&SMALL.replace("EUC_2D", "GEO")).is_err());
        assert!(parse_instance(&SMALL.replace("4 5\n", "")).is_err());
        assert!(parse_instance(&SMALL.replace("2 3 4", "9 3 4")).is_err());
        assert!(parse_instance(&SMALL.replace("CAPACITY : 10", "CAPACITY : x")).is_err());
    }

    #[test]
    fn parses_a_solution() {
        let s = parse_solution("Route #1: 1 2\nRoute #2: 3\nCost 21\n").expect("parse");
        assert_eq!(s.routes, vec![vec![1, 2], vec![3]]);
        assert_eq!(s.cost, 21);
        assert!(parse_solution("Route #1: 1 2\n").is_err());
    }
}
