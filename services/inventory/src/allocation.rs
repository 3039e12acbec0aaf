//! Where a reservation line's units are taken from: the pure choice of locations, fewest
//! splits first. A location that can hold the whole line wins (the one with the most
//! available, ties by location id, so the choice is deterministic); otherwise the line is
//! split across the locations with the most available, largest first, which uses the fewest
//! locations any split can.

/// Returns `(location, quantity)` pairs summing to `quantity`, taken from `available`
/// (`(location, available units)`), or `None` when all of them together hold less.
/// Locations with nothing available are never used; `quantity` must be positive.
pub fn allocate(quantity: i64, available: &[(String, i64)]) -> Option<Vec<(String, i64)>> {
    if quantity <= 0 {
        return None;
    }
    let mut candidates: Vec<&(String, i64)> = available.iter().filter(|(_, units)| *units > 0).collect();
    // Most available first, then by id.
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if let Some((location, _)) = candidates.first().filter(|(_, units)| *units >= quantity) {
        return Some(vec![(location.clone(), quantity)]);
    }
    let mut left = quantity;
    let mut out = Vec::new();
    for (location, units) in candidates {
        let take = left.min(*units);
        out.push((location.clone(), take));
        left -= take;
        if left == 0 {
            return Some(out);
        }
    }
    None
}

/// Returns the whole line at one named location (a line that names its location), or `None`
/// when `available` there is less than `quantity`.
pub fn allocate_at(quantity: i64, location: &str, available: i64) -> Option<Vec<(String, i64)>> {
    (quantity > 0 && available >= quantity).then(|| vec![(location.to_string(), quantity)])
}

#[cfg(test)]
mod tests {
    use quickcheck::{QuickCheck, TestResult};

    use super::*;

    fn locs(units: &[i64]) -> Vec<(String, i64)> {
        units.iter().enumerate().map(|(i, u)| (format!("l{i}"), *u)).collect()
    }

    #[test]
    fn one_location_that_holds_the_line_wins_largest_first() {
        assert_eq!(allocate(3, &locs(&[5, 9, 2])), Some(vec![("l1".into(), 3)]));
        // Ties go to the smaller id.
        assert_eq!(allocate(3, &locs(&[4, 4])), Some(vec![("l0".into(), 3)]));
    }

    #[test]
    fn splits_across_the_largest() {
        assert_eq!(allocate(10, &locs(&[3, 6, 1, 4])), Some(vec![("l1".into(), 6), ("l3".into(), 4)]));
        assert_eq!(allocate(15, &locs(&[3, 6, 1, 4])), None);
        assert_eq!(allocate(14, &locs(&[3, 6, 1, 4, 0, -2])).map(|a| a.len()), Some(4));
        assert_eq!(allocate(1, &[]), None);
        assert_eq!(allocate(0, &locs(&[5])), None);
    }

    #[test]
    fn a_named_location() {
        assert_eq!(allocate_at(2, "a", 2), Some(vec![("a".into(), 2)]));
        assert_eq!(allocate_at(3, "a", 2), None);
    }

    #[test]
    fn quickcheck_allocations_are_exact_feasible_and_minimal() {
        fn prop(quantity: u16, units: Vec<i16>) -> TestResult {
            let quantity = i64::from(quantity) + 1;
            let available: Vec<(String, i64)> =
                units.iter().enumerate().map(|(i, u)| (format!("l{i}"), i64::from(*u))).collect();
            let total: i64 = available.iter().map(|(_, u)| (*u).max(0)).sum();
            let Some(plan) = allocate(quantity, &available) else {
                return TestResult::from_bool(total < quantity);
            };
            let exact = plan.iter().map(|(_, q)| q).sum::<i64>() == quantity;
            let feasible = plan.iter().all(|(l, q)| *q > 0 && available.iter().any(|(al, au)| al == l && au >= q));
            let distinct = plan.iter().map(|(l, _)| l).collect::<std::collections::HashSet<_>>().len() == plan.len();
            // No split uses fewer locations: the k largest together hold less than quantity.
            let mut sorted: Vec<i64> = available.iter().map(|(_, u)| *u).filter(|u| *u > 0).collect();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let fewer: i64 = sorted.iter().take(plan.len() - 1).sum();
            TestResult::from_bool(exact && feasible && distinct && total >= quantity && fewer < quantity)
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(u16, Vec<i16>) -> TestResult);
    }
}
