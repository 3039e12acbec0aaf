//! Cycle-count scheduling by ABC class of movement, pure: skus sorted by units picked, the
//! ones that make the first 80% of all picked units are A (counted every 30 days), the next
//! 15% B (every 91 days), the rest and skus never picked C (every 365 days). A sku is due at
//! its last count (or, never counted, its first receipt) plus its class's interval.

/// An ABC class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    A,
    B,
    C,
}

const DAY_MS: i64 = 86_400_000;

impl Class {
    /// Days between counts.
    pub fn interval_days(self) -> i64 {
        match self {
            Class::A => 30,
            Class::B => 91,
            Class::C => 365,
        }
    }

    /// When a sku last counted (or first received) at `since_ms` is due.
    pub fn due_ms(self, since_ms: i64) -> i64 {
        since_ms.saturating_add(self.interval_days() * DAY_MS)
    }
}

/// Classifies skus by their picked units (`(sku, picked)`); returns one class per input, in
/// input order.
pub fn classify(picked: &[(String, i64)]) -> Vec<Class> {
    let total: i64 = picked.iter().map(|(_, p)| (*p).max(0)).sum();
    let mut order: Vec<usize> = (0..picked.len()).collect();
    order.sort_by(|&a, &b| picked[b].1.cmp(&picked[a].1).then_with(|| picked[a].0.cmp(&picked[b].0)));
    let mut classes = vec![Class::C; picked.len()];
    let mut before = 0i64;
    for i in order {
        let units = picked[i].1.max(0);
        if units == 0 || total == 0 {
            break;
        }
        // The class of a sku is where the cumulative share stands when it starts: the sku
        // that crosses 80% is still A.
        classes[i] = if before * 100 < total * 80 {
            Class::A
        } else if before * 100 < total * 95 {
            Class::B
        } else {
            Class::C
        };
        before += units;
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_classes_and_intervals() {
        let picked: Vec<(String, i64)> = [("S1", 700), ("S2", 150), ("S3", 100), ("S4", 40), ("S5", 10), ("S6", 0)]
            .iter()
            .map(|(s, p)| (s.to_string(), *p))
            .collect();
        assert_eq!(classify(&picked), vec![Class::A, Class::A, Class::B, Class::C, Class::C, Class::C]);
        assert_eq!(classify(&[]), Vec::<Class>::new());
        assert_eq!(classify(&[("X".into(), 0)]), vec![Class::C]);
        assert_eq!(Class::A.due_ms(0), 30 * DAY_MS);
        assert!(Class::B.due_ms(0) < Class::C.due_ms(0));
    }
}
