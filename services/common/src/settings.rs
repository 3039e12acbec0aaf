//! Per-service tunables given on the command line (`meshwork up --payment-failure-rate 0.3`
//! becomes `payments.failure_rate = "0.3"`), so that a service reads its own knobs from its
//! [`ServiceContext`](crate::ServiceContext) without the binary knowing its config type. The
//! command line checks each value's type before any service starts.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

/// Named string settings, `<service>.<knob>`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Settings(Arc<BTreeMap<String, String>>);

impl Settings {
    /// Returns these settings with `key` set to `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        Arc::make_mut(&mut self.0).insert(key.into(), value.to_string());
        self
    }

    /// Returns the raw value of `key`, if set.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Returns `key` parsed as `T`, or `default` when unset. A value that does not parse is
    /// logged and `default` used (the command line validates types before this runs).
    pub fn get_or<T: FromStr>(&self, key: &str, default: T) -> T {
        match self.raw(key) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                tracing::warn!(key, value = raw, "ignoring an unparsable setting");
                default
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_fall_back_to_the_default() {
        let s = Settings::default().with("payments.failure_rate", 0.3).with("payments.latency_ms", "x");
        assert_eq!(s.get_or("payments.failure_rate", 0.0), 0.3);
        assert_eq!(s.get_or("payments.latency_ms", 7u64), 7);
        assert_eq!(s.get_or("payments.missing", 5u64), 5);
        assert_eq!(s.raw("payments.failure_rate"), Some("0.3"));
    }
}
