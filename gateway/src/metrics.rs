//! The gateway's metrics, kept in atomics and rendered in the Prometheus text format: calls by
//! service, method and grpc-status, latency histograms per method, retries, rate-limited calls,
//! ejections and the state of every replica.
//!
//! The per-method table is an immutable map behind an `ArcSwap`: the hot path looks a method up
//! by its path without locking or allocating; a new method copies the map once (at most
//! [`MAX_METHODS`] entries, then further methods share one `other` series).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::pool::Pool;

/// Distinct methods tracked before new ones share the `other` series.
pub const MAX_METHODS: usize = 1024;
/// Upper bounds of the latency histogram buckets, in seconds: the mesh's one set, so that the
/// gateway's quantiles compare with the services' and the storage's.
const BUCKETS: &[f64] = meshwork_telemetry::metrics::LATENCY_BUCKETS;
/// gRPC status codes 0..=16.
const CODES: usize = 17;

/// Counters of one gRPC method.
#[derive(Debug)]
pub struct MethodStats {
    service: Box<str>,
    method: Box<str>,
    codes: [AtomicU64; CODES],
    buckets: [AtomicU64; BUCKETS.len()],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl MethodStats {
    fn new(service: &str, method: &str) -> Self {
        Self {
            service: service.into(),
            method: method.into(),
            codes: Default::default(),
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one finished call.
    pub fn record(&self, code: u16, elapsed: Duration) {
        self.codes[usize::from(code).min(CODES - 1)].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-method stats by request path (looked up on every call: a fast hasher).
type MethodTable = HashMap<Box<str>, Arc<MethodStats>, foldhash::fast::RandomState>;

/// All the gateway's counters.
#[derive(Debug)]
pub struct Metrics {
    methods: ArcSwap<MethodTable>,
    insert: Mutex<()>,
    other: Arc<MethodStats>,
    /// Attempts beyond the first (connect failures and UNAVAILABLE on idempotent methods).
    pub retries: AtomicU64,
    /// Calls refused by the rate limit.
    pub rate_limited: AtomicU64,
    /// Calls refused because every replica was at its concurrency cap.
    pub overloaded: AtomicU64,
    /// Calls refused for their credentials, by reason (`crate::authn::REASONS`).
    pub auth_refused: [AtomicU64; crate::authn::REASONS.len()],
    /// Calls with a verified credential: JWT, API key.
    pub auth_verified: [AtomicU64; 2],
    /// The gRPC fast path's relay counters (set when the fast path is on).
    pub fast_path: std::sync::OnceLock<Arc<meshwork_h2relay::Stats>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            methods: ArcSwap::from_pointee(MethodTable::default()),
            insert: Mutex::new(()),
            other: Arc::new(MethodStats::new("other", "other")),
            retries: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            auth_refused: Default::default(),
            auth_verified: Default::default(),
            fast_path: std::sync::OnceLock::new(),
        }
    }
}

impl Metrics {
    /// The counters of the method at `path` (`/<service>/<method>`).
    pub fn method(&self, path: &str, service: &str, method: &str) -> Arc<MethodStats> {
        if let Some(stats) = self.methods.load().get(path) {
            return stats.clone();
        }
        let _guard = match self.insert.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let current = self.methods.load_full();
        if let Some(stats) = current.get(path) {
            return stats.clone();
        }
        if current.len() >= MAX_METHODS {
            return self.other.clone();
        }
        let stats = Arc::new(MethodStats::new(service, method));
        let mut next = HashMap::clone(&current);
        next.insert(path.into(), stats.clone());
        self.methods.store(Arc::new(next));
        stats
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self, pools: &[Arc<Pool>]) -> String {
        let mut out = String::with_capacity(4096);
        let methods = self.methods.load_full();
        let mut all: Vec<&Arc<MethodStats>> = methods.values().collect();
        all.sort_by(|a, b| (&a.service, &a.method).cmp(&(&b.service, &b.method)));
        if self.other.count.load(Ordering::Relaxed) > 0 {
            all.push(&self.other);
        }
        out.push_str("# HELP meshwork_gateway_calls_total gRPC calls by service, method and grpc-status.\n");
        out.push_str("# TYPE meshwork_gateway_calls_total counter\n");
        for m in &all {
            for (code, n) in m.codes.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "meshwork_gateway_calls_total{{service=\"{}\",method=\"{}\",grpc_status=\"{code}\"}} {n}",
                        m.service, m.method
                    );
                }
            }
        }
        out.push_str("# HELP meshwork_gateway_call_duration_seconds Time from request to the end of the answer.\n");
        out.push_str("# TYPE meshwork_gateway_call_duration_seconds histogram\n");
        for m in &all {
            let labels = format!("service=\"{}\",method=\"{}\"", m.service, m.method);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&m.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "meshwork_gateway_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = m.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "meshwork_gateway_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
            let sum = m.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "meshwork_gateway_call_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "meshwork_gateway_call_duration_seconds_count{{{labels}}} {count}");
        }
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            &mut out,
            "meshwork_gateway_retries_total",
            "Attempts beyond a call's first.",
            self.retries.load(Ordering::Relaxed),
        );
        if let Some(relay) = self.fast_path.get() {
            counter(
                &mut out,
                "meshwork_gateway_fast_path_streams_total",
                "HTTP/2 streams the gRPC fast path accepted.",
                relay.streams.load(Ordering::Relaxed),
            );
            counter(
                &mut out,
                "meshwork_gateway_fast_path_goaways_total",
                "Fast-path connections closed with GOAWAY for a protocol error or abuse.",
                relay.goaways.load(Ordering::Relaxed),
            );
            let held = relay.buffered.load(Ordering::Relaxed).max(0);
            let _ = writeln!(
                out,
                "# HELP meshwork_gateway_fast_path_buffered_bytes DATA bytes the fast path holds between client and replica.\n\
                 # TYPE meshwork_gateway_fast_path_buffered_bytes gauge\nmeshwork_gateway_fast_path_buffered_bytes {held}"
            );
        }
        counter(
            &mut out,
            "meshwork_gateway_rate_limited_total",
            "Calls refused by the per-client rate limit.",
            self.rate_limited.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "meshwork_gateway_overloaded_total",
            "Calls refused because every replica was at its concurrency cap.",
            self.overloaded.load(Ordering::Relaxed),
        );
        out.push_str("# HELP meshwork_gateway_auth_refused_total Calls refused for their credentials, by reason.\n");
        out.push_str("# TYPE meshwork_gateway_auth_refused_total counter\n");
        for (reason, n) in crate::authn::REASONS.iter().zip(&self.auth_refused) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "meshwork_gateway_auth_refused_total{{reason=\"{reason}\"}} {n}");
            }
        }
        out.push_str("# HELP meshwork_gateway_auth_verified_total Calls with a verified credential, by method.\n");
        out.push_str("# TYPE meshwork_gateway_auth_verified_total counter\n");
        for (method, n) in ["jwt", "api_key"].iter().zip(&self.auth_verified) {
            let _ = writeln!(
                out,
                "meshwork_gateway_auth_verified_total{{method=\"{method}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP meshwork_gateway_ejections_total Passive outlier ejections by pool.\n");
        out.push_str("# TYPE meshwork_gateway_ejections_total counter\n");
        for pool in pools {
            let _ = writeln!(
                out,
                "meshwork_gateway_ejections_total{{pool=\"{}\"}} {}",
                pool.name(),
                pool.ejections.load(Ordering::Relaxed)
            );
        }
        let gauges: [(&str, &str, &str); 4] = [
            ("meshwork_gateway_replica_healthy", "gauge", "1 when the replica passes active gRPC health checks."),
            ("meshwork_gateway_replica_ejected", "gauge", "1 while passive outlier detection ejects the replica."),
            ("meshwork_gateway_replica_inflight", "gauge", "Calls in flight on the replica."),
            ("meshwork_gateway_replica_requests_total", "counter", "Attempts sent to the replica."),
        ];
        for (i, (name, kind, help)) in gauges.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for pool in pools {
                for r in pool.members().replicas() {
                    let value = match i {
                        0 => u64::from(r.is_healthy()),
                        1 => u64::from(r.is_ejected_now()),
                        2 => r.inflight() as u64,
                        _ => r.requests.load(Ordering::Relaxed),
                    };
                    let _ = writeln!(out, "{name}{{pool=\"{}\",replica=\"{}\"}} {value}", pool.name(), r.addr());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders() {
        let metrics = Metrics::default();
        let m = metrics.method("/a.B/C", "a.B", "C");
        m.record(0, Duration::from_millis(3));
        m.record(14, Duration::from_millis(30));
        assert!(Arc::ptr_eq(&m, &metrics.method("/a.B/C", "a.B", "C")));
        metrics.retries.fetch_add(2, Ordering::Relaxed);
        let pool = Arc::new(Pool::new("p", vec!["127.0.0.1:1".parse().unwrap()]));
        let text = metrics.render(&[pool]);
        assert!(
            text.contains("meshwork_gateway_calls_total{service=\"a.B\",method=\"C\",grpc_status=\"0\"} 1"),
            "{text}"
        );
        assert!(text.contains("grpc_status=\"14\"} 1"), "{text}");
        assert!(
            text.contains("meshwork_gateway_call_duration_seconds_bucket{service=\"a.B\",method=\"C\",le=\"0.005\"} 1")
        );
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("meshwork_gateway_retries_total 2"));
        assert!(text.contains("meshwork_gateway_replica_healthy{pool=\"p\",replica=\"127.0.0.1:1\"} 1"));
    }

    #[test]
    fn method_table_is_bounded() {
        let metrics = Metrics::default();
        for i in 0..MAX_METHODS + 10 {
            metrics.method(&format!("/a.B/M{i}"), "a.B", "M");
        }
        assert_eq!(metrics.methods.load().len(), MAX_METHODS);
    }
}
