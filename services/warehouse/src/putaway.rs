//! Put-away suggestions, pure: bins already holding the sku (and lot) come first, so that a
//! product stays together; then empty or other bins with room, nearest the receiving dock
//! (the front of aisle 0, where the pick walks start) first. Ties go by code, so suggestions
//! are stable.

use crate::model::{LocKind, LocationRec};

/// One suggested bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub code: String,
    pub quantity: i64,
    pub room: i64,
    pub distance_dm: i64,
    pub same_product: bool,
}

/// Spreads `quantity` units of `sku`/`lot` over `bins` (STORAGE only are considered) and
/// returns the suggestions and the units no bin has room for. `distance` gives a bin's
/// walking distance from the receiving dock.
pub fn suggest(
    bins: &[LocationRec],
    sku: &str,
    lot: &str,
    quantity: i64,
    distance: impl Fn(&LocationRec) -> i64,
) -> (Vec<Suggestion>, i64) {
    let mut ranked: Vec<(bool, i64, &LocationRec)> = bins
        .iter()
        .filter(|b| b.kind == LocKind::Storage && b.room() > 0)
        .map(|b| (b.item(sku, lot).is_some_and(|i| i.quantity > 0), distance(b), b))
        .collect();
    // Same product first (true sorts after false, hence the negation), then nearest, then code.
    ranked.sort_by(|a, b| (!a.0, a.1, &a.2.code).cmp(&(!b.0, b.1, &b.2.code)));
    let mut left = quantity;
    let mut out = Vec::new();
    for (same_product, distance_dm, bin) in ranked {
        if left == 0 {
            break;
        }
        let room = bin.room();
        let take = room.min(left);
        left -= take;
        out.push(Suggestion { code: bin.code.clone(), quantity: take, room, distance_dm, same_product });
    }
    (out, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Item;

    fn bin(code: &str, capacity: i64, aisle: i32, items: &[(&str, i64)]) -> LocationRec {
        LocationRec {
            code: code.into(),
            kind: LocKind::Storage,
            capacity,
            aisle,
            position_dm: 10,
            items: items
                .iter()
                .map(|(s, q)| Item {
                    sku: (*s).into(),
                    lot: String::new(),
                    quantity: *q,
                    allocated: 0,
                    expire_ms: None,
                })
                .collect(),
        }
    }

    #[test]
    fn same_product_first_then_nearest_with_room() {
        let bins = vec![
            bin("A-01-1-A", 10, 1, &[]),
            bin("A-05-1-A", 10, 5, &[("SKU-1", 8)]),
            bin("A-00-1-A", 10, 0, &[("SKU-2", 10)]),
            bin("A-02-1-A", 10, 2, &[]),
        ];
        let (s, left) = suggest(&bins, "SKU-1", "", 15, |b| i64::from(b.aisle) * 30 + 10);
        let got: Vec<(&str, i64, bool)> = s.iter().map(|s| (s.code.as_str(), s.quantity, s.same_product)).collect();
        assert_eq!(got, vec![("A-05-1-A", 2, true), ("A-01-1-A", 10, false), ("A-02-1-A", 3, false)]);
        assert_eq!(left, 0);
        let (_, left) = suggest(&bins, "SKU-1", "", 100, |_| 0);
        assert_eq!(left, 100 - 22);
    }
}
