//! Ranking metrics at k, defined exactly as `implicit.evaluation.ranking_metrics_at_k` defines
//! them, so that our numbers and the Python peer's are comparable:
//!
//! - every user with at least one test item is evaluated (users with none are skipped);
//! - precision@k = Σ hits / Σ min(k, |test_u|), summed over users (implicit's denominator: a
//!   user with 3 test items can reach 1.0 with 3 hits in 10);
//! - MAP@k = mean over users of (Σ over hit positions i of hits_so_far / (i + 1)) /
//!   min(k, |test_u|);
//! - nDCG@k = mean over users of Σ over hit positions i of (1 / log2(i + 2)) / IDCG, where IDCG
//!   = Σ_{j < min(k, |test_u|)} 1 / log2(j + 2) (binary relevance);
//! - recall@k (implicit has none) = mean over users of hits / |test_u|;
//! - coverage = distinct items recommended to the evaluated users / distinct items in train.

use std::collections::HashSet;

/// Accumulates ranking metrics user by user.
#[derive(Debug, Clone)]
pub struct RankingMetrics {
    k: usize,
    relevant: f64,
    precision_div: f64,
    ap_sum: f64,
    ndcg_sum: f64,
    recall_sum: f64,
    users: usize,
    recommended: HashSet<String>,
}

/// The final values of [`RankingMetrics`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricValues {
    /// implicit's precision@k (see the module docs for its denominator).
    pub precision: f64,
    /// Mean per-user recall@k.
    pub recall: f64,
    /// Mean nDCG@k with binary relevance.
    pub ndcg: f64,
    /// MAP@k with implicit's `min(k, |test_u|)` normaliser.
    pub map: f64,
    /// Distinct recommended items over train items.
    pub coverage: f64,
    /// Users evaluated (those with at least one test item).
    pub users: usize,
}

impl RankingMetrics {
    /// Starts an empty accumulator for cut-off `k`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            relevant: 0.0,
            precision_div: 0.0,
            ap_sum: 0.0,
            ndcg_sum: 0.0,
            recall_sum: 0.0,
            users: 0,
            recommended: HashSet::new(),
        }
    }

    /// Adds one user: `recommended` in rank order (only the first `k` count; repeated items
    /// count once, as a set lookup in implicit would count a repeat twice but a model never
    /// repeats) and the user's held-out items. A user without test items is ignored.
    pub fn add_user<S: AsRef<str>>(&mut self, recommended: &[S], test: &HashSet<&str>) {
        if test.is_empty() || self.k == 0 {
            return;
        }
        let cut = self.k.min(test.len());
        let idcg: f64 = (0..cut).map(discount).sum();
        let mut hits = 0usize;
        let mut ap = 0.0;
        let mut dcg = 0.0;
        let mut seen: HashSet<&str> = HashSet::new();
        for (i, item) in recommended.iter().take(self.k).enumerate() {
            let item = item.as_ref();
            self.recommended.insert(item.to_string());
            if !seen.insert(item) {
                continue;
            }
            if test.contains(item) {
                hits += 1;
                ap += hits as f64 / (i + 1) as f64;
                dcg += discount(i);
            }
        }
        self.relevant += hits as f64;
        self.precision_div += cut as f64;
        self.ap_sum += ap / cut as f64;
        self.ndcg_sum += dcg / idcg;
        self.recall_sum += hits as f64 / test.len() as f64;
        self.users += 1;
    }

    /// Returns the metrics; `train_items` is the number of distinct items in train (the
    /// coverage denominator).
    pub fn finish(&self, train_items: usize) -> MetricValues {
        let per_user = |sum: f64| {
            if self.users == 0 { 0.0 } else { sum / self.users as f64 }
        };
        MetricValues {
            precision: if self.precision_div > 0.0 { self.relevant / self.precision_div } else { 0.0 },
            recall: per_user(self.recall_sum),
            ndcg: per_user(self.ndcg_sum),
            map: per_user(self.ap_sum),
            coverage: if train_items == 0 { 0.0 } else { self.recommended.len() as f64 / train_items as f64 },
            users: self.users,
        }
    }
}

/// The gain of a hit at 0-based rank `i`: 1 / log2(i + 2).
fn discount(i: usize) -> f64 {
    1.0 / ((i + 2) as f64).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_empty_rankings() {
        let test: HashSet<&str> = ["a", "b"].into_iter().collect();
        let mut m = RankingMetrics::new(3);
        m.add_user(&["a", "b", "c"], &test);
        let v = m.finish(3);
        assert_eq!((v.precision, v.recall, v.ndcg, v.map), (1.0, 1.0, 1.0, 1.0));
        let mut m = RankingMetrics::new(3);
        m.add_user::<&str>(&[], &test);
        m.add_user(&["x"], &HashSet::new());
        let v = m.finish(0);
        assert_eq!((v.precision, v.ndcg, v.coverage, v.users), (0.0, 0.0, 0.0, 1));
    }
}
