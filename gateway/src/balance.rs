//! Replica selection maths, free of I/O so that it can be property-tested: smooth weighted round
//! robin (nginx), power of two choices (P2C) over a load, the peak-EWMA latency estimate of
//! linkerd2-proxy / tower, a Ketama-style consistent-hash ring, and the small hash and random
//! helpers they share.
//!
//! Every selector takes an `eligible(index)` predicate so that the caller decides which replicas
//! may be chosen (healthy, not ejected, not already tried, not at its concurrency cap).

use std::cell::Cell;
use std::time::Duration;

/// How a pool chooses a replica for each call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Each replica in turn, ignoring weights (the default).
    #[default]
    RoundRobin,
    /// Smooth weighted round robin (nginx): replica `i` gets `weight_i / sum(weights)` of the
    /// calls, interleaved rather than in bursts.
    Weighted,
    /// A uniformly random replica.
    Random,
    /// Power of two choices on the number of calls in flight.
    LeastRequest,
    /// Power of two choices on peak-EWMA latency x (calls in flight + 1), as linkerd2-proxy.
    PeakEwma,
    /// A Ketama ring over the value of the pool's `hash_key` metadata header (session affinity);
    /// round robin for calls without it.
    ConsistentHash,
    /// A Ketama ring over the client's IP address.
    IpHash,
}

impl Policy {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::Weighted => "weighted",
            Policy::Random => "random",
            Policy::LeastRequest => "least_request",
            Policy::PeakEwma => "peak_ewma",
            Policy::ConsistentHash => "consistent_hash",
            Policy::IpHash => "ip_hash",
        }
    }
}

/// 64-bit FNV-1a followed by the splitmix64 finaliser (good spread for short keys).
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// Hash of a client's IP address (its octets), for IP hashing and the rate limit's default key.
pub fn ip_hash(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(ip) => hash64(&ip.octets()),
        std::net::IpAddr::V6(ip) => hash64(&ip.octets()),
    }
}

/// The splitmix64 finaliser.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.finish() | 1
}

/// A fast thread-local pseudo-random number (splitmix64; not for cryptography).
pub fn random_u64() -> u64 {
    RNG.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        mix64(next)
    })
}

/// A pseudo-random number in `0..n` (`n > 0`).
pub fn random_below(n: usize) -> usize {
    // Lemire's multiply-shift; the bias is negligible for replica counts.
    ((u128::from(random_u64()) * n as u128) >> 64) as usize
}

/// A pseudo-random number in `[0, 1)`.
pub fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The first index in round-robin order from `start` that is eligible.
pub fn round_robin(n: usize, start: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    (0..n).map(|i| start.wrapping_add(i) % n).find(|&idx| eligible(idx))
}

/// A random eligible index: a random start, then the next eligible one.
pub fn random(n: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    if n == 0 {
        return None;
    }
    round_robin(n, random_below(n), eligible)
}

/// Power of two choices: two distinct random eligible indices, the one with the lower `load`.
/// `r1` and `r2` are random numbers (passed in so tests are deterministic).
pub fn p2c(n: usize, r1: u64, r2: u64, eligible: impl Fn(usize) -> bool, load: impl Fn(usize) -> f64) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let a = round_robin(n, (r1 % n as u64) as usize, &eligible)?;
    if n == 1 {
        return Some(a);
    }
    // A second index different from `a`: an offset in 1..n from it, then the next eligible.
    let offset = 1 + (r2 % (n as u64 - 1)) as usize;
    let b = (0..n - 1).map(|i| (a + offset + i) % n).find(|&idx| idx != a && eligible(idx));
    match b {
        Some(b) if load(b) < load(a) => Some(b),
        _ => Some(a),
    }
}

/// Smooth weighted round robin (nginx `ngx_http_upstream_get_peer`): every pick adds each
/// eligible replica's weight to its current value, picks the largest, and subtracts the total
/// from the winner. Over `sum(weights)` picks each replica is chosen exactly `weight` times.
#[derive(Debug, Clone, Default)]
pub struct SmoothWrr {
    current: Vec<i64>,
}

impl SmoothWrr {
    /// State for `n` replicas.
    pub fn new(n: usize) -> Self {
        Self { current: vec![0; n] }
    }

    /// Picks an eligible index; `weight(i)` is the replica's effective weight (0 never wins).
    pub fn pick(&mut self, weight: impl Fn(usize) -> u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.current.len() {
            if !eligible(i) {
                continue;
            }
            let w = weight(i).min(i64::MAX as u64 / 1024) as i64;
            if w == 0 {
                continue;
            }
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }
}

/// Points per unit of weight on the consistent-hash ring. Ketama uses 160; more points make
/// the shares more even (relative spread about 1/sqrt(points)) for a slightly larger ring.
pub const RING_POINTS_PER_WEIGHT: u32 = 256;

/// A Ketama-style consistent-hash ring: every replica owns `256 x weight` points, placed by
/// hashing `"<key>-<n>"`; a call goes to the owner of the first point at or after its hash,
/// walking on to the next eligible owner when that one may not be used. Adding one replica to N
/// moves only the keys that now land on its points, about 1/(N+1) of them.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: Vec<(u64, u32)>,
    owners: usize,
}

impl Ring {
    /// Builds the ring; `members` are (stable key, weight), indexed by position.
    pub fn new<K: AsRef<[u8]>>(members: &[(K, u32)]) -> Self {
        let mut points = Vec::new();
        let mut buf = Vec::with_capacity(64);
        for (idx, (key, weight)) in members.iter().enumerate() {
            for n in 0..RING_POINTS_PER_WEIGHT.saturating_mul((*weight).max(1)) {
                buf.clear();
                buf.extend_from_slice(key.as_ref());
                buf.push(b'-');
                buf.extend_from_slice(n.to_string().as_bytes());
                points.push((hash64(&buf), idx as u32));
            }
        }
        points.sort_unstable();
        Self { points, owners: members.len() }
    }

    /// The owner of `hash`: the first eligible owner at or after it on the ring.
    pub fn pick(&self, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(h, _)| *h < hash);
        let mut seen = 0usize;
        let mut rejected: u128 = 0; // owners already rejected (rings of up to 128 owners)
        for i in 0..self.points.len() {
            let owner = self.points[(start + i) % self.points.len()].1 as usize;
            if owner < 128 {
                if rejected & (1 << owner) != 0 {
                    continue;
                }
                if eligible(owner) {
                    return Some(owner);
                }
                rejected |= 1 << owner;
                seen += 1;
                if seen >= self.owners {
                    return None;
                }
            } else if eligible(owner) {
                return Some(owner);
            }
        }
        None
    }
}

/// The peak-EWMA latency estimate of one replica (tower / linkerd2-proxy `PeakEwma`): a new
/// round-trip time above the estimate replaces it at once (peak sensitivity); a lower one is
/// blended in with weight `1 - exp(-elapsed / decay)`. The estimate also decays towards zero
/// while nothing is observed, so an idle slow replica is tried again eventually.
#[derive(Debug, Clone, Copy)]
pub struct PeakEwma {
    /// Estimate in nanoseconds.
    estimate_ns: f64,
    /// When the estimate was last updated, in nanoseconds on the caller's clock.
    stamp_ns: u64,
}

impl PeakEwma {
    /// An estimate starting at `initial`, at time `now_ns`.
    pub fn new(initial: Duration, now_ns: u64) -> Self {
        Self { estimate_ns: initial.as_nanos() as f64, stamp_ns: now_ns }
    }

    /// Folds in a round-trip time observed at `now_ns`.
    pub fn observe(&mut self, rtt: Duration, now_ns: u64, decay: Duration) {
        let rtt_ns = rtt.as_nanos() as f64;
        if rtt_ns > self.estimate_ns {
            self.estimate_ns = rtt_ns;
        } else {
            let w = self.weight(now_ns, decay);
            self.estimate_ns = self.estimate_ns * w + rtt_ns * (1.0 - w);
        }
        self.stamp_ns = self.stamp_ns.max(now_ns);
    }

    /// The estimate at `now_ns`, decayed towards zero for the time since the last update.
    pub fn estimate(&self, now_ns: u64, decay: Duration) -> f64 {
        self.estimate_ns * self.weight(now_ns, decay)
    }

    fn weight(&self, now_ns: u64, decay: Duration) -> f64 {
        let elapsed = now_ns.saturating_sub(self.stamp_ns) as f64;
        let tau = decay.as_nanos().max(1) as f64;
        (-elapsed / tau).exp()
    }

    /// The load P2C compares: estimate x (calls in flight + 1).
    pub fn load(&self, now_ns: u64, decay: Duration, inflight: usize) -> f64 {
        self.estimate(now_ns, decay) * (inflight as f64 + 1.0)
    }
}

/// The share of its weight a replica gets `elapsed` into a slow-start `window`: a linear ramp
/// from 10% to 100%.
pub fn slow_start_factor(elapsed: Duration, window: Duration) -> f64 {
    if window.is_zero() || elapsed >= window {
        return 1.0;
    }
    (0.1 + 0.9 * elapsed.as_secs_f64() / window.as_secs_f64()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    #[test]
    fn smooth_wrr_interleaves() {
        let weights = [5u64, 1, 1];
        let mut wrr = SmoothWrr::new(3);
        let picks: Vec<_> = (0..7).map(|_| wrr.pick(|i| weights[i], |_| true).unwrap()).collect();
        // nginx's documented sequence for 5/1/1: a a b a c a a
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn smooth_wrr_skips_ineligible_and_zero() {
        let mut wrr = SmoothWrr::new(3);
        for _ in 0..10 {
            assert_eq!(wrr.pick(|i| [3, 0, 2][i], |i| i != 2), Some(0));
        }
        assert_eq!(wrr.pick(|_| 1, |_| false), None);
    }

    /// Weights honoured within 2% over 100,000 picks (shares, for any weights 1..=100).
    #[test]
    fn prop_weighted_shares_within_two_percent() {
        fn prop(weights: Vec<u8>) -> TestResult {
            let weights: Vec<u64> = weights.into_iter().take(12).map(|w| u64::from(w % 100) + 1).collect();
            if weights.is_empty() {
                return TestResult::discard();
            }
            let mut wrr = SmoothWrr::new(weights.len());
            let mut counts = vec![0u64; weights.len()];
            const PICKS: u64 = 100_000;
            for _ in 0..PICKS {
                counts[wrr.pick(|i| weights[i], |_| true).unwrap()] += 1;
            }
            let total: u64 = weights.iter().sum();
            for (w, c) in weights.iter().zip(&counts) {
                let expected = PICKS as f64 * *w as f64 / total as f64;
                if (*c as f64 - expected).abs() > 0.02 * expected.max(1.0) + 1.0 {
                    return TestResult::error(format!("weights {weights:?} counts {counts:?}"));
                }
            }
            TestResult::passed()
        }
        QuickCheck::new().tests(30).quickcheck(prop as fn(Vec<u8>) -> TestResult);
    }

    /// When one replica joins (N replicas after), at most about 1/N of the keys move (1.2/N:
    /// the ring's shares spread by about 1/sqrt(256) = 6%), and every key that moves goes to
    /// the new replica. A fixed grid rather than random inputs, so that the test cannot flake.
    #[test]
    fn ring_join_moves_about_one_nth() {
        for salt in [0u32, 7, 1234, 99_999] {
            for n in 2..=16usize {
                let keys = |count: usize| -> Vec<(String, u32)> {
                    (0..count).map(|i| (format!("10.{}.0.{i}:{}", salt % 251, 50_000 + salt % 1000), 1)).collect()
                };
                let before = Ring::new(&keys(n));
                let after = Ring::new(&keys(n + 1));
                const KEYS: u64 = 20_000;
                let mut moved = 0u64;
                for k in 0..KEYS {
                    let h = hash64(&k.to_le_bytes());
                    let (a, b) = (before.pick(h, |_| true).unwrap(), after.pick(h, |_| true).unwrap());
                    if a != b {
                        assert_eq!(b, n, "key moved between old replicas {a} -> {b}");
                        moved += 1;
                    }
                }
                let share = moved as f64 / KEYS as f64;
                let bound = 1.2 / (n as f64 + 1.0);
                assert!(share <= bound, "salt {salt}, {n} -> {}: {share:.4} of keys moved, bound {bound:.4}", n + 1);
                assert!(share >= 0.5 / (n as f64 + 1.0), "the new replica takes its share: {share:.4}");
            }
        }
    }

    #[test]
    fn ring_walks_past_ineligible_owners() {
        let ring = Ring::new(&[("a", 1), ("b", 1), ("c", 1)]);
        for k in 0..1000u64 {
            let h = hash64(&k.to_le_bytes());
            let first = ring.pick(h, |_| true).unwrap();
            let second = ring.pick(h, |i| i != first).unwrap();
            assert_ne!(first, second);
            // Stable: the same key maps to the same owner.
            assert_eq!(ring.pick(h, |_| true), Some(first));
        }
        assert_eq!(ring.pick(1, |_| false), None);
        assert_eq!(Ring::new::<&str>(&[]).pick(1, |_| true), None);
    }

    /// P2C never picks an ineligible index and never picks the more loaded of the two sampled.
    #[test]
    fn prop_p2c_eligible_and_lower_load() {
        fn prop(loads: Vec<u16>, mask: u32, r1: u64, r2: u64) -> TestResult {
            let n = loads.len().min(20);
            if n == 0 {
                return TestResult::discard();
            }
            let eligible = |i: usize| mask & (1 << i) != 0;
            let picked = p2c(n, r1, r2, eligible, |i| f64::from(loads[i]));
            match picked {
                None => TestResult::from_bool((0..n).all(|i| !eligible(i))),
                Some(i) => TestResult::from_bool(eligible(i)),
            }
        }
        QuickCheck::new().tests(500).quickcheck(prop as fn(Vec<u16>, u32, u64, u64) -> TestResult);
    }

    #[test]
    fn p2c_prefers_lower_load() {
        // With two replicas both are always sampled: the lighter one wins.
        for r in 0..50u64 {
            assert_eq!(p2c(2, r, r * 7, |_| true, |i| [10.0, 1.0][i]), Some(1));
        }
        // Over many random samples the most loaded of 4 is chosen least.
        let loads = [1.0, 2.0, 3.0, 100.0];
        let mut counts = [0; 4];
        for _ in 0..10_000 {
            counts[p2c(4, random_u64(), random_u64(), |_| true, |i| loads[i]).unwrap()] += 1;
        }
        assert_eq!(counts[3], 0, "{counts:?}");
        assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let decay = Duration::from_secs(10);
        let mut e = PeakEwma::new(Duration::from_millis(1), 0);
        e.observe(Duration::from_millis(100), 1_000, decay);
        assert!((e.estimate(1_000, decay) - 100e6).abs() < 1e3, "peak taken at once");
        // A fast answer one decay period later pulls it down by 1/e of the way.
        let later = 10_000_000_000;
        e.observe(Duration::from_millis(1), later, decay);
        let est = e.estimate(later, decay) / 1e6;
        assert!((est - (100.0 / std::f64::consts::E + 1.0 * (1.0 - 1.0 / std::f64::consts::E))).abs() < 0.5, "{est}");
        assert!(e.load(later, decay, 3) > e.load(later, decay, 0) * 3.9);
        // Idle, it decays towards zero.
        assert!(e.estimate(later + 300_000_000_000, decay) < 1.0);
    }

    #[test]
    fn slow_start_ramps() {
        let w = Duration::from_secs(10);
        assert_eq!(slow_start_factor(Duration::ZERO, Duration::ZERO), 1.0);
        assert!((slow_start_factor(Duration::ZERO, w) - 0.1).abs() < 1e-9);
        assert!((slow_start_factor(Duration::from_secs(5), w) - 0.55).abs() < 1e-9);
        assert_eq!(slow_start_factor(Duration::from_secs(11), w), 1.0);
    }

    #[test]
    fn random_helpers_stay_in_range() {
        for n in 1..50 {
            assert!(random_below(n) < n);
        }
        let u = random_unit();
        assert!((0.0..1.0).contains(&u));
        assert_eq!(random(3, |i| i == 2), Some(2));
        assert_eq!(random(0, |_| true), None);
    }
}
