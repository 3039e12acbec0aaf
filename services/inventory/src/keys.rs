//! Every storage key of the inventory, in one place. Layout under a root (`inventory` in
//! production; tests give each case a root of its own on the shared etcd cluster):
//!
//! - `<root>/stock/<sku>`                           -> the sku's stock record: every location's
//!   on hand, reserved and version, plus the low-stock threshold (versioned JSON)
//! - `<root>/reservations/<reservation_id>`         -> a reservation record
//! - `<root>/expiry/<expire_ms u64 BE>/<reservation_id>` -> empty: a HELD reservation's expiry
//!   index, in due order, scanned by every replica's sweeper
//! - `<root>/batches/<request_id>/<chunk u32 BE>`   -> a BatchAdjust chunk's recorded answer
//! - `<root>/requests/<request_id>`                 -> idempotency records (`meshwork_common`)
//! - `<root>/events/<sequence>`, `<root>/event-head` -> the change log (`meshwork_common::EventLog`)
//!
//! One record per sku (rather than one per sku and location) is deliberate: every change of
//! the inventory already serializes on the event log's head, so splitting a sku's locations
//! over several keys buys no concurrency, while one record gives a transaction every location
//! and the sku's total (for the low-stock check) in one read, and half the etcd operations per
//! line. Skus, locations and reservation ids cannot contain `/`, so prefixes never overlap.

/// The root of production keys: the service's name.
pub const ROOT: &str = "inventory";

/// The keys of one inventory deployment (one root). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Returns the keys under `root` (the event log and idempotency records use it as their
    /// service prefix too).
    pub fn new(root: &str) -> Self {
        Keys { root: root.to_string() }
    }

    /// Returns the root (`inventory`).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Returns the key of a sku's stock record.
    pub fn stock(&self, sku: &str) -> Vec<u8> {
        format!("{}/stock/{sku}", self.root).into_bytes()
    }

    /// Returns the key of a reservation record.
    pub fn reservation(&self, id: &str) -> Vec<u8> {
        format!("{}/reservations/{id}", self.root).into_bytes()
    }

    /// Returns the prefix of the expiry index.
    pub fn expiry_prefix(&self) -> Vec<u8> {
        format!("{}/expiry/", self.root).into_bytes()
    }

    /// Returns the first expiry key due after `ms` (exclusive end of a scan of due entries).
    pub fn expiry_after(&self, ms: i64) -> Vec<u8> {
        let mut key = self.expiry_prefix();
        key.extend_from_slice(&(ms.max(0) as u64).saturating_add(1).to_be_bytes());
        key
    }

    /// Returns the expiry index key of a reservation expiring at `expire_ms`.
    pub fn expiry(&self, expire_ms: i64, id: &str) -> Vec<u8> {
        let mut key = self.expiry_prefix();
        key.extend_from_slice(&(expire_ms.max(0) as u64).to_be_bytes());
        key.push(b'/');
        key.extend_from_slice(id.as_bytes());
        key
    }

    /// Returns the reservation id of an expiry index key, if it is one.
    pub fn expiry_id<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let rest = key.strip_prefix(self.expiry_prefix().as_slice())?;
        let id = rest.get(9..)?;
        (rest.get(8) == Some(&b'/')).then_some(())?;
        std::str::from_utf8(id).ok()
    }

    /// Returns the key of chunk `chunk` of the BatchAdjust `request_id`.
    pub fn batch_chunk(&self, request_id: &str, chunk: u32) -> Vec<u8> {
        let mut key = format!("{}/batches/{request_id}/", self.root).into_bytes();
        key.extend_from_slice(&chunk.to_be_bytes());
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time_and_parse_back() {
        let keys = Keys::new(ROOT);
        let a = keys.expiry(255, "res_b");
        let b = keys.expiry(256, "res_a");
        let c = keys.expiry(70_000, "res_a");
        assert!(a < b && b < c);
        assert!(b < keys.expiry_after(256) && keys.expiry_after(256) < keys.expiry(257, "res_a"));
        assert_eq!(keys.expiry_id(&b), Some("res_a"));
        assert_eq!(keys.expiry_id(b"inventory/expiry/short"), None);
        assert!(!keys.stock("ABC").starts_with(&keys.expiry_prefix()));
        assert_ne!(keys.batch_chunk("r", 0), keys.batch_chunk("r", 1));
    }

    /// For any times and ids: expiry keys sort by time first, parse back to their id, and
    /// `expiry_after(t)` ends exactly the entries due at or before `t`.
    #[test]
    fn expiry_keys_preserve_time_order_for_any_entries() {
        fn prop(a: u32, b: u32, shift: u8, id_a: String, id_b: String) -> bool {
            let keys = Keys::new(ROOT);
            let (a, b) = (i64::from(a) << (shift % 31), i64::from(b) << (shift % 31));
            let (ka, kb) = (keys.expiry(a, &id_a), keys.expiry(b, &id_b));
            (a == b || a.cmp(&b) == ka.cmp(&kb))
                && keys.expiry_id(&ka) == Some(id_a.as_str())
                && ka < keys.expiry_after(a)
                && keys.expiry_after(a) <= keys.expiry(a + 1, "")
        }
        quickcheck::QuickCheck::new().tests(2_000).quickcheck(prop as fn(u32, u32, u8, String, String) -> bool);
    }
}
