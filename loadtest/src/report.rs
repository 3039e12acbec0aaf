//! Reports in ghz's formats: the JSON report (same field names and types as ghz's `Report`:
//! durations in nanoseconds, `histogram` marks in seconds, status codes by Go name), the
//! summary text ghz prints, and a self-contained HTML page with inline SVG charts of the
//! latency histogram and of throughput over time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::duration::human;
use crate::engine::EndReason;
use crate::stats::{OpStats, TICK};
use crate::status;
use crate::template::rfc3339;

/// Percentiles of `latencyDistribution` (ghz's, plus 99.9).
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// The run's settings as ghz echoes them in `options`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Options {
    /// Target `host:port`.
    pub host: String,
    /// `pkg.Service/Method`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub call: String,
    /// Protoset file, when given.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protoset: String,
    /// Plaintext (always true: TLS is not supported).
    pub insecure: bool,
    /// `-n`.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// `-c`.
    #[serde(skip_serializing_if = "is_zero")]
    pub concurrency: u64,
    /// `--rps`.
    #[serde(skip_serializing_if = "is_zero")]
    pub qps: u64,
    /// `--connections`.
    #[serde(skip_serializing_if = "is_zero")]
    pub connections: u64,
    /// `-z` in ns.
    #[serde(skip_serializing_if = "is_zero")]
    pub duration: u64,
    /// `-t` in ns.
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// `-d` as JSON, when it parses as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// `-m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Binary data (never).
    pub binary: bool,
    /// CPUs available.
    #[serde(rename = "CPUs")]
    pub cpus: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One entry of `latencyDistribution`.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyDistribution {
    /// Percentile (an integer, or 99.9).
    pub percentage: serde_json::Number,
    /// Latency at that percentile, in ns.
    pub latency: u64,
}

/// One bar of `histogram`.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Upper bound of the bucket, in seconds.
    pub mark: f64,
    /// Calls in the bucket.
    pub count: u64,
    /// Share of all successful calls in the bucket (0..1).
    pub frequency: f64,
}

/// ghz's JSON report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Name of the run (`--name`, or the scenario entry).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `normal` or `timeout`.
    pub end_reason: String,
    /// The run's settings.
    pub options: Options,
    /// Start of the run, RFC 3339.
    pub date: String,
    /// Calls made.
    pub count: u64,
    /// Wall time of the run, ns.
    pub total: u64,
    /// Mean latency of all calls, ns.
    pub average: u64,
    /// Fastest successful call, ns.
    pub fastest: u64,
    /// Slowest successful call, ns.
    pub slowest: u64,
    /// Calls per second.
    pub rps: f64,
    /// Calls per error text.
    pub error_distribution: BTreeMap<String, u64>,
    /// Calls per status (`OK`, `NotFound`, ...).
    pub status_code_distribution: BTreeMap<String, u64>,
    /// Latency percentiles of successful calls.
    pub latency_distribution: Vec<LatencyDistribution>,
    /// Latency histogram of successful calls (11 buckets from fastest to slowest, as ghz).
    pub histogram: Vec<Bucket>,
    /// Per-call details (ghz lists up to a million calls; always empty here).
    pub details: Vec<serde_json::Value>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Report {
    /// Builds the report of `stats` over a run of `total` wall time.
    pub fn build(
        name: &str,
        options: Options,
        stats: &OpStats,
        total: Duration,
        started: SystemTime,
        end: EndReason,
    ) -> Report {
        let h = &stats.ok;
        let ok = !h.is_empty();
        let latency_distribution = if ok {
            PERCENTILES
                .iter()
                .map(|p| LatencyDistribution {
                    percentage: if p.fract() == 0.0 {
                        serde_json::Number::from(*p as u64)
                    } else {
                        serde_json::Number::from_f64(*p).unwrap_or_else(|| serde_json::Number::from(0))
                    },
                    latency: h.value_at_quantile(p / 100.0),
                })
                .collect()
        } else {
            Vec::new()
        };
        let (fastest, slowest) = if ok { (h.min(), h.max()) } else { (0, 0) };
        let mut codes = BTreeMap::new();
        for (code, n) in stats.codes.iter().enumerate() {
            if *n > 0 {
                codes.insert(status::name(code as u8).to_string(), *n);
            }
        }
        Report {
            name: name.to_string(),
            end_reason: end.as_str().to_string(),
            options,
            date: rfc3339(started),
            count: stats.count,
            total: ns(total),
            average: if stats.count > 0 {
                u64::try_from(stats.latency_sum_ns / u128::from(stats.count)).unwrap_or(u64::MAX)
            } else {
                0
            },
            fastest,
            slowest,
            rps: if total.is_zero() { 0.0 } else { stats.count as f64 / total.as_secs_f64() },
            error_distribution: stats.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            status_code_distribution: codes,
            latency_distribution,
            histogram: if ok { buckets(stats, fastest, slowest, 10) } else { Vec::new() },
            details: Vec::new(),
        }
    }

    /// Returns the latency at percentile `p` (ns), if reported.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        self.latency_distribution.iter().find(|l| l.percentage.as_f64() == Some(p)).map(|l| l.latency)
    }

    /// Returns the summary text ghz prints.
    pub fn summary(&self) -> String {
        let d = |v: u64| human(Duration::from_nanos(v));
        let mut out = String::new();
        let _ = writeln!(out, "\nSummary:");
        if !self.name.is_empty() {
            let _ = writeln!(out, "  Name:\t{}", self.name);
        }
        let _ = writeln!(out, "  Count:\t{}", self.count);
        let _ = writeln!(out, "  Total:\t{}", d(self.total));
        let _ = writeln!(out, "  Slowest:\t{}", d(self.slowest));
        let _ = writeln!(out, "  Fastest:\t{}", d(self.fastest));
        let _ = writeln!(out, "  Average:\t{}", d(self.average));
        let _ = writeln!(out, "  Requests/sec:\t{:.2}", self.rps);
        if !self.histogram.is_empty() {
            let _ = writeln!(out, "\nResponse time histogram:");
            let max = self.histogram.iter().map(|b| b.count).max().unwrap_or(1).max(1);
            for b in &self.histogram {
                let bar = "∎".repeat((b.count * 40 / max) as usize);
                let _ = writeln!(out, "  {:.3} [{}]\t|{bar}", b.mark * 1000.0, b.count);
            }
        }
        if !self.latency_distribution.is_empty() {
            let _ = writeln!(out, "\nLatency distribution:");
            for l in &self.latency_distribution {
                let _ = writeln!(out, "  {} % in {} ", l.percentage, d(l.latency));
            }
        }
        let _ = writeln!(out, "\nStatus code distribution:");
        for (code, n) in &self.status_code_distribution {
            let _ = writeln!(out, "  [{code}]\t{n} responses");
        }
        if !self.error_distribution.is_empty() {
            let _ = writeln!(out, "\nError distribution:");
            for (e, n) in &self.error_distribution {
                let _ = writeln!(out, "  [{n}]\t{e}");
            }
        }
        out
    }

    /// Returns the report as a self-contained HTML page with `timeline` (successes and
    /// errors per 100 ms slice) drawn as throughput over time.
    pub fn html(&self, stats: &OpStats, timeline: &[(u64, u64)]) -> String {
        let d = |v: u64| human(Duration::from_nanos(v));
        let mut rows = String::new();
        for (k, v) in [
            ("Count", self.count.to_string()),
            ("Total", d(self.total)),
            ("Slowest", d(self.slowest)),
            ("Fastest", d(self.fastest)),
            ("Average", d(self.average)),
            ("Requests/sec", format!("{:.2}", self.rps)),
        ] {
            let _ = write!(rows, "<tr><th>{k}</th><td>{v}</td></tr>");
        }
        let mut pct = String::new();
        for l in &self.latency_distribution {
            let _ = write!(pct, "<tr><th>p{}</th><td>{}</td></tr>", l.percentage, d(l.latency));
        }
        let mut codes = String::new();
        for (c, n) in &self.status_code_distribution {
            let _ = write!(codes, "<tr><th>{}</th><td>{n}</td></tr>", escape(c));
        }
        let mut errors = String::new();
        for (e, n) in &self.error_distribution {
            let _ = write!(errors, "<tr><td>{n}</td><td>{}</td></tr>", escape(e));
        }
        let hist = if stats.ok.is_empty() {
            "<p>no successful calls</p>".to_string()
        } else {
            let hi = stats.ok.value_at_quantile(0.999).max(self.fastest + 1);
            let fine = buckets(stats, self.fastest, hi, 40);
            let bars: Vec<(String, f64)> =
                fine.iter().map(|b| (format!("{:.3} ms", b.mark * 1000.0), b.count as f64)).collect();
            svg_bars(&bars, "calls", "latency (up to p99.9)")
        };
        let throughput = svg_line(&throughput_series(timeline));
        format!(
            r#"<!doctype html>
<html><head><meta charset="utf-8"><title>meshwork load: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0 2em 1em 0; display: inline-table; vertical-align: top; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #f4f4f4; }}
svg {{ background: #fafafa; border: 1px solid #ddd; }}
</style></head><body>
<h1>meshwork load report</h1>
<p>{call} on {host}, {date}, ended: {end}</p>
<table><caption>Summary</caption>{rows}</table>
<table><caption>Latency distribution</caption>{pct}</table>
<table><caption>Status codes</caption>{codes}</table>
{errors_table}
<h2>Latency histogram</h2>
{hist}
<h2>Throughput over time</h2>
{throughput}
</body></html>
"#,
            title = escape(if self.name.is_empty() { &self.options.call } else { &self.name }),
            call = escape(&self.options.call),
            host = escape(&self.options.host),
            date = self.date,
            end = self.end_reason,
            errors_table = if errors.is_empty() {
                String::new()
            } else {
                format!("<table><caption>Errors</caption>{errors}</table>")
            },
        )
    }
}

/// `n + 1` buckets of successful-call latencies from `lo` to `hi` (ns): bucket i counts calls
/// above mark i-1 up to mark i, the last one everything up to the slowest (ghz's histogram).
fn buckets(stats: &OpStats, lo: u64, hi: u64, n: usize) -> Vec<Bucket> {
    let h = &stats.ok;
    let width = (hi.saturating_sub(lo)) as f64 / n as f64;
    let marks: Vec<f64> = (0..=n).map(|i| if i == n { hi as f64 } else { lo as f64 + width * i as f64 }).collect();
    let mut counts = vec![0u64; n + 1];
    for v in h.iter_recorded() {
        let value = v.value_iterated_to() as f64;
        let i = marks.partition_point(|m| *m < value).min(n);
        counts[i] += v.count_at_value();
    }
    let total = h.len().max(1) as f64;
    marks.iter().zip(counts).map(|(m, c)| Bucket { mark: m / 1e9, count: c, frequency: c as f64 / total }).collect()
}

/// Throughput points (seconds since start, calls per second), at most ~200 of them.
fn throughput_series(timeline: &[(u64, u64)]) -> Vec<(f64, f64)> {
    let per = timeline.len().div_ceil(200).max(1);
    let width = TICK.as_secs_f64() * per as f64;
    timeline
        .chunks(per)
        .enumerate()
        .map(|(i, c)| ((i as f64 + 1.0) * width, c.iter().map(|(ok, err)| ok + err).sum::<u64>() as f64 / width))
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 800.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

fn svg_bars(bars: &[(String, f64)], y_label: &str, x_label: &str) -> String {
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let bw = (W - 2.0 * PAD) / bars.len().max(1) as f64;
    let mut s = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"#);
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = v / max * (H - 2.0 * PAD);
        let x = PAD + i as f64 * bw;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#4a7ebb"><title>{label}: {v}</title></rect>"##,
            H - PAD - h,
            (bw - 1.0).max(1.0)
        );
        if i % 8 == 0 {
            let _ = write!(s, r#"<text x="{x:.1}" y="{:.1}" font-size="10">{label}</text>"#, H - PAD + 14.0);
        }
    }
    let _ = write!(
        s,
        r#"<text x="5" y="{:.1}" font-size="11">{max:.0} {y_label}</text><text x="{:.1}" y="{:.1}" font-size="11">{x_label}</text></svg>"#,
        PAD - 5.0,
        W / 2.0 - 60.0,
        H - 8.0
    );
    s
}

fn svg_line(points: &[(f64, f64)]) -> String {
    if points.is_empty() {
        return "<p>no calls</p>".into();
    }
    let max_x = points.iter().map(|p| p.0).fold(1e-9, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max);
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", PAD + x / max_x * (W - 2.0 * PAD), H - PAD - y / max_y * (H - 2.0 * PAD)))
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}"><polyline fill="none" stroke="#c0392b" stroke-width="2" points="{}"/><text x="5" y="{:.1}" font-size="11">{max_y:.0} calls/s</text><text x="{:.1}" y="{:.1}" font-size="11">{max_x:.1} s</text><text x="{PAD}" y="{:.1}" font-size="11">0 s</text></svg>"##,
        path.join(" "),
        PAD - 5.0,
        W - PAD - 20.0,
        H - PAD + 14.0,
        H - PAD + 14.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_ghz_fields_and_types() {
        let mut s = OpStats::new().unwrap();
        for ms in 1..=100 {
            s.record(Duration::from_millis(ms), 0, "");
        }
        s.record(Duration::from_millis(5), 5, "unknown code");
        let r = Report::build("", Options::default(), &s, Duration::from_secs(1), SystemTime::now(), EndReason::Normal);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["count"], 101);
        assert!(v["total"].is_u64() && v["average"].is_u64() && v["fastest"].is_u64() && v["slowest"].is_u64());
        assert!(v["rps"].is_f64());
        assert_eq!(v["statusCodeDistribution"]["OK"], 100);
        assert_eq!(v["statusCodeDistribution"]["NotFound"], 1);
        assert_eq!(v["errorDistribution"]["rpc error: code = NotFound desc = unknown code"], 1);
        let ld = v["latencyDistribution"].as_array().unwrap();
        assert_eq!(ld.len(), 8);
        assert_eq!(ld[0]["percentage"], 10);
        assert_eq!(ld[7]["percentage"], 99.9);
        let hist = v["histogram"].as_array().unwrap();
        assert_eq!(hist.len(), 11);
        assert_eq!(hist.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 100);
        let p50 = r.percentile(50.0).unwrap();
        assert!((49_000_000..52_000_000).contains(&p50), "{p50}");
        assert!(r.summary().contains("[NotFound]\t1 responses"));
        assert!(r.html(&s, &[(5, 1), (3, 0)]).contains("<svg"));
    }
}
