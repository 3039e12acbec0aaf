//! Time-to-full prediction from a bin's fill readings.
//!
//! The model, kept incrementally in the bin's record (O(1) per reading, no history scan):
//! - **Recent rate**: each pair of consecutive readings where the fill did not drop gives a
//!   rate (percent per hour); the model keeps an exponentially weighted moving average of
//!   those rates (weight [`ALPHA`] on the newest), so it follows recent behaviour. A drop
//!   means the bin was emptied (by a pickup or otherwise): the pair gives no rate.
//! - **Day of week**: the same increases are also added up per UTC day of week (an interval
//!   spanning midnight is split in proportion to the hours in each day), with the hours
//!   observed. Once every day of the week has at least [`DOW_MIN_HOURS`] observed hours
//!   (about two weeks of telemetry), the rate on day `d` is `increase[d] / hours[d]`, which
//!   captures weekly patterns (markets, weekends).
//! - **Prediction**: the fill at a later time is the current fill plus the rate integrated
//!   over the days in between (piecewise per day with the day-of-week model), capped at 100;
//!   time-to-full is when that reaches 100.

use serde::{Deserialize, Serialize};

/// Weight of the newest rate in the moving average.
pub const ALPHA: f64 = 0.3;
/// Hours observed on every day of the week before the day-of-week rates are used.
pub const DOW_MIN_HOURS: f64 = 48.0;

const HOUR_MS: f64 = 3_600_000.0;
const DAY_MS: i64 = 86_400_000;

/// UTC day of week of a time (0 = Monday).
pub fn weekday(ms: i64) -> usize {
    // 1970-01-01 was a Thursday.
    (ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize
}

/// The incremental fill model of one bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FillModel {
    /// The last reading the model saw (fill percent and time), or the last emptying.
    pub last_fill: f64,
    pub last_ms: i64,
    /// Moving average of recent rates, percent per hour.
    pub rate: f64,
    /// Rates averaged so far.
    pub samples: u32,
    /// Fill increase observed per day of week, percent.
    pub dow_increase: [f64; 7],
    /// Hours observed per day of week.
    pub dow_hours: [f64; 7],
}

impl FillModel {
    /// Takes a reading newer than every one seen (older ones are ignored).
    pub fn observe(&mut self, fill: f64, at_ms: i64) {
        if self.last_ms == 0 && self.samples == 0 && self.last_fill == 0.0 && at_ms > 0 {
            self.last_fill = fill;
            self.last_ms = at_ms;
            return;
        }
        if at_ms <= self.last_ms {
            return;
        }
        if fill >= self.last_fill {
            let hours = (at_ms - self.last_ms) as f64 / HOUR_MS;
            let increase = fill - self.last_fill;
            let r = increase / hours;
            self.rate = if self.samples == 0 { r } else { ALPHA * r + (1.0 - ALPHA) * self.rate };
            self.samples = self.samples.saturating_add(1);
            // Split the interval over the days it spans.
            let mut t = self.last_ms;
            while t < at_ms {
                let day_end = (t.div_euclid(DAY_MS) + 1) * DAY_MS;
                let seg_end = day_end.min(at_ms);
                let seg_hours = (seg_end - t) as f64 / HOUR_MS;
                let d = weekday(t);
                self.dow_hours[d] += seg_hours;
                self.dow_increase[d] += increase * seg_hours / hours;
                t = seg_end;
            }
        }
        self.last_fill = fill;
        self.last_ms = at_ms;
    }

    /// The bin was emptied at `at_ms`.
    pub fn emptied(&mut self, at_ms: i64) {
        self.last_fill = 0.0;
        self.last_ms = at_ms.max(self.last_ms);
    }

    /// Whether every day of the week has enough history for the day-of-week rates.
    pub fn uses_day_of_week(&self) -> bool {
        self.dow_hours.iter().all(|&h| h >= DOW_MIN_HOURS)
    }

    /// The rate (percent per hour) that applies at `ms`.
    pub fn rate_at(&self, ms: i64) -> f64 {
        if self.uses_day_of_week() {
            let d = weekday(ms);
            (self.dow_increase[d] / self.dow_hours[d]).max(0.0)
        } else {
            self.rate.max(0.0)
        }
    }

    /// Predicted fill at `to_ms` starting from `fill` at `from_ms`, capped at 100.
    pub fn predict(&self, fill: f64, from_ms: i64, to_ms: i64) -> f64 {
        let mut level = fill;
        let mut t = from_ms;
        while t < to_ms && level < 100.0 {
            let seg_end = ((t.div_euclid(DAY_MS) + 1) * DAY_MS).min(to_ms);
            level += self.rate_at(t) * (seg_end - t) as f64 / HOUR_MS;
            t = seg_end;
        }
        level.clamp(0.0, 100.0)
    }

    /// When the bin reaches 100 % starting from `fill` at `from_ms`, looking a year ahead;
    /// `None` when it does not fill within that time.
    pub fn full_time(&self, fill: f64, from_ms: i64) -> Option<i64> {
        if fill >= 100.0 {
            return Some(from_ms);
        }
        let mut level = fill;
        let mut t = from_ms;
        let horizon = from_ms + 366 * DAY_MS;
        while t < horizon {
            let seg_end = (t.div_euclid(DAY_MS) + 1) * DAY_MS;
            let rate = self.rate_at(t);
            let gain = rate * (seg_end - t) as f64 / HOUR_MS;
            if rate > 0.0 && level + gain >= 100.0 {
                return Some(t + ((100.0 - level) / rate * HOUR_MS).ceil() as i64);
            }
            level += gain;
            t = seg_end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    // Monday 2026-01-05 00:00 UTC.
    const MONDAY: i64 = 1_767_571_200_000;

    #[test]
    fn weekday_of_known_dates() {
        assert_eq!(weekday(0), 3); // Thursday
        assert_eq!(weekday(MONDAY), 0);
        assert_eq!(weekday(MONDAY + 6 * 24 * H + 23 * H), 6);
    }

    #[test]
    fn recent_rate_predicts_linear_fill() {
        let mut m = FillModel::default();
        for i in 0..10 {
            m.observe(i as f64 * 5.0, MONDAY + i * 6 * H);
        }
        assert!((m.rate - 5.0 / 6.0).abs() < 1e-9);
        assert!(!m.uses_day_of_week());
        let now = MONDAY + 9 * 6 * H;
        let p = m.predict(45.0, now, now + 12 * H);
        assert!((p - 55.0).abs() < 1e-6, "{p}");
        assert_eq!(m.predict(45.0, now, now + 1_000 * H), 100.0);
        let full = m.full_time(45.0, now).expect("fills");
        assert!((full - (now + 66 * H)).abs() <= 1, "{full}");
    }

    #[test]
    fn a_drop_is_an_emptying_not_a_rate() {
        let mut m = FillModel::default();
        m.observe(10.0, MONDAY);
        m.observe(30.0, MONDAY + 10 * H);
        m.observe(5.0, MONDAY + 11 * H);
        assert!((m.rate - 2.0).abs() < 1e-9);
        assert_eq!(m.samples, 1);
        m.observe(1.0, MONDAY); // older: ignored
        assert_eq!(m.last_fill, 5.0);
        let full = m.full_time(0.0, MONDAY).expect("fills");
        assert!((full - (MONDAY + 50 * H)).abs() <= 1);
        assert_eq!(FillModel::default().full_time(10.0, MONDAY), None);
    }

    #[test]
    fn day_of_week_model_after_two_weeks() {
        // Fills 1 %/h on weekdays and 3 %/h on weekends, readings every 4 hours, emptied
        // whenever it passes 80 %.
        let mut m = FillModel::default();
        let mut fill = 0.0;
        let mut t = MONDAY;
        m.observe(fill, t);
        for _ in 0..(15 * 6) {
            let rate = if weekday(t) >= 5 { 3.0 } else { 1.0 };
            t += 4 * H;
            fill += rate * 4.0;
            m.observe(fill, t);
            if fill > 80.0 {
                fill = 0.0;
                m.emptied(t);
            }
        }
        assert!(m.uses_day_of_week());
        assert!((m.rate_at(MONDAY + 2 * H) - 1.0).abs() < 1e-6);
        assert!((m.rate_at(MONDAY + 5 * 24 * H) - 3.0).abs() < 1e-6);
        // From Friday 12:00 at 0 %: 12 h of Friday (12 %), then 3 %/h: full after 29h20m more.
        let friday_noon = MONDAY + 4 * 24 * H + 12 * H;
        let full = m.full_time(0.0, friday_noon).expect("fills");
        let expected = friday_noon + 12 * H + (88.0 / 3.0 * H as f64).ceil() as i64;
        assert!((full - expected).abs() <= 1, "{full} vs {expected}");
    }
}
