//! Per-client rate limits and gRPC message size caps.
//!
//! [`RateLimiter`] keeps one token bucket per client key (a hash of a metadata value or of the
//! client IP) in sharded maps: `requests_per_second` tokens flow in per second up to `burst`, a
//! call takes one, an empty bucket means RESOURCE_EXHAUSTED; the time is the monotonic time of
//! the limiter's [`Clock`] (the system clock unless a test gives it a `ManualClock`). [`MessageMeter`] follows the gRPC
//! length-prefixed framing across body chunks and reports the first message above the cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use meshwork_clock::{Clock, SystemClock};

/// Shards of the bucket map (a power of two).
const SHARDS: usize = 16;
/// Buckets per shard before idle, full buckets are dropped.
const SHARD_SOFT_CAP: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    stamp_ns: u64,
}

/// Token buckets per client key.
#[derive(Debug)]
pub struct RateLimiter {
    rate_per_ns: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<u64, Bucket>>>,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    /// `per_second` tokens per second per client, at most `burst` saved up, on the system clock.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            rate_per_ns: f64::from(per_second) / 1e9,
            burst: f64::from(burst.max(1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same limiter, reading the time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Takes a token for client `key` now; false when the bucket is empty.
    pub fn try_acquire(&self, key: u64) -> bool {
        self.try_acquire_at(key, self.clock.monotonic_ns())
    }

    /// Takes a token for client `key` at time `now_ns` (the clock's monotonic nanoseconds);
    /// false when the bucket is empty.
    pub fn try_acquire_at(&self, key: u64, now_ns: u64) -> bool {
        let shard = &self.shards[(key as usize) & (SHARDS - 1)];
        let mut map = match shard.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= SHARD_SOFT_CAP && !map.contains_key(&key) {
            let (rate, burst) = (self.rate_per_ns, self.burst);
            map.retain(|_, b| b.tokens + now_ns.saturating_sub(b.stamp_ns) as f64 * rate < burst);
        }
        let bucket = map.entry(key).or_insert(Bucket { tokens: self.burst, stamp_ns: now_ns });
        let elapsed = now_ns.saturating_sub(bucket.stamp_ns) as f64;
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_ns).min(self.burst);
        bucket.stamp_ns = bucket.stamp_ns.max(now_ns);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub use meshwork_h2relay::MessageMeter;

#[cfg(test)]
mod tests {
    use super::*;
    use meshwork_clock::ManualClock;
    use quickcheck::{QuickCheck, TestResult};

    #[test]
    fn bucket_refills_on_the_limiters_clock() {
        let clock = ManualClock::new(0);
        let limiter = RateLimiter::new(10, 5).with_clock(Arc::new(clock.clone()));
        let take = |key| (0..100).filter(|_| limiter.try_acquire(key)).count();
        assert_eq!(take(1), 5, "the burst");
        assert_eq!(take(1), 0, "no time passed: nothing refilled");
        clock.advance(100);
        assert_eq!(take(1), 1, "100 ms at 10/s");
        clock.advance(250);
        assert_eq!(take(1), 2, "250 ms: two and a half tokens");
        clock.advance(50);
        assert_eq!(take(1), 1, "the half token saved, plus half of one");
        clock.advance(60_000);
        assert_eq!(take(1), 5, "at most the burst saved up");
        assert_eq!(take(2), 5, "another client has its own bucket");
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let limiter = RateLimiter::new(10, 5);
        let t0 = 1_000_000_000;
        assert_eq!((0..10).filter(|_| limiter.try_acquire_at(1, t0)).count(), 5, "burst");
        // Another client has its own bucket.
        assert!(limiter.try_acquire_at(2, t0));
        // 1 s later: 10 more tokens, capped at the burst of 5.
        assert_eq!((0..10).filter(|_| limiter.try_acquire_at(1, t0 + 1_000_000_000)).count(), 5);
        // Steady state: 100 ms gives one token.
        let mut allowed = 0;
        for step in 1..=100u64 {
            if limiter.try_acquire_at(1, t0 + 1_000_000_000 + step * 100_000_000) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 100);
    }

    #[test]
    fn rate_over_time_is_exact() {
        // Offered 1000 calls/s for 10 s against 100/s: 100/s plus the initial burst get through.
        let limiter = RateLimiter::new(100, 100);
        let allowed = (0..10_000u64).filter(|i| limiter.try_acquire_at(7, i * 1_000_000)).count();
        assert!((1090..=1101).contains(&allowed), "{allowed}");
    }

    #[test]
    fn many_clients_are_bounded() {
        let limiter = RateLimiter::new(1000, 1);
        for key in 0..100_000u64 {
            limiter.try_acquire_at(key, key * 10_000_000);
        }
        let total: usize = limiter.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * (SHARD_SOFT_CAP + 1), "{total}");
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&(len as u32).to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn meter_finds_large_message_across_chunks() {
        let mut body = frame(10);
        body.extend(frame(3));
        body.extend(frame(100));
        for split in 0..body.len() {
            let mut meter = MessageMeter::default();
            let (a, b) = body.split_at(split);
            let result = meter.feed(a, 50).and_then(|_| meter.feed(b, 50));
            assert_eq!(result, Err(100), "split at {split}");
            let mut meter = MessageMeter::default();
            assert_eq!(meter.feed(a, 100).and_then(|_| meter.feed(b, 100)), Ok(()));
        }
    }

    /// Any chunking of well-formed messages all below the cap passes.
    #[test]
    fn prop_meter_chunking_is_irrelevant() {
        fn prop(lens: Vec<u8>, cuts: Vec<u16>) -> TestResult {
            let body: Vec<u8> = lens.iter().flat_map(|l| frame(usize::from(*l))).collect();
            let mut meter = MessageMeter::default();
            let mut rest = &body[..];
            for cut in cuts {
                let at = usize::from(cut).min(rest.len());
                let (a, b) = rest.split_at(at);
                if meter.feed(a, 255).is_err() {
                    return TestResult::failed();
                }
                rest = b;
            }
            TestResult::from_bool(meter.feed(rest, 255).is_ok() && meter.feed(&frame(256), 255) == Err(256))
        }
        QuickCheck::new().tests(300).quickcheck(prop as fn(Vec<u8>, Vec<u16>) -> TestResult);
    }
}
