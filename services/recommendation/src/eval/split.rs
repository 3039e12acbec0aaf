//! Train/test splits. `random` sends each (user, item) interaction to test with probability
//! `test_fraction`, drawn from a seeded generator, as `implicit.evaluation.train_test_split`
//! does (per interaction, not per user). `time` holds out, per user, the latest
//! `floor(n * test_fraction)` interactions by timestamp (ties broken by item id), so users with
//! fewer than `1 / test_fraction` interactions stay wholly in train; it answers "what does the
//! user do next" rather than "what did we hide".
//!
//! The Python peer never re-implements a split: `--write-split DIR` writes `train.csv` and
//! `test.csv` and the peer reads them, so both sides see the very same interactions.

use std::collections::HashMap;

use super::data::{Interaction, SplitMix64};

/// How interactions are divided between train and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitKind {
    /// Each interaction independently, seeded (implicit's `train_test_split`).
    Random,
    /// Per user, the latest interactions by timestamp.
    Time,
}

/// A train/test split of deduplicated interactions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// What the models learn from.
    pub train: Vec<Interaction>,
    /// What they are scored against.
    pub test: Vec<Interaction>,
}

/// Splits `interactions` (already deduplicated: one per user-item pair) with the given kind,
/// test share and seed (the seed only matters for `random`). The order of the input is kept
/// within each side.
pub fn split(interactions: &[Interaction], kind: SplitKind, test_fraction: f64, seed: u64) -> Split {
    let mut out = Split::default();
    match kind {
        SplitKind::Random => {
            let mut rng = SplitMix64::new(seed);
            let train_share = 1.0 - test_fraction;
            for i in interactions {
                // Same rule as implicit: a uniform draw below the train share goes to train.
                if rng.next_f64() < train_share {
                    out.train.push(i.clone());
                } else {
                    out.test.push(i.clone());
                }
            }
        }
        SplitKind::Time => {
            let mut by_user: HashMap<&str, Vec<usize>> = HashMap::new();
            for (n, i) in interactions.iter().enumerate() {
                by_user.entry(&i.user).or_default().push(n);
            }
            let mut is_test = vec![false; interactions.len()];
            for rows in by_user.values_mut() {
                rows.sort_by(|&a, &b| {
                    let (a, b) = (&interactions[a], &interactions[b]);
                    a.at_ms.cmp(&b.at_ms).then_with(|| a.item.cmp(&b.item))
                });
                let held = (rows.len() as f64 * test_fraction).floor() as usize;
                for &n in &rows[rows.len() - held..] {
                    is_test[n] = true;
                }
            }
            for (n, i) in interactions.iter().enumerate() {
                if is_test[n] {
                    out.test.push(i.clone());
                } else {
                    out.train.push(i.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, item: &str, at_ms: i64) -> Interaction {
        Interaction { user: user.into(), item: item.into(), value: 1.0, at_ms }
    }

    #[test]
    fn random_split_is_seeded_and_near_the_fraction() {
        let rows: Vec<_> = (0..10_000).map(|n| row(&format!("u{}", n % 100), &format!("i{n}"), n)).collect();
        let a = split(&rows, SplitKind::Random, 0.2, 1);
        assert_eq!(a, split(&rows, SplitKind::Random, 0.2, 1));
        assert_ne!(a, split(&rows, SplitKind::Random, 0.2, 2));
        assert_eq!(a.train.len() + a.test.len(), rows.len());
        let share = a.test.len() as f64 / rows.len() as f64;
        assert!((share - 0.2).abs() < 0.02, "{share}");
    }

    #[test]
    fn time_split_holds_out_each_users_latest() {
        let mut rows: Vec<_> = (0..10).map(|n| row("a", &format!("i{n}"), 100 - n)).collect();
        rows.extend((0..4).map(|n| row("b", &format!("j{n}"), n)));
        let s = split(&rows, SplitKind::Time, 0.2, 0);
        // a: 10 rows, the two latest (i0 at 100, i1 at 99); b: 4 rows, floor(0.8) = 0 held out.
        let test: Vec<_> = s.test.iter().map(|i| i.item.as_str()).collect();
        assert_eq!(test, vec!["i0", "i1"]);
        assert_eq!(s.train.len(), 12);
    }
}
