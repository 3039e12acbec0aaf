//! Load schedules of ghz (`--load-schedule const|step|line`): each maps the number of a
//! request to the moment it is meant to be sent. Workers take request numbers in order and
//! measure latency from that moment when they are late, so a slow server shows up as latency
//! instead of as fewer requests (no coordinated omission).

use std::time::Duration;

/// A request rate over time.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `rps` requests per second throughout.
    Const {
        /// Requests per second.
        rps: f64,
    },
    /// `start` rps, changed by `step` every `step_duration`, held at `end` (when non-zero) or
    /// after `max_duration`.
    Step { start: f64, step: f64, end: f64, step_duration: Duration, max_duration: Option<Duration> },
    /// `start` rps, changed by `slope` rps every second, held at `end` (when non-zero) or
    /// after `max_duration`.
    Line { start: f64, slope: f64, end: f64, max_duration: Option<Duration> },
}

fn clamp_to_end(rate: f64, step: f64, end: f64) -> (f64, bool) {
    if end > 0.0 && ((step > 0.0 && rate >= end) || (step < 0.0 && rate <= end)) { (end, true) } else { (rate, false) }
}

impl Schedule {
    /// Returns the rate at `t` after the start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        match *self {
            Schedule::Const { rps } => rps,
            Schedule::Step { start, step, end, step_duration, max_duration } => {
                let t = max_duration.map_or(t, |m| t.min(m));
                let stage = (t.as_secs_f64() / step_duration.as_secs_f64().max(1e-9)).floor();
                clamp_to_end(start + stage * step, step, end).0.max(0.0)
            }
            Schedule::Line { start, slope, end, max_duration } => {
                let t = max_duration.map_or(t, |m| t.min(m)).as_secs_f64();
                clamp_to_end(start + slope * t, slope, end).0.max(0.0)
            }
        }
    }

    /// Returns when request `k` (from 0) is meant to be sent, after the start; `None` when the
    /// rate falls to zero before it.
    pub fn offset(&self, k: u64) -> Option<Duration> {
        let k = k as f64;
        let secs = match *self {
            Schedule::Const { rps } => (rps > 0.0).then(|| k / rps)?,
            Schedule::Step { start, step, end, step_duration, max_duration } => {
                let len = step_duration.as_secs_f64().max(1e-6);
                let mut remaining = k;
                let mut stage = 0u64;
                loop {
                    let begins = stage as f64 * len;
                    let (rate, at_end) = clamp_to_end(start + stage as f64 * step, step, end);
                    if rate <= 0.0 {
                        return None;
                    }
                    let held = at_end || step == 0.0 || max_duration.is_some_and(|m| begins + len >= m.as_secs_f64());
                    if held {
                        // The rate of this stage applies from here on.
                        break begins + remaining / rate;
                    }
                    let count = rate * len;
                    if remaining < count {
                        break begins + remaining / rate;
                    }
                    remaining -= count;
                    stage += 1;
                }
            }
            Schedule::Line { start, slope, end, max_duration } => {
                // Time at which the rate stops changing.
                let mut hold = f64::INFINITY;
                if slope != 0.0 && end > 0.0 && (end - start) / slope > 0.0 {
                    hold = (end - start) / slope;
                }
                if slope < 0.0 {
                    hold = hold.min(start / -slope);
                }
                if let Some(m) = max_duration {
                    hold = hold.min(m.as_secs_f64());
                }
                let count_at = |t: f64| start * t + slope * t * t / 2.0;
                if hold.is_finite() && k >= count_at(hold) {
                    let rate = (start + slope * hold).max(0.0);
                    if rate <= 0.0 {
                        return None;
                    }
                    hold + (k - count_at(hold)) / rate
                } else if slope == 0.0 {
                    if start <= 0.0 {
                        return None;
                    }
                    k / start
                } else {
                    let disc = start * start + 2.0 * slope * k;
                    if disc < 0.0 {
                        return None;
                    }
                    (-start + disc.sqrt()) / slope
                }
            }
        };
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &Schedule, k: u64) -> f64 {
        s.offset(k).unwrap().as_secs_f64()
    }

    #[test]
    fn const_rate_spaces_requests_evenly() {
        let s = Schedule::Const { rps: 100.0 };
        assert_eq!(secs(&s, 0), 0.0);
        assert!((secs(&s, 100) - 1.0).abs() < 1e-9);
        assert!(Schedule::Const { rps: 0.0 }.offset(1).is_none());
    }

    #[test]
    fn step_adds_rate_per_stage_and_holds_at_end() {
        // 10 rps for 1 s, 20 rps for 1 s, then 30 held.
        let s = Schedule::Step {
            start: 10.0,
            step: 10.0,
            end: 30.0,
            step_duration: Duration::from_secs(1),
            max_duration: None,
        };
        assert!((secs(&s, 10) - 1.0).abs() < 1e-9);
        assert!((secs(&s, 30) - 2.0).abs() < 1e-9);
        assert!((secs(&s, 60) - 3.0).abs() < 1e-9);
        assert!((secs(&s, 90) - 4.0).abs() < 1e-9);
        assert_eq!(s.rate_at(Duration::from_millis(1500)), 20.0);
        assert_eq!(s.rate_at(Duration::from_secs(100)), 30.0);
        // Decreasing to zero ends the schedule.
        let down = Schedule::Step {
            start: 20.0,
            step: -10.0,
            end: 0.0,
            step_duration: Duration::from_secs(1),
            max_duration: None,
        };
        assert!((secs(&down, 25) - 1.5).abs() < 1e-9);
        assert!(down.offset(30).is_none());
    }

    #[test]
    fn line_grows_linearly() {
        // rate = 10 + 10 t: N(t) = 10 t + 5 t^2; N(1) = 15, N(2) = 40; held at 30 from t = 2.
        let s = Schedule::Line { start: 10.0, slope: 10.0, end: 30.0, max_duration: None };
        assert!((secs(&s, 15) - 1.0).abs() < 1e-9);
        assert!((secs(&s, 40) - 2.0).abs() < 1e-9);
        assert!((secs(&s, 70) - 3.0).abs() < 1e-9);
        let capped = Schedule::Line { start: 10.0, slope: 10.0, end: 0.0, max_duration: Some(Duration::from_secs(1)) };
        assert!((secs(&capped, 35) - 2.0).abs() < 1e-9);
    }
}
