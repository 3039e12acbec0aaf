//! Picking, pure: FEFO choice of the bins a line is picked from, and the walk through them.
//!
//! - FEFO: lots expiring first are picked first; untracked stock (no expiry) last; among
//!   equals the bin nearest the dock, then by code, so a wave is reproducible.
//! - The walk: the routing crate's pick paths over the bins' places on the aisle graph
//!   (aisle from the code, position = rack × rack pitch), optimized and S-shape; the
//!   optimized walk is never longer.

use meshwork_routing::{PickPlan, Warehouse, plan_picks};

/// Stock a line may be picked from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub code: String,
    pub lot: String,
    /// Units not yet promised to other picks.
    pub available: i64,
    pub expire_ms: Option<i64>,
    /// Walking distance from the dock.
    pub distance_dm: i64,
}

/// Takes `quantity` units from `candidates` in FEFO order; returns `(candidate index, units)`
/// and the units left unfound.
pub fn fefo(candidates: &[Candidate], quantity: i64) -> (Vec<(usize, i64)>, i64) {
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].available > 0).collect();
    order.sort_by_key(|&i| {
        let c = &candidates[i];
        (c.expire_ms.is_none(), c.expire_ms.unwrap_or(0), c.distance_dm, c.code.clone(), c.lot.clone())
    });
    let mut left = quantity;
    let mut out = Vec::new();
    for i in order {
        if left == 0 {
            break;
        }
        let take = candidates[i].available.min(left);
        left -= take;
        out.push((i, take));
    }
    (out, left)
}

/// Where a bin stands: its aisle and distance from the front, clamped into the warehouse.
pub fn place(w: &Warehouse, aisle: i32, position_dm: i32) -> (usize, i64) {
    let aisle = usize::try_from(aisle).unwrap_or(0).min(w.aisles.saturating_sub(1));
    (aisle, i64::from(position_dm).clamp(0, w.aisle_length))
}

/// Plans the walk through `places` (one per pick task); deterministic for `seed`.
pub fn walk(w: &Warehouse, places: &[(usize, i64)], seed: u64) -> anyhow::Result<PickPlan> {
    plan_picks(w, places, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str, lot: &str, available: i64, expire_ms: Option<i64>, distance_dm: i64) -> Candidate {
        Candidate { code: code.into(), lot: lot.into(), available, expire_ms, distance_dm }
    }

    #[test]
    fn first_expiring_first_out() {
        let cands = vec![
            c("A-01-1-A", "L3", 5, Some(300), 10),
            c("A-09-1-A", "L1", 2, Some(100), 90),
            c("A-02-1-A", "", 50, None, 5),
            c("A-03-1-A", "L2", 4, Some(200), 20),
            c("A-04-1-A", "L0", 0, Some(50), 1),
        ];
        let (takes, left) = fefo(&cands, 9);
        assert_eq!(takes, vec![(1, 2), (3, 4), (0, 3)]);
        assert_eq!(left, 0);
        let (takes, left) = fefo(&cands, 100);
        assert_eq!(takes.len(), 4);
        assert_eq!(left, 100 - 61);
    }

    #[test]
    fn walk_is_never_longer_than_s_shape() {
        let w = Warehouse { aisles: 6, aisle_length: 100, aisle_spacing: 30 };
        let places = vec![place(&w, 5, 90), place(&w, 1, 10), place(&w, 3, 50), place(&w, 1, 80), place(&w, 9, 500)];
        assert_eq!(places[4], (5, 100));
        let plan = walk(&w, &places, 7).expect("plan");
        assert!(plan.distance <= plan.s_shape_distance);
        assert_eq!(plan.order.len(), places.len());
    }
}
