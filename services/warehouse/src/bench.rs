//! Pick-path savings on a generated warehouse, for the benchmarks page and the property test:
//! a 20-aisle single-block warehouse whose bins are real location codes (`A-NN-R-L`, 20 racks
//! per aisle, 4 levels), random pick lists of those codes, each planned through the same
//! code-to-place mapping the service uses, optimized against S-shape.

use meshwork_routing::Warehouse;

use crate::codes::parse_bin;
use crate::picking::{place, walk};

/// Aisles of the generated warehouse.
pub const AISLES: u32 = 20;
/// Racks per aisle.
pub const RACKS: u32 = 20;
/// Rack pitch, decimetres (aisles are `RACKS × RACK_PITCH_DM` = 10 m long).
pub const RACK_PITCH_DM: i64 = 5;

/// The generated warehouse's geometry (aisles 3 m apart).
pub fn generated_warehouse() -> Warehouse {
    Warehouse { aisles: AISLES as usize, aisle_length: i64::from(RACKS) * RACK_PITCH_DM, aisle_spacing: 30 }
}

/// Mean walks over pick lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PickSaving {
    /// Pick lists planned.
    pub lists: usize,
    /// Mean S-shape walk, decimetres.
    pub mean_s_shape_dm: f64,
    /// Mean optimized walk, decimetres.
    pub mean_optimized_dm: f64,
    /// Mean of each list's saving, percent of its S-shape walk.
    pub mean_saving_percent: f64,
    /// Lists where the optimized walk was longer than S-shape (always 0).
    pub longer: usize,
}

/// A small deterministic generator (SplitMix64), so the benchmark needs no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// Plans `lists` random pick lists of 5 to 40 bin codes on the generated 20-aisle warehouse,
/// deterministic for `seed`, and reports the mean saving of the optimized walk over S-shape.
/// One line for BENCHMARKS: `meshwork_warehouse::bench::pick_saving(1000, 1)`.
pub fn pick_saving(lists: usize, seed: u64) -> anyhow::Result<PickSaving> {
    let w = generated_warehouse();
    let mut g = SplitMix(seed);
    let (mut s_sum, mut o_sum, mut pct, mut longer) = (0.0, 0.0, 0.0, 0);
    for list in 0..lists {
        let count = 5 + g.below(36);
        let places = (0..count)
            .map(|_| {
                let code = format!(
                    "{}-{:02}-{}-{}",
                    ["A", "B"][g.below(2) as usize],
                    g.below(u64::from(AISLES)),
                    1 + g.below(u64::from(RACKS)),
                    char::from(b'A' + g.below(4) as u8)
                );
                let bin = parse_bin(&code).map_err(|e| anyhow::anyhow!("{code}: {e}"))?;
                let aisle = i32::try_from(bin.aisle)?;
                let position = i32::try_from(i64::from(bin.rack) * RACK_PITCH_DM)?;
                Ok(place(&w, aisle, position))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let plan = walk(&w, &places, seed.wrapping_add(list as u64))?;
        if plan.distance > plan.s_shape_distance {
            longer += 1;
        }
        s_sum += plan.s_shape_distance as f64;
        o_sum += plan.distance as f64;
        pct += 100.0 * (plan.s_shape_distance - plan.distance) as f64 / plan.s_shape_distance.max(1) as f64;
    }
    let n = lists.max(1) as f64;
    Ok(PickSaving {
        lists,
        mean_s_shape_dm: s_sum / n,
        mean_optimized_dm: o_sum / n,
        mean_saving_percent: pct / n,
        longer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Property: on the generated 20-aisle warehouse the optimized walk is never longer than
    /// S-shape, over many seeded random pick lists; and it does save on average.
    #[test]
    fn optimized_never_longer_than_s_shape_on_20_aisles() {
        for seed in 0..4 {
            let s = pick_saving(25, seed).expect("bench");
            eprintln!("seed {seed}: {s:?}");
            assert_eq!(s.longer, 0, "seed {seed}: {s:?}");
            assert!(s.mean_optimized_dm <= s.mean_s_shape_dm);
            assert!(s.mean_saving_percent > 0.0, "seed {seed}: {s:?}");
        }
    }
}
