//! What each worker records, merged once at the end: per call, an HdrHistogram of the
//! latencies of successful calls (ns, 3 significant digits), the sum of all latencies, counts
//! per gRPC status and per error text; per run, successes and errors in 100 ms slices for the
//! throughput-over-time chart.

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::Error;
use crate::status::{self, CODES};

/// Width of one slice of the timeline.
pub const TICK: Duration = Duration::from_millis(100);

/// Latencies and statuses of one call (one `--call`, or one entry of a scenario's mix).
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of calls that returned OK, in nanoseconds.
    pub ok: Histogram<u64>,
    /// Calls recorded, whatever their status.
    pub count: u64,
    /// Sum of the latencies of every call, in nanoseconds.
    pub latency_sum_ns: u128,
    /// Calls per gRPC status code.
    pub codes: [u64; CODES],
    /// Calls per error text.
    pub errors: HashMap<String, u64>,
}

impl OpStats {
    /// Returns empty stats: 1 µs to 100 s at 3 significant digits, growing when a call takes
    /// longer.
    pub fn new() -> Result<OpStats, Error> {
        let mut ok =
            Histogram::new_with_bounds(1_000, 100_000_000_000, 3).map_err(|e| Error::Histogram(e.to_string()))?;
        ok.auto(true);
        Ok(OpStats { ok, count: 0, latency_sum_ns: 0, codes: [0; CODES], errors: HashMap::new() })
    }

    /// Returns empty stats with the same histogram bounds as `self`.
    pub fn empty_like(&self) -> OpStats {
        let mut ok = Histogram::new_from(&self.ok);
        ok.auto(true);
        OpStats { ok, count: 0, latency_sum_ns: 0, codes: [0; CODES], errors: HashMap::new() }
    }
    /// Records one call.
    pub fn record(&mut self, latency: Duration, code: u8, message: &str) {
        let ns = latency.as_nanos();
        self.count += 1;
        self.latency_sum_ns += ns;
        self.codes[usize::from(code).min(CODES - 1)] += 1;
        if code == status::OK {
            self.ok.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
        } else {
            *self.errors.entry(status::error_text(code, message)).or_default() += 1;
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.ok.add(&other.ok);
        self.count += other.count;
        self.latency_sum_ns += other.latency_sum_ns;
        for (a, b) in self.codes.iter_mut().zip(other.codes) {
            *a += b;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// Calls that did not return OK.
    pub fn error_count(&self) -> u64 {
        self.count - self.codes[0]
    }
}

/// Everything one worker (or, merged, the whole run) recorded.
#[derive(Debug, Clone)]
pub struct Stats {
    /// One entry per call of the run.
    pub ops: Vec<OpStats>,
    /// Per 100 ms slice since the start: (successes, errors).
    pub timeline: Vec<(u64, u64)>,
}

impl Stats {
    /// Returns empty stats for `ops` calls.
    pub fn new(ops: usize) -> Result<Stats, Error> {
        Ok(Stats { ops: (0..ops).map(|_| OpStats::new()).collect::<Result<_, _>>()?, timeline: Vec::new() })
    }

    /// Records one call of op `op` that ended `at` after the start.
    pub fn record(&mut self, op: usize, latency: Duration, code: u8, message: &str, at: Duration) {
        if let Some(s) = self.ops.get_mut(op) {
            s.record(latency, code, message);
        }
        let slot = (at.as_nanos() / TICK.as_nanos()) as usize;
        if self.timeline.len() <= slot {
            self.timeline.resize(slot + 1, (0, 0));
        }
        if code == status::OK {
            self.timeline[slot].0 += 1;
        } else {
            self.timeline[slot].1 += 1;
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.merge(b);
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), (0, 0));
        }
        for (a, b) in self.timeline.iter_mut().zip(&other.timeline) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }

    /// All calls together.
    pub fn total(&self) -> Result<OpStats, Error> {
        let mut all = OpStats::new()?;
        for op in &self.ops {
            all.merge(op);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_merges() {
        let mut a = Stats::new(2).unwrap();
        a.record(0, Duration::from_millis(1), 0, "", Duration::from_millis(50));
        a.record(1, Duration::from_millis(3), 5, "nope", Duration::from_millis(150));
        let mut b = Stats::new(2).unwrap();
        b.record(0, Duration::from_millis(2), 0, "", Duration::from_millis(250));
        a.merge(&b);
        assert_eq!(a.ops[0].count, 2);
        assert_eq!(a.ops[0].ok.len(), 2);
        assert_eq!(a.ops[1].codes[5], 1);
        assert_eq!(a.ops[1].errors["rpc error: code = NotFound desc = nope"], 1);
        assert_eq!(a.timeline, vec![(1, 0), (0, 1), (1, 0)]);
        let total = a.total().unwrap();
        assert_eq!(total.count, 3);
        assert_eq!(total.error_count(), 1);
    }
}
