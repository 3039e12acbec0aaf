//! Every storage key of the waste service, in one place. Layout under a root (`waste` in
//! production; tests give each case a root of its own on the shared etcd cluster):
//!
//! - `<root>/sites/<site_id>`                      -> a depot or landfill (versioned JSON)
//! - `<root>/trucks/<truck_id>`                    -> a truck
//! - `<root>/bins/<bin_id>`                        -> a bin: current fill and prediction state
//! - `<root>/history/<bin_id>/<time_ms u64 BE>`    -> one reading (fill percent, f64 BE)
//! - `<root>/plans/<plan_id>`                      -> a plan (its route ids and totals)
//! - `<root>/routes/<route_id>`                    -> a route and its stops' execution state
//! - `<root>/positions/<truck_id>`                 -> a truck's latest GPS ping
//! - `<root>/r/<route_id>/events/...`              -> a route's own event log (WatchRoute)
//! - `<root>/requests/<request_id>`                -> idempotency records
//!
//! Ids are `[A-Za-z0-9_-]`, so no id contains `/` and prefixes never overlap; the big-endian
//! time keeps a bin's history in time order.

/// The root of production keys: the service's name.
pub const ROOT: &str = "waste";

/// The keys of one deployment (one root). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Keys under `root`.
    pub fn new(root: &str) -> Self {
        Keys { root: root.to_string() }
    }

    /// The root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// A site's key.
    pub fn site(&self, id: &str) -> Vec<u8> {
        format!("{}/sites/{id}", self.root).into_bytes()
    }

    /// Prefix of every site.
    pub fn sites(&self) -> Vec<u8> {
        format!("{}/sites/", self.root).into_bytes()
    }

    /// A truck's key.
    pub fn truck(&self, id: &str) -> Vec<u8> {
        format!("{}/trucks/{id}", self.root).into_bytes()
    }

    /// Prefix of every truck.
    pub fn trucks(&self) -> Vec<u8> {
        format!("{}/trucks/", self.root).into_bytes()
    }

    /// A bin's key.
    pub fn bin(&self, id: &str) -> Vec<u8> {
        format!("{}/bins/{id}", self.root).into_bytes()
    }

    /// Prefix of every bin.
    pub fn bins(&self) -> Vec<u8> {
        format!("{}/bins/", self.root).into_bytes()
    }

    /// Prefix of a bin's history.
    pub fn history_prefix(&self, bin: &str) -> Vec<u8> {
        format!("{}/history/{bin}/", self.root).into_bytes()
    }

    /// Key of one reading of a bin.
    pub fn history(&self, bin: &str, time_ms: i64) -> Vec<u8> {
        let mut key = self.history_prefix(bin);
        key.extend_from_slice(&(time_ms.max(0) as u64).to_be_bytes());
        key
    }

    /// A plan's key.
    pub fn plan(&self, id: &str) -> Vec<u8> {
        format!("{}/plans/{id}", self.root).into_bytes()
    }

    /// A route's key.
    pub fn route(&self, id: &str) -> Vec<u8> {
        format!("{}/routes/{id}", self.root).into_bytes()
    }

    /// A truck's position key.
    pub fn position(&self, truck: &str) -> Vec<u8> {
        format!("{}/positions/{truck}", self.root).into_bytes()
    }

    /// The key root of a route's event log (`EventLog::new(store, ..)`).
    pub fn route_log(&self, route: &str) -> String {
        format!("{}/r/{route}", self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_by_time_and_stay_under_their_bin() {
        let k = Keys::new(ROOT);
        let a = k.history("b1", 255);
        let b = k.history("b1", 256);
        let c = k.history("b1", 1_700_000_000_000);
        assert!(a < b && b < c);
        assert!(a.starts_with(&k.history_prefix("b1")));
        assert!(!k.history("b10", 1).starts_with(&k.history_prefix("b1")));
        assert!(!k.bin("x").starts_with(&k.sites()));
        assert_eq!(k.route_log("pl_x-0"), "waste/r/pl_x-0");
    }
}
