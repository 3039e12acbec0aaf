//! Pools of replicas and their live state: health from the active checker, passive outlier
//! ejection with exponential backoff and a cap on the ejected share, slow start, calls in flight
//! (with an optional per-replica cap), the peak-EWMA latency estimate, and the pool's retry
//! budget. The membership is an immutable [`Members`] snapshot behind an `ArcSwap`, so the
//! registry can replace it while calls hold the snapshot they started with.
//!
//! Every time-based decision (ejection and its backoff, slow start, the peak-EWMA decay, the
//! retry budget's refill) reads the monotonic time of the pool's [`Clock`] (the system clock
//! unless a test gives it a `ManualClock`), as nanoseconds in atomics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use meshwork_clock::Clock;

use crate::balance::{self, PeakEwma, Policy, Ring, SmoothWrr};
use crate::tls::UpstreamTls;

/// Outlier-ejection settings of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Consecutive failures (connect failures or UNAVAILABLE) that eject a replica; 0 disables.
    pub consecutive_failures: u32,
    /// First ejection time; doubled for every further ejection.
    pub base_ejection: Duration,
    /// Longest ejection time.
    pub max_ejection: Duration,
    /// At most this share (percent) of the pool is ejected at once.
    pub max_ejection_percent: u32,
}

/// How a pool balances and protects its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Selection policy.
    pub policy: Policy,
    /// Metadata header hashed by `consistent_hash` (lower case).
    pub hash_key: Option<http::HeaderName>,
    /// Calls in flight per replica beyond which it is skipped; 0 means no cap.
    pub max_inflight_per_replica: usize,
    /// A replica that returns gets a linearly growing share of calls over this window.
    pub slow_start: Duration,
    /// Passive outlier ejection.
    pub outlier: OutlierSettings,
    /// Share of calls (percent) that may be retried, on top of `retry_min_per_second`.
    pub retry_budget_percent: u32,
    /// Retries per second always allowed.
    pub retry_min_per_second: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            policy: Policy::RoundRobin,
            hash_key: None,
            max_inflight_per_replica: 0,
            slow_start: Duration::ZERO,
            outlier: OutlierSettings {
                consecutive_failures: 5,
                base_ejection: Duration::from_secs(5),
                max_ejection: Duration::from_secs(300),
                max_ejection_percent: 50,
            },
            retry_budget_percent: 20,
            retry_min_per_second: 10,
        }
    }
}

/// The decay period of peak-EWMA estimates (linkerd2-proxy's default).
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// The estimate of a replica that has not answered yet.
const EWMA_DEFAULT_RTT: Duration = Duration::from_millis(1);

/// One replica and its live state.
#[derive(Debug)]
pub struct Replica {
    addr: SocketAddr,
    weight: u32,
    inflight: AtomicUsize,
    /// Verdict of the active health checker (starts healthy).
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    /// Ejected until this time (the clock's monotonic ns); 0 when never ejected.
    ejected_until_ns: AtomicU64,
    /// When the replica (re)joined, for slow start; 0 for replicas present at start.
    ready_since_ns: AtomicU64,
    ewma: Mutex<PeakEwma>,
    /// Calls sent to this replica (attempts).
    pub(crate) requests: AtomicU64,
    /// The pool's clock.
    clock: Arc<dyn Clock>,
}

impl Replica {
    /// A replica at `addr` with `weight`, on `clock`; `joined_now` starts its slow start now.
    pub fn new(addr: SocketAddr, weight: u32, joined_now: bool, clock: Arc<dyn Clock>) -> Self {
        let now = clock.monotonic_ns();
        Self {
            addr,
            weight: weight.max(1),
            inflight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ns: AtomicU64::new(0),
            ready_since_ns: AtomicU64::new(if joined_now { now.max(1) } else { 0 }),
            ewma: Mutex::new(PeakEwma::new(EWMA_DEFAULT_RTT, now)),
            requests: AtomicU64::new(0),
            clock,
        }
    }

    /// The replica's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configured weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Calls in flight right now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// The active health checker's verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether passive outlier detection has the replica ejected at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until_ns.load(Ordering::Relaxed) > now
    }

    /// Whether passive outlier detection has the replica ejected now (on its pool's clock).
    pub fn is_ejected_now(&self) -> bool {
        self.is_ejected(self.clock.monotonic_ns())
    }

    /// Records the active checker's verdict; returns true when it changed. A replica that
    /// becomes healthy again starts its slow start and is no longer ejected (like Envoy's
    /// `successful_active_health_check_uneject_host`, but only after a failed check: a replica
    /// ejected for UNAVAILABLE answers while its checks pass stays out for its ejection time).
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if healthy && !was {
            self.ejected_until_ns.store(0, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.ready_since_ns.store(self.clock.monotonic_ns().max(1), Ordering::Relaxed);
        }
        was != healthy
    }

    /// The slow-start share of this replica's weight at `now` (1.0 when not ramping).
    pub fn slow_start_factor(&self, now: u64, window: Duration) -> f64 {
        let since = self.ready_since_ns.load(Ordering::Relaxed);
        if since == 0 || window.is_zero() {
            return 1.0;
        }
        balance::slow_start_factor(Duration::from_nanos(now.saturating_sub(since)), window)
    }

    /// Peak-EWMA load at `now`.
    pub fn ewma_load(&self, now: u64) -> f64 {
        let estimate = match self.ewma.lock() {
            Ok(e) => *e,
            Err(poisoned) => *poisoned.into_inner(),
        };
        estimate.load(now, EWMA_DECAY, self.inflight())
    }

    /// The current latency estimate in seconds.
    pub fn ewma_seconds(&self) -> f64 {
        let estimate = match self.ewma.lock() {
            Ok(e) => *e,
            Err(poisoned) => *poisoned.into_inner(),
        };
        estimate.estimate(self.clock.monotonic_ns(), EWMA_DECAY) / 1e9
    }

    /// Folds an observed time to response headers into the latency estimate.
    pub fn observe_latency(&self, rtt: Duration) {
        let now = self.clock.monotonic_ns();
        match self.ewma.lock() {
            Ok(mut e) => e.observe(rtt, now, EWMA_DECAY),
            Err(poisoned) => poisoned.into_inner().observe(rtt, now, EWMA_DECAY),
        }
    }

    /// Takes one in-flight slot, unless `cap` (0 = none) is reached.
    fn try_acquire(self: &Arc<Self>, cap: usize) -> Option<InflightSlot> {
        let before = self.inflight.fetch_add(1, Ordering::AcqRel);
        if cap != 0 && before >= cap {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(InflightSlot(self.clone()))
    }
}

/// A call in flight on a replica; the count drops with the slot.
#[derive(Debug)]
pub struct InflightSlot(Arc<Replica>);

impl InflightSlot {
    /// The replica.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.0
    }
}

impl Drop for InflightSlot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An immutable membership snapshot of a pool.
#[derive(Debug)]
pub struct Members {
    replicas: Vec<Arc<Replica>>,
    ring: Ring,
    wrr: Mutex<SmoothWrr>,
}

impl Members {
    fn new(replicas: Vec<Arc<Replica>>, policy: Policy) -> Self {
        let ring = if matches!(policy, Policy::ConsistentHash | Policy::IpHash) {
            let keys: Vec<(String, u32)> = replicas.iter().map(|r| (r.addr.to_string(), r.weight)).collect();
            Ring::new(&keys)
        } else {
            Ring::default()
        };
        let wrr = Mutex::new(SmoothWrr::new(replicas.len()));
        Self { replicas, ring, wrr }
    }

    /// The replicas, in configuration (or registry) order.
    pub fn replicas(&self) -> &[Arc<Replica>] {
        &self.replicas
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether there is no replica.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }
}

/// Why no replica could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    /// Every replica was tried already (or the pool is empty).
    NoneLeft,
    /// Every remaining replica is at its concurrency cap.
    AllBusy,
}

/// What a call brings to replica selection.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickInput<'a> {
    /// Hash of the affinity key (metadata value or client IP), for the hashing policies.
    pub hash: Option<u64>,
    /// Indices (into the snapshot) already tried by this call.
    pub exclude: &'a [usize],
}

/// A token bucket of retries: every retryable call (a method marked idempotent) deposits
/// `percent / 100` of a retry, time deposits
/// `min_per_second`, a retry withdraws one (linkerd / Finagle retry budgets).
#[derive(Debug)]
pub struct RetryBudget {
    /// Balance in thousandths of a retry.
    milli: AtomicI64,
    last_refill_ns: AtomicU64,
    deposit_milli: i64,
    min_per_second: i64,
    cap_milli: i64,
    clock: Arc<dyn Clock>,
}

impl RetryBudget {
    /// A budget of `percent`% of calls plus `min_per_second` on `clock`; starts with one
    /// second's floor.
    pub fn new(percent: u32, min_per_second: u32, clock: Arc<dyn Clock>) -> Self {
        let min = i64::from(min_per_second);
        Self {
            milli: AtomicI64::new(min * 1000),
            last_refill_ns: AtomicU64::new(clock.monotonic_ns()),
            deposit_milli: i64::from(percent) * 10,
            min_per_second: min,
            // At most 10 s worth of floor plus 1000 calls' deposits can be saved up.
            cap_milli: (min * 10 + i64::from(percent) * 10) * 1000,
            clock,
        }
    }

    /// Records one call.
    pub fn deposit(&self) {
        if self.deposit_milli > 0 && self.milli.load(Ordering::Relaxed) < self.cap_milli {
            self.milli.fetch_add(self.deposit_milli, Ordering::Relaxed);
        }
    }

    /// Takes one retry if the budget allows it.
    pub fn try_withdraw(&self) -> bool {
        self.refill(self.clock.monotonic_ns());
        let mut current = self.milli.load(Ordering::Relaxed);
        loop {
            if current < 1000 {
                return false;
            }
            match self.milli.compare_exchange_weak(current, current - 1000, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn refill(&self, now: u64) {
        if self.min_per_second == 0 {
            return;
        }
        let last = self.last_refill_ns.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(last);
        // Refill in steps of at least 10 ms so that the arithmetic stays exact enough.
        if elapsed < 10_000_000 {
            return;
        }
        if self.last_refill_ns.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            let add = (elapsed as i128 * i128::from(self.min_per_second) * 1000 / 1_000_000_000) as i64;
            let new = self.milli.fetch_add(add, Ordering::Relaxed) + add;
            if new > self.cap_milli {
                self.milli.store(self.cap_milli, Ordering::Relaxed);
            }
        }
    }
}

/// A named set of interchangeable replicas with its balancing policy and live state.
#[derive(Debug)]
pub struct Pool {
    name: String,
    settings: PoolSettings,
    members: ArcSwap<Members>,
    next: AtomicUsize,
    budget: RetryBudget,
    /// Ejections so far (for metrics).
    pub(crate) ejections: AtomicU64,
    /// TLS to the replicas; h2c when none.
    tls: Option<Arc<UpstreamTls>>,
    /// Where the pool reads the time.
    clock: Arc<dyn Clock>,
}

impl Pool {
    /// A pool named `name` over `replicas`, round robin, default settings, on the system clock
    /// (tests).
    #[cfg(test)]
    pub fn new(name: impl Into<String>, replicas: Vec<SocketAddr>) -> Self {
        Self::with_settings(name, replicas.into_iter().map(|a| (a, 1)).collect(), PoolSettings::default())
    }

    /// A pool with explicit settings over `replicas` (address, weight), on the system clock
    /// (tests).
    #[cfg(test)]
    pub fn with_settings(name: impl Into<String>, replicas: Vec<(SocketAddr, u32)>, settings: PoolSettings) -> Self {
        Self::with_clock(name, replicas, settings, Arc::new(meshwork_clock::SystemClock))
    }

    /// A pool with explicit settings over `replicas` (address, weight) that reads the time
    /// from `clock`.
    pub fn with_clock(
        name: impl Into<String>,
        replicas: Vec<(SocketAddr, u32)>,
        settings: PoolSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let replicas =
            replicas.into_iter().map(|(addr, w)| Arc::new(Replica::new(addr, w, false, clock.clone()))).collect();
        let budget = RetryBudget::new(settings.retry_budget_percent, settings.retry_min_per_second, clock.clone());
        Self {
            name: name.into(),
            members: ArcSwap::from_pointee(Members::new(replicas, settings.policy)),
            settings,
            next: AtomicUsize::new(0),
            budget,
            ejections: AtomicU64::new(0),
            tls: None,
            clock,
        }
    }

    /// The time on the pool's monotonic clock, in nanoseconds (what [`Replica::is_ejected`]
    /// and [`Replica::slow_start_factor`] take).
    pub fn now_ns(&self) -> u64 {
        self.clock.monotonic_ns()
    }

    /// The same pool, reaching its replicas over `tls`.
    pub(crate) fn with_tls(mut self, tls: Option<UpstreamTls>) -> Self {
        self.tls = tls.map(Arc::new);
        self
    }

    /// TLS to the replicas, when the pool uses it.
    pub(crate) fn tls(&self) -> Option<&UpstreamTls> {
        self.tls.as_deref()
    }

    /// The pool's name from the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The current membership snapshot.
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// The current replica addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.members.load().replicas.iter().map(|r| r.addr).collect()
    }

    /// The pool's retry budget.
    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// Replaces the membership with `replicas` (address, weight). Replicas that stay keep their
    /// state (health, ejection, in-flight counts); new ones start their slow start now.
    pub fn set_replicas(&self, replicas: &[(SocketAddr, u32)]) {
        let old = self.members.load_full();
        let next: Vec<Arc<Replica>> = replicas
            .iter()
            .map(|(addr, weight)| {
                old.replicas
                    .iter()
                    .find(|r| r.addr == *addr && r.weight == (*weight).max(1))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Replica::new(*addr, *weight, true, self.clock.clone())))
            })
            .collect();
        self.members.store(Arc::new(Members::new(next, self.settings.policy)));
    }

    /// Chooses a replica of `members` for a call and takes an in-flight slot on it.
    ///
    /// Preference order: healthy, not ejected and admitted by slow start; then healthy and not
    /// ejected; then anything not yet tried (so a pool whose checks all fail still gets tried,
    /// like Envoy's panic threshold). Replicas at their concurrency cap are never chosen.
    pub fn pick(&self, members: &Members, input: PickInput<'_>) -> Result<(usize, InflightSlot), PickError> {
        if members.is_empty() {
            return Err(PickError::NoneLeft);
        }
        let n = members.len();
        let cap = self.settings.max_inflight_per_replica;
        let now = self.now_ns();
        let mut busy: u128 = 0;
        for _ in 0..n.max(1) {
            let open = |i: usize| {
                !input.exclude.contains(&i)
                    && (i >= 128 || busy & (1 << i) == 0)
                    && (cap == 0 || members.replicas[i].inflight() < cap)
            };
            let preferred = |i: usize| {
                let r = &members.replicas[i];
                open(i) && r.is_healthy() && !r.is_ejected(now)
            };
            let slow_start = self.settings.slow_start;
            let admitted = |i: usize| {
                preferred(i) && {
                    let f = members.replicas[i].slow_start_factor(now, slow_start);
                    f >= 1.0 || balance::random_unit() < f
                }
            };
            let chosen = self
                .select(members, input.hash, now, &admitted)
                .or_else(|| self.select(members, input.hash, now, &preferred))
                .or_else(|| self.select(members, input.hash, now, &open));
            let Some(idx) = chosen else { break };
            if let Some(slot) = members.replicas[idx].try_acquire(cap) {
                return Ok((idx, slot));
            }
            if idx < 128 {
                busy |= 1 << idx;
            } else {
                break;
            }
        }
        let untried = (0..n).any(|i| !input.exclude.contains(&i));
        Err(if untried && cap != 0 { PickError::AllBusy } else { PickError::NoneLeft })
    }

    fn select(
        &self,
        members: &Members,
        hash: Option<u64>,
        now: u64,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = members.len();
        match (self.settings.policy, hash) {
            (Policy::RoundRobin, _) | (Policy::ConsistentHash | Policy::IpHash, None) => {
                balance::round_robin(n, self.next.fetch_add(1, Ordering::Relaxed), eligible)
            }
            (Policy::ConsistentHash | Policy::IpHash, Some(h)) => members.ring.pick(h, eligible),
            (Policy::Random, _) => balance::random(n, eligible),
            (Policy::Weighted, _) => {
                let slow_start = self.settings.slow_start;
                let weight = |i: usize| {
                    let r = &members.replicas[i];
                    (f64::from(r.weight) * 100.0 * r.slow_start_factor(now, slow_start)).ceil() as u64
                };
                match members.wrr.lock() {
                    Ok(mut wrr) => wrr.pick(weight, eligible),
                    Err(poisoned) => poisoned.into_inner().pick(weight, eligible),
                }
            }
            (Policy::LeastRequest, _) => balance::p2c(n, balance::random_u64(), balance::random_u64(), eligible, |i| {
                members.replicas[i].inflight() as f64
            }),
            (Policy::PeakEwma, _) => balance::p2c(n, balance::random_u64(), balance::random_u64(), eligible, |i| {
                members.replicas[i].ewma_load(now)
            }),
        }
    }

    /// Records a successful answer from `replica`.
    pub fn record_success(&self, replica: &Replica) {
        if replica.consecutive_failures.load(Ordering::Relaxed) != 0 {
            replica.consecutive_failures.store(0, Ordering::Relaxed);
        }
        // Forget earlier ejections once the replica has behaved for a full maximum ejection.
        if replica.ejections.load(Ordering::Relaxed) != 0 {
            let until = replica.ejected_until_ns.load(Ordering::Relaxed);
            if self.now_ns() > until.saturating_add(self.settings.outlier.max_ejection.as_nanos() as u64) {
                replica.ejections.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Records a failure (connect failure or UNAVAILABLE) of `replica`; ejects it after enough
    /// consecutive failures unless that would eject more than the allowed share of `members`.
    /// Returns true when the replica was ejected now.
    pub fn record_failure(&self, members: &Members, replica: &Replica) -> bool {
        let outlier = self.settings.outlier;
        if outlier.consecutive_failures == 0 {
            return false;
        }
        let failures = replica.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let now = self.now_ns();
        if failures < outlier.consecutive_failures || replica.is_ejected(now) {
            return false;
        }
        let ejected = members.replicas.iter().filter(|r| r.is_ejected(now)).count();
        if (ejected + 1) * 100 > members.len() * outlier.max_ejection_percent as usize {
            return false;
        }
        replica.consecutive_failures.store(0, Ordering::Relaxed);
        let times = replica.ejections.fetch_add(1, Ordering::AcqRel).min(20);
        let duration = outlier.base_ejection.saturating_mul(1 << times).min(outlier.max_ejection);
        let until = now + duration.as_nanos() as u64;
        replica.ejected_until_ns.store(until, Ordering::Relaxed);
        // Slow start begins when the ejection ends.
        replica.ready_since_ns.store(until, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            pool = %self.name,
            replica = %replica.addr,
            failures,
            ejection_ms = duration.as_millis() as u64,
            "replica ejected"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwork_clock::ManualClock;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i))).collect()
    }

    fn pool(n: u16, settings: PoolSettings) -> Pool {
        Pool::with_settings("p", addrs(n).into_iter().map(|a| (a, 1)).collect(), settings)
    }

    /// A pool of `n` replicas on a clock that moves only when the test moves it.
    fn manual_pool(n: u16, settings: PoolSettings) -> (Pool, ManualClock) {
        let clock = ManualClock::new(1_800_000_000_000);
        let replicas = addrs(n).into_iter().map(|a| (a, 1)).collect();
        (Pool::with_clock("p", replicas, settings, Arc::new(clock.clone())), clock)
    }

    fn pick(p: &Pool, exclude: &[usize]) -> Result<usize, PickError> {
        let members = p.members();
        p.pick(&members, PickInput { hash: None, exclude }).map(|(i, _)| i)
    }

    #[test]
    fn round_robin_skips_excluded() {
        let p = Pool::new("p", addrs(3));
        let picks: Vec<_> = (0..6).map(|_| pick(&p, &[]).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        for _ in 0..6 {
            assert_ne!(pick(&p, &[1]).unwrap(), 1);
        }
        assert_eq!(pick(&p, &[0, 1, 2]), Err(PickError::NoneLeft));
        assert_eq!(pick(&Pool::new("e", vec![]), &[]), Err(PickError::NoneLeft));
    }

    #[test]
    fn unhealthy_replicas_are_avoided_unless_all_are() {
        let p = Pool::new("p", addrs(3));
        let members = p.members();
        members.replicas()[0].set_healthy(false);
        for _ in 0..10 {
            assert_ne!(pick(&p, &[]).unwrap(), 0);
        }
        members.replicas()[1].set_healthy(false);
        members.replicas()[2].set_healthy(false);
        assert!(pick(&p, &[]).is_ok(), "panic mode: all unhealthy still get tried");
    }

    #[test]
    fn concurrency_cap_answers_busy() {
        let p = pool(2, PoolSettings { max_inflight_per_replica: 1, ..PoolSettings::default() });
        let members = p.members();
        let a = p.pick(&members, PickInput::default()).unwrap();
        let b = p.pick(&members, PickInput::default()).unwrap();
        assert_ne!(a.0, b.0);
        assert_eq!(p.pick(&members, PickInput::default()).unwrap_err(), PickError::AllBusy);
        drop(a);
        assert!(p.pick(&members, PickInput::default()).is_ok());
    }

    #[test]
    fn ejection_backs_off_and_is_capped() {
        let mut settings = PoolSettings::default();
        settings.outlier.consecutive_failures = 2;
        settings.outlier.base_ejection = Duration::from_secs(60);
        let p = pool(4, settings);
        let members = p.members();
        let r = members.replicas();
        assert!(!p.record_failure(&members, &r[0]));
        assert!(p.record_failure(&members, &r[0]), "second consecutive failure ejects");
        assert!(r[0].is_ejected_now());
        r[0].set_healthy(true);
        assert!(r[0].is_ejected_now(), "passing checks all along do not uneject");
        for _ in 0..20 {
            assert_ne!(pick(&p, &[]).unwrap(), 0);
        }
        p.record_failure(&members, &r[1]);
        assert!(p.record_failure(&members, &r[1]));
        // 50% cap: a third replica may not be ejected.
        p.record_failure(&members, &r[2]);
        assert!(!p.record_failure(&members, &r[2]));
        // Success resets the consecutive count.
        p.record_success(&r[3]);
        p.record_failure(&members, &r[3]);
        p.record_success(&r[3]);
        assert!(!p.record_failure(&members, &r[3]));
        assert_eq!(p.ejections.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn returning_from_failed_checks_unejects() {
        let mut settings = PoolSettings::default();
        settings.outlier.consecutive_failures = 1;
        let p = pool(2, settings);
        let members = p.members();
        let r = &members.replicas()[0];
        assert!(p.record_failure(&members, r));
        r.set_healthy(false);
        assert!(r.is_ejected_now());
        r.set_healthy(true);
        assert!(!r.is_ejected_now(), "healthy again after failed checks: back in");
    }

    /// The ejection ends after its time, and doubles with every further ejection up to the
    /// maximum; a replica that then behaves for a full maximum ejection starts over.
    #[test]
    fn ejection_time_doubles_and_ends() {
        let mut settings = PoolSettings::default();
        settings.outlier.consecutive_failures = 1;
        settings.outlier.base_ejection = Duration::from_secs(10);
        settings.outlier.max_ejection = Duration::from_secs(30);
        settings.outlier.max_ejection_percent = 100;
        let (p, clock) = manual_pool(1, settings);
        let members = p.members();
        let r = &members.replicas()[0];
        // How long the replica stays out after one more failure, in whole seconds.
        let ejection = || {
            assert!(p.record_failure(&members, r));
            let mut out = 0;
            while r.is_ejected_now() {
                clock.advance(1000);
                out += 1;
                assert!(out < 1000, "still ejected after {out} s");
            }
            out
        };
        let lengths: Vec<u32> = (0..4).map(|_| ejection()).collect();
        assert_eq!(lengths, vec![10, 20, 30, 30], "10 s, 20 s, then capped at 30 s");
        // Calls go well for a full maximum ejection: the backoff is forgotten.
        clock.advance(30_000);
        p.record_success(r);
        clock.advance(1);
        p.record_success(r);
        assert_eq!(ejection(), 10);
    }

    /// A replica back from failed checks gets a share of calls that ramps from 10% of its
    /// weight to all of it over the slow-start window.
    #[test]
    fn slow_start_ramps_on_the_pools_clock() {
        let settings = PoolSettings { slow_start: Duration::from_secs(10), ..PoolSettings::default() };
        let window = settings.slow_start;
        let (p, clock) = manual_pool(2, settings);
        let members = p.members();
        let r = &members.replicas()[0];
        let share = || {
            const PICKS: usize = 10_000;
            (0..PICKS).filter(|_| pick(&p, &[]).unwrap() == 0).count() as f64 / PICKS as f64
        };
        assert_eq!(share(), 0.5, "present from the start: no ramp");
        r.set_healthy(false);
        assert!(r.set_healthy(true));
        assert!((r.slow_start_factor(p.now_ns(), window) - 0.1).abs() < 1e-9);
        // Round robin offers it every other call; admitted 10% of the times: about 5%.
        let first = share();
        assert!((0.035..=0.065).contains(&first), "share {first} at the start of the ramp");
        clock.advance(5000);
        let half = share();
        assert!((0.24..=0.31).contains(&half), "share {half} half-way (55% of its weight)");
        clock.advance(5001);
        assert_eq!(share(), 0.5, "the ramp is over");
    }

    #[test]
    fn peak_ewma_decays_on_the_pools_clock() {
        let (p, clock) = manual_pool(1, PoolSettings::default());
        let members = p.members();
        let r = &members.replicas()[0];
        r.observe_latency(Duration::from_millis(100));
        assert!((r.ewma_seconds() - 0.1).abs() < 1e-9, "{}", r.ewma_seconds());
        clock.advance(EWMA_DECAY.as_millis() as i64);
        let decayed = r.ewma_seconds();
        assert!((decayed - 0.1 / std::f64::consts::E).abs() < 1e-9, "{decayed}");
    }

    #[test]
    fn membership_change_keeps_state() {
        let p = Pool::new("p", addrs(2));
        let a = addrs(3);
        p.members().replicas()[0].set_healthy(false);
        p.set_replicas(&[(a[0], 1), (a[2], 1)]);
        let m = p.members();
        assert_eq!(m.replicas().iter().map(|r| r.addr()).collect::<Vec<_>>(), vec![a[0], a[2]]);
        assert!(!m.replicas()[0].is_healthy(), "kept state");
        assert!(m.replicas()[1].is_healthy());
    }

    #[test]
    fn retry_budget_allows_floor_plus_share() {
        let clock = ManualClock::new(0);
        let budget = RetryBudget::new(20, 0, Arc::new(clock.clone()));
        assert!(!budget.try_withdraw());
        for _ in 0..100 {
            budget.deposit();
        }
        let retries = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(retries, 20);
        let floor = RetryBudget::new(0, 5, Arc::new(clock.clone()));
        assert_eq!((0..10).filter(|_| floor.try_withdraw()).count(), 5);
    }

    /// Time deposits `min_per_second`, in steps of at least 10 ms, and at most 10 s worth.
    #[test]
    fn retry_budget_floor_refills_with_time() {
        let clock = ManualClock::new(0);
        let budget = RetryBudget::new(0, 5, Arc::new(clock.clone()));
        let drain = || (0..1000).filter(|_| budget.try_withdraw()).count();
        assert_eq!(drain(), 5, "one second's floor to start with");
        clock.advance(1000);
        assert_eq!(drain(), 5);
        clock.advance(9);
        assert_eq!(drain(), 0, "under 10 ms: nothing yet");
        clock.advance(191);
        assert_eq!(drain(), 1, "200 ms: one retry");
        clock.advance(100_000);
        assert_eq!(drain(), 50, "at most 10 s worth saved up");
    }

    #[test]
    fn hashing_is_sticky() {
        let p = pool(5, PoolSettings { policy: Policy::ConsistentHash, ..PoolSettings::default() });
        let members = p.members();
        for key in 0..50u64 {
            let h = balance::hash64(&key.to_le_bytes());
            let first = p.pick(&members, PickInput { hash: Some(h), exclude: &[] }).unwrap().0;
            for _ in 0..3 {
                assert_eq!(p.pick(&members, PickInput { hash: Some(h), exclude: &[] }).unwrap().0, first);
            }
        }
    }
}
