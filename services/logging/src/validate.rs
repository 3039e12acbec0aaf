//! Field rules of the log store's requests, shared by the gRPC API and the Loki HTTP API.

use std::time::Duration;

use meshwork_common::{ServiceError, ServiceResult};

use crate::logql::{self, Query};

/// Most entries in one push.
pub const MAX_PUSH_ENTRIES: usize = 100_000;
/// Most lines a log query returns.
pub const MAX_LIMIT: usize = 50_000;
/// Lines a log query returns when no limit is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most points of a range query per series.
pub const MAX_POINTS: i64 = 11_000;
/// Longest LogQL text.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Checks a tenant id: 1-64 chars of `[A-Za-z0-9_.-]`.
pub fn tenant(field: &str, tenant: &str) -> ServiceResult<()> {
    if tenant.is_empty()
        || tenant.len() > 64
        || !tenant.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
    {
        return Err(ServiceError::invalid(field, "must be 1-64 characters of [A-Za-z0-9_.-]"));
    }
    Ok(())
}

/// Parses a LogQL query; a syntax error is INVALID_ARGUMENT `logql: at column N: expected X`.
pub fn logql(text: &str) -> ServiceResult<Query> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ServiceError::invalid("logql", format!("longer than {MAX_QUERY_BYTES} bytes")));
    }
    logql::parse(text).map_err(|e| {
        let full = e.to_string();
        ServiceError::invalid("logql", full.strip_prefix("logql: ").unwrap_or(&full).to_string())
    })
}

/// Returns the limit of a log query (0 = the default).
pub fn limit(field: &str, limit: i64) -> ServiceResult<usize> {
    match limit {
        0 => Ok(DEFAULT_LIMIT),
        n if n < 0 || n as usize > MAX_LIMIT => Err(ServiceError::invalid(field, format!("must be 0 to {MAX_LIMIT}"))),
        n => Ok(n as usize),
    }
}

/// Resolves a query's time range: `end` defaults to now, `start` to `end - default_span`;
/// `start` must be before `end`.
pub fn range(start: Option<i64>, end: Option<i64>, now: i64, default_span: Duration) -> ServiceResult<(i64, i64)> {
    let end = end.unwrap_or(now);
    let start = start.unwrap_or_else(|| end.saturating_sub(default_span.as_nanos() as i64));
    if start >= end {
        return Err(ServiceError::invalid("start", "must be before end"));
    }
    Ok((start, end))
}

/// Resolves a range query's step (`None` = Grafana's default, range / 250 and at least 1 s)
/// and checks the number of points.
pub fn step(step: Option<Duration>, start: i64, end: i64) -> ServiceResult<i64> {
    let step = match step {
        Some(s) if s < Duration::from_millis(1) => return Err(ServiceError::invalid("step", "must be at least 1ms")),
        Some(s) => i64::try_from(s.as_nanos()).unwrap_or(i64::MAX),
        None => ((end - start) / 250).max(1_000_000_000),
    };
    if (end - start) / step >= MAX_POINTS {
        return Err(ServiceError::invalid("step", format!("too small: more than {MAX_POINTS} points in the range")));
    }
    Ok(step)
}

/// Converts a protobuf timestamp to unix ns.
pub fn timestamp_ns(field: &str, ts: &prost_types::Timestamp) -> ServiceResult<i64> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(ServiceError::invalid(field, "nanos must be 0 to 999,999,999"));
    }
    ts.seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos)))
        .ok_or_else(|| ServiceError::invalid(field, "out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(tenant("tenant", "fake").is_ok());
        assert!(tenant("tenant", "a/b").is_err());
        assert!(tenant("tenant", "").is_err());
        let e = logql(r#"{app="x"} |= "#).unwrap_err();
        assert_eq!(e.to_string(), "logql: at column 14: expected a quoted filter term, found end of query");
        assert_eq!(limit("limit", 0).unwrap(), DEFAULT_LIMIT);
        assert!(limit("limit", -1).is_err());
        assert!(range(Some(5), Some(5), 0, Duration::from_secs(1)).is_err());
        assert!(step(Some(Duration::from_millis(1)), 0, 3_600_000_000_000).is_err());
        assert_eq!(step(None, 0, 1_000_000_000).unwrap(), 1_000_000_000);
    }
}
