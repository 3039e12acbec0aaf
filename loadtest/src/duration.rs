//! Go-style durations as ghz takes them on the command line (`10s`, `500ms`, `1m30s`) and
//! the short human form the summary prints (`2.31 ms`).

use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` with units ns, us, µs, ms, s, m, h;
/// a bare number means seconds.
pub fn parse(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs, raw);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("duration {raw:?}: expected a number"));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| format!("duration {raw:?}: bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("duration {raw:?}: missing unit (ns, us, ms, s, m, h)")),
            other => return Err(format!("duration {raw:?}: unknown unit {other:?}")),
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    seconds(total, raw)
}

fn seconds(secs: f64, raw: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("duration {raw:?}: must be a non-negative number"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration for humans with two decimals in the largest fitting unit, as ghz does.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Formats a duration in Go's `time.Duration.String()` style (`10s`, `1m30s`, `250ms`) for
/// the report's options.
pub fn go_string(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return if ns.is_multiple_of(1_000_000) {
            format!("{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            format!("{}µs", ns / 1_000)
        } else {
            format!("{ns}ns")
        };
    }
    let secs = d.as_secs_f64();
    let h = (secs / 3600.0).floor();
    let m = ((secs - h * 3600.0) / 60.0).floor();
    let s = secs - h * 3600.0 - m * 60.0;
    let mut out = String::new();
    if h > 0.0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0.0 || m > 0.0 {
        out.push_str(&format!("{m}m"));
    }
    let s = format!("{s:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    out.push_str(s);
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("3").unwrap(), Duration::from_secs(3));
        assert!(parse("10x").is_err());
        assert!(parse("s").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(go_string(Duration::from_secs(10)), "10s");
        assert_eq!(go_string(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_string(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_micros(2310)), "2.31 ms");
    }
}
