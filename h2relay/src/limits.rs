//! Abuse limits of a downstream connection: how many reset streams, PINGs, SETTINGS and
//! useless frames (empty DATA, PRIORITY, unknown types) a client may send in a period before
//! it gets GOAWAY(ENHANCE_YOUR_CALM).

use std::time::{Duration, Instant};

/// At most `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub period: Duration,
}

impl RateLimit {
    pub const fn new(count: u32, period: Duration) -> Self {
        RateLimit { count, period }
    }
}

/// Counts events in fixed windows.
#[derive(Debug)]
pub struct Counter {
    limit: RateLimit,
    start: Option<Instant>,
    count: u32,
}

impl Counter {
    pub fn new(limit: RateLimit) -> Self {
        Counter { limit, start: None, count: 0 }
    }

    /// Records one event; `true` when the limit is exceeded.
    pub fn hit(&mut self) -> bool {
        let now = Instant::now();
        match self.start {
            Some(start) if now.duration_since(start) < self.limit.period => self.count += 1,
            _ => {
                self.start = Some(now);
                self.count = 1;
            }
        }
        self.count > self.limit.count
    }
}

/// The limits of one downstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Streams the client resets before they complete (HTTP/2 rapid reset, CVE-2023-44487).
    pub resets: RateLimit,
    /// PINGs (each makes us write an ACK).
    pub pings: RateLimit,
    /// SETTINGS (each makes us write an ACK).
    pub settings: RateLimit,
    /// Frames that do nothing: empty DATA without END_STREAM, PRIORITY, unknown types,
    /// WINDOW_UPDATE on closed streams.
    pub useless: RateLimit,
    /// Streams the relay resets for the client's protocol errors over the connection's life
    /// (the `h2` crate's `max_local_error_reset_streams`); one more is GOAWAY(ENHANCE_YOUR_CALM).
    pub error_resets: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let ten_s = Duration::from_secs(10);
        Limits {
            resets: RateLimit::new(400, ten_s),
            pings: RateLimit::new(200, ten_s),
            settings: RateLimit::new(100, ten_s),
            useless: RateLimit::new(2000, ten_s),
            error_resets: 1024,
        }
    }
}

/// Live counters for [`Limits`].
#[derive(Debug)]
pub struct Counters {
    pub resets: Counter,
    pub pings: Counter,
    pub settings: Counter,
    pub useless: Counter,
    /// Streams reset for the client's protocol errors so far.
    pub error_resets: u32,
}

impl Counters {
    pub fn new(limits: &Limits) -> Self {
        Counters {
            resets: Counter::new(limits.resets),
            pings: Counter::new(limits.pings),
            settings: Counter::new(limits.settings),
            useless: Counter::new(limits.useless),
            error_resets: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_a_window() {
        let mut c = Counter::new(RateLimit::new(3, Duration::from_secs(60)));
        assert!(!c.hit() && !c.hit() && !c.hit());
        assert!(c.hit());
        let mut c = Counter::new(RateLimit::new(1, Duration::ZERO));
        assert!(!c.hit() && !c.hit());
    }
}
