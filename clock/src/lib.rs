//! The time source of every meshwork layer: services, the gateway and the trace collector read
//! the time through a [`Clock`] they are given instead of `SystemTime::now()` or
//! `Instant::now()`, so that a test can hand them a [`ManualClock`] and move time by hand
//! (ejection backoffs, slow start, token buckets, age bounds) instead of sleeping. A clock
//! answers two questions: the wall time (Unix milliseconds or nanoseconds: timestamps, expiry
//! dates, trace ages) and a monotonic instant (durations and deadlines inside the process).
//! This crate depends on nothing, so that any crate may use it.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock and monotonic time.
pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    /// Returns the current wall-clock time in Unix nanoseconds (0 before 1970).
    fn unix_ns(&self) -> u64;

    /// Returns the current monotonic time: nanoseconds since the process's monotonic origin
    /// (the first reading of any clock). Never goes backwards; fits atomics.
    fn monotonic_ns(&self) -> u64;

    /// Returns the current wall-clock time in Unix milliseconds.
    fn now_ms(&self) -> i64 {
        (self.unix_ns() / 1_000_000) as i64
    }

    /// Returns the current monotonic time as an [`Instant`] (the origin plus
    /// [`Clock::monotonic_ns`]).
    fn instant(&self) -> Instant {
        origin() + Duration::from_nanos(self.monotonic_ns())
    }

    /// Returns the current wall-clock time as a [`SystemTime`] (for APIs that take one, such
    /// as token expiry checks).
    fn system_time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.unix_ns())
    }
}

/// The process's monotonic origin: the instant [`Clock::monotonic_ns`] counts from.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ns(&self) -> u64 {
        // A clock before 1970 is a misconfigured machine; treat it as the epoch.
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    }

    fn monotonic_ns(&self) -> u64 {
        origin().elapsed().as_nanos() as u64
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// Returns the system clock as the `Arc<dyn Clock>` constructors take.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that only moves when told to (tests). Clones share the same time, so a test keeps
/// one and hands a clone (`Arc::new(clock.clone())`) to what it tests.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<Manual>);

#[derive(Debug, Default)]
struct Manual {
    /// Wall time, Unix nanoseconds (signed: a test may stand before 1970).
    unix_ns: AtomicI64,
    /// Monotonic time, nanoseconds since the origin.
    monotonic_ns: AtomicU64,
}

impl ManualClock {
    /// Returns a clock whose wall time stands at `now_ms` (Unix milliseconds) and whose
    /// monotonic time stands at the origin.
    pub fn new(now_ms: i64) -> Self {
        Self::at_unix_ns(now_ms.saturating_mul(1_000_000))
    }

    /// Returns a clock whose wall time stands at `unix_ns` and whose monotonic time stands at
    /// the origin.
    pub fn at_unix_ns(unix_ns: i64) -> Self {
        // The origin is fixed now, so that `instant()` is comparable with the system clock's.
        let _ = origin();
        ManualClock(Arc::new(Manual { unix_ns: AtomicI64::new(unix_ns), monotonic_ns: AtomicU64::new(0) }))
    }

    /// Moves the clock forward by `ms` milliseconds. A negative `ms` turns the wall clock back
    /// (as a stepped system clock would) and leaves the monotonic time where it is.
    pub fn advance(&self, ms: i64) {
        self.0.unix_ns.fetch_add(ms.saturating_mul(1_000_000), Ordering::SeqCst);
        if ms > 0 {
            self.0.monotonic_ns.fetch_add(ms as u64 * 1_000_000, Ordering::SeqCst);
        }
    }

    /// Moves the clock forward by `by` (wall and monotonic time alike).
    pub fn advance_by(&self, by: Duration) {
        let ns = by.as_nanos().min(i64::MAX as u128) as i64;
        self.0.unix_ns.fetch_add(ns, Ordering::SeqCst);
        self.0.monotonic_ns.fetch_add(ns as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_ns(&self) -> u64 {
        self.0.unix_ns.load(Ordering::SeqCst).max(0) as u64
    }

    fn monotonic_ns(&self) -> u64 {
        self.0.monotonic_ns.load(Ordering::SeqCst)
    }

    fn now_ms(&self) -> i64 {
        self.0.unix_ns.load(Ordering::SeqCst).div_euclid(1_000_000)
    }
}

/// Returns the UTC calendar date (year, month 1-12, day 1-31) of a day counted from the Unix
/// epoch (proleptic Gregorian; Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month as u32, day as u32)
}

/// Returns the UTC calendar date `YYYY-MM-DD` of a Unix-milliseconds time.
pub fn utc_date(unix_ms: i64) -> String {
    let (year, month, day) = civil_from_days(unix_ms.div_euclid(86_400_000));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Returns a Unix-seconds time as RFC 3339 in UTC with second precision (`2026-11-28T10:00:00Z`).
pub fn rfc3339_seconds(unix_secs: i64) -> String {
    let (days, rem) = (unix_secs.div_euclid(86_400), unix_secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1000);
        assert_eq!((clock.now_ms(), clock.unix_ns(), clock.monotonic_ns()), (1000, 1_000_000_000, 0));
        let start = clock.instant();
        clock.advance(500);
        assert_eq!((clock.now_ms(), clock.monotonic_ns()), (1500, 500_000_000));
        clock.advance_by(Duration::from_nanos(7));
        assert_eq!((clock.unix_ns(), clock.monotonic_ns()), (1_500_000_007, 500_000_007));
        assert_eq!(clock.instant() - start, Duration::from_nanos(500_000_007));
        // Clones share the time.
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        clock.advance(1);
        assert_eq!(shared.monotonic_ns(), 501_000_007);
    }

    #[test]
    fn a_wall_clock_stepped_back_leaves_monotonic_time_alone() {
        let clock = ManualClock::new(10_000);
        clock.advance(-4000);
        assert_eq!((clock.now_ms(), clock.monotonic_ns()), (6000, 0));
        let before_1970 = ManualClock::new(-1);
        assert_eq!((before_1970.now_ms(), before_1970.unix_ns()), (-1, 0));
    }

    #[test]
    fn system_clock_readings_agree() {
        let clock = SystemClock;
        let (ms, ns) = (clock.now_ms(), clock.unix_ns());
        assert!((ns / 1_000_000) as i64 - ms < 1000, "{ms} ms vs {ns} ns");
        let (a, b) = (clock.monotonic_ns(), clock.monotonic_ns());
        assert!(b >= a);
        assert!(clock.instant() >= origin());
    }

    #[test]
    fn calendar_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_798_761_600_000 - 1), "2026-12-31");
        assert_eq!(utc_date(1_798_761_600_000), "2027-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(1_764_322_245), "2025-11-28T09:30:45Z");
        assert_eq!(rfc3339_seconds(-1), "1969-12-31T23:59:59Z");
    }
}
