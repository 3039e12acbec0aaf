//! Every storage key of the app store, in one place. Layout under a root (`appstore` in
//! production; tests give each case a root of its own on the shared etcd cluster):
//!
//! - `<root>/developers/<developer_id>`               -> the developer
//! - `<root>/apps/<package>`                          -> the app with its tracks (one record, so
//!   a track change is one conditional write and CheckUpdate one cached read)
//! - `<root>/releases/<package>/<version_code, 19 digits>` -> an uploaded release
//! - `<root>/devices/<package>/<device_id>`           -> a device's install state (one key per
//!   device: concurrent installs of one app never meet on a key)
//! - `<root>/installs/<package>/added`, `.../removed` -> install and uninstall counts (batched
//!   counters, written by flushes, not by each install)
//! - `<root>/daily/<day, 10 digits>/<package>`        -> installs of a UTC day (days since the
//!   epoch), so the charts scan 14 days at once
//! - `<root>/requests/<request_id>`                   -> idempotency records
//!
//! Package names, developer ids and device ids cannot contain `/`, so prefixes never overlap;
//! the zero-padded numbers keep keys in numeric order.

/// The root of production keys: the service's name.
pub const ROOT: &str = "appstore";

/// Which install counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Installs ever counted, of a package.
    Added(String),
    /// Uninstalls ever counted, of a package.
    Removed(String),
    /// Installs of a package on a day (days since the epoch).
    Daily(String, i64),
}

impl Counter {
    /// Returns the package the counter belongs to.
    pub fn package(&self) -> &str {
        match self {
            Counter::Added(p) | Counter::Removed(p) | Counter::Daily(p, _) => p,
        }
    }
}

/// The keys of one app store (one root). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Returns the keys under `root`.
    pub fn new(root: &str) -> Self {
        Keys { root: root.to_string() }
    }

    /// Returns the root (also the idempotency records' service name).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Returns the key of a developer.
    pub fn developer(&self, id: &str) -> Vec<u8> {
        format!("{}/developers/{id}", self.root).into_bytes()
    }

    /// Returns the prefix of every app.
    pub fn apps_prefix(&self) -> String {
        format!("{}/apps/", self.root)
    }

    /// Returns the key of an app.
    pub fn app(&self, package: &str) -> Vec<u8> {
        format!("{}/apps/{package}", self.root).into_bytes()
    }

    /// Returns the package of an app key, or `None` for another key.
    pub fn package_of<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(self.root.as_str())?.strip_prefix("/apps/").filter(|p| !p.is_empty() && !p.contains('/'))
    }

    /// Returns the key of a release.
    pub fn release(&self, package: &str, version_code: i64) -> Vec<u8> {
        format!("{}/releases/{package}/{:019}", self.root, version_code.max(0)).into_bytes()
    }

    /// Returns the key of a device's install state.
    pub fn device(&self, package: &str, device_id: &str) -> Vec<u8> {
        format!("{}/devices/{package}/{device_id}", self.root).into_bytes()
    }

    /// Returns the store key of a counter.
    pub fn counter(&self, counter: &Counter) -> Vec<u8> {
        match counter {
            Counter::Added(p) => format!("{}/installs/{p}/added", self.root),
            Counter::Removed(p) => format!("{}/installs/{p}/removed", self.root),
            Counter::Daily(p, day) => format!("{}/daily/{:010}/{p}", self.root, day.max(&0)),
        }
        .into_bytes()
    }

    /// Returns the prefix of the install totals.
    pub fn installs_prefix(&self) -> String {
        format!("{}/installs/", self.root)
    }

    /// Parses an install total's key into its counter.
    pub fn parse_installs(&self, key: &[u8]) -> Option<Counter> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.installs_prefix())?;
        let (package, which) = rest.split_once('/')?;
        match which {
            "added" => Some(Counter::Added(package.to_string())),
            "removed" => Some(Counter::Removed(package.to_string())),
            _ => None,
        }
    }

    /// Returns the range of the daily counters of days `first..=last`.
    pub fn daily_range(&self, first: i64, last: i64) -> (Vec<u8>, Vec<u8>) {
        let start = format!("{}/daily/{:010}/", self.root, first.max(0));
        // The day after `last`: every key of `last` sorts below it.
        let end = format!("{}/daily/{:010}/", self.root, last.max(0) + 1);
        (start.into_bytes(), end.into_bytes())
    }

    /// Parses a daily counter's key into (day, package).
    pub fn parse_daily<'a>(&self, key: &'a [u8]) -> Option<(i64, &'a str)> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.root.as_str())?.strip_prefix("/daily/")?;
        let (day, package) = rest.split_once('/')?;
        Some((day.parse().ok()?, package))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let k = Keys::new("as");
        assert_eq!(k.package_of(&k.app("com.a.b")), Some("com.a.b"));
        assert_eq!(k.package_of(b"as/apps/"), None);
        assert_eq!(k.parse_installs(&k.counter(&Counter::Added("x.y".into()))), Some(Counter::Added("x.y".into())));
        assert_eq!(k.parse_daily(&k.counter(&Counter::Daily("x.y".into(), 20_000))), Some((20_000, "x.y")));
        let (start, end) = k.daily_range(10, 11);
        let day11 = k.counter(&Counter::Daily("z.z".into(), 11));
        assert!(start <= day11 && day11 < end);
        assert!(k.counter(&Counter::Daily("a.a".into(), 12)) >= end);
        assert!(k.release("a.b", 9) < k.release("a.b", 10));
    }
}
