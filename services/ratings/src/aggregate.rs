//! A product's aggregate rating: integer counts and sums kept incrementally (one record per
//! sku, read-modify-written in the transaction of every change that adds or removes a
//! PUBLISHED review), from which the mean, the Wilson lower bound and the Bayesian average
//! are derived when read. Integers make the incremental record exactly equal to a
//! recomputation from the reviews.

use serde::{Deserialize, Serialize};

/// Prior mean of the Bayesian average, in stars.
pub const PRIOR_MEAN: f64 = 3.0;
/// Weight of the prior, in reviews.
pub const PRIOR_WEIGHT: f64 = 5.0;
/// z of a 95% confidence interval.
const Z: f64 = 1.96;

/// The counts of a product's PUBLISHED reviews.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    pub count: i64,
    /// Sum of the star ratings.
    pub sum: i64,
    /// Reviews with 1, 2, 3, 4, 5 stars.
    pub histogram: [i64; 5],
    pub verified: i64,
}

impl meshwork_common::Record for Aggregate {
    const KIND: &'static str = "rating aggregate";
}

impl Aggregate {
    /// Adds (`sign` 1) or removes (`sign` -1) one review of `rating` stars.
    pub fn apply(&mut self, rating: i32, verified: bool, sign: i64) {
        let Some(slot) = usize::try_from(rating - 1).ok().filter(|i| *i < 5) else { return };
        self.count += sign;
        self.sum += sign * i64::from(rating);
        self.histogram[slot] += sign;
        if verified {
            self.verified += sign;
        }
    }

    /// Returns the mean rating (0 with no reviews).
    pub fn mean(&self) -> f64 {
        if self.count <= 0 { 0.0 } else { self.sum as f64 / self.count as f64 }
    }

    /// Returns the lower bound of the 95% Wilson interval of the share of positive (4-5 star)
    /// reviews (0 with no reviews).
    pub fn wilson_lower_bound(&self) -> f64 {
        if self.count <= 0 {
            return 0.0;
        }
        let n = self.count as f64;
        let p = (self.histogram[3] + self.histogram[4]) as f64 / n;
        let z2 = Z * Z;
        let centre = p + z2 / (2.0 * n);
        let margin = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
        ((centre - margin) / (1.0 + z2 / n)).max(0.0)
    }

    /// Returns the mean shrunk towards [`PRIOR_MEAN`] with the weight of [`PRIOR_WEIGHT`]
    /// reviews.
    pub fn bayesian_average(&self) -> f64 {
        (PRIOR_WEIGHT * PRIOR_MEAN + self.sum as f64) / (PRIOR_WEIGHT + self.count.max(0) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_and_removing_is_exact() {
        let mut a = Aggregate::default();
        a.apply(5, true, 1);
        a.apply(4, false, 1);
        a.apply(1, false, 1);
        a.apply(4, false, -1);
        assert_eq!(a, Aggregate { count: 2, sum: 6, histogram: [1, 0, 0, 0, 1], verified: 1 });
        a.apply(0, false, 1);
        a.apply(6, false, 1);
        assert_eq!(a.count, 2, "out-of-range ratings are ignored");
    }

    #[test]
    fn derived_figures() {
        let empty = Aggregate::default();
        assert_eq!((empty.mean(), empty.wilson_lower_bound(), empty.bayesian_average()), (0.0, 0.0, 3.0));
        let mut few = Aggregate::default();
        few.apply(5, false, 1);
        let mut many = Aggregate::default();
        for _ in 0..90 {
            many.apply(5, false, 1);
        }
        for _ in 0..10 {
            many.apply(1, false, 1);
        }
        // One 5-star review ranks below 90% positive out of 100 ("How Not To Sort By Average").
        assert!(few.mean() > many.mean());
        assert!(few.wilson_lower_bound() < many.wilson_lower_bound());
        assert!((few.wilson_lower_bound() - 0.2065).abs() < 1e-3, "{}", few.wilson_lower_bound());
        assert!(few.bayesian_average() < many.bayesian_average());
        assert!((few.bayesian_average() - 20.0 / 6.0).abs() < 1e-12);
    }
}
