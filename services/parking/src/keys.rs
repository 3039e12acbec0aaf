//! Every storage key of the parking service, in one place. Layout under a root (`parking` in
//! production; tests give each case a root of its own on the shared etcd cluster):
//!
//! - `<root>/lots/<lot>`                                  -> the lot (immutable once created)
//! - `<root>/occ/<lot>/<type letter>/<spot>`              -> the spot's occupancy: its live
//!   reservations' ranges, read and written in the transaction of every reservation change of
//!   that spot (absent = free); by type, so a search scans one type's spots
//! - `<root>/reservations/<id>`                           -> a reservation
//! - `<root>/by-plate/<plate>/<start u64 BE>/<id>`        -> empty: reservations of a plate
//! - `<root>/by-lot/<lot>/<start u64 BE>/<id>`            -> empty: reservations of a lot
//! - `<root>/due/hold/<expire u64 BE>/<id>`               -> empty: holds, in expiry order
//! - `<root>/due/noshow/<start + 30 min u64 BE>/<id>`     -> empty: confirmed reservations,
//!   in no-show order
//! - `<root>/requests/<request_id>`                       -> idempotency records
//!
//! Lot, spot and reservation ids and plates cannot contain `/`, so prefixes never overlap.

/// The root of production keys: the service's name.
pub const ROOT: &str = "parking";

/// Which due index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Holds by expiry time.
    Hold,
    /// Confirmed reservations by no-show time.
    NoShow,
}

impl Due {
    fn name(self) -> &'static str {
        match self {
            Due::Hold => "hold",
            Due::NoShow => "noshow",
        }
    }
}

/// The keys of one parking deployment (one root). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

fn be(ms: i64) -> [u8; 8] {
    (ms.max(0) as u64).to_be_bytes()
}

impl Keys {
    /// Returns the keys under `root`.
    pub fn new(root: &str) -> Self {
        Keys { root: root.to_string() }
    }

    /// Returns the root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Returns the prefix of every key of this deployment.
    pub fn all(&self) -> Vec<u8> {
        format!("{}/", self.root).into_bytes()
    }

    /// Returns the key of a lot.
    pub fn lot(&self, lot: &str) -> Vec<u8> {
        format!("{}/lots/{lot}", self.root).into_bytes()
    }

    /// Returns the prefix of a lot's occupancy records, of one type (its letter) or all.
    pub fn occ_prefix(&self, lot: &str, letter: Option<char>) -> Vec<u8> {
        match letter {
            Some(l) => format!("{}/occ/{lot}/{l}/", self.root).into_bytes(),
            None => format!("{}/occ/{lot}/", self.root).into_bytes(),
        }
    }

    /// Returns the key of a spot's occupancy record.
    pub fn occ(&self, lot: &str, letter: char, spot: &str) -> Vec<u8> {
        format!("{}/occ/{lot}/{letter}/{spot}", self.root).into_bytes()
    }

    /// Returns the spot id of an occupancy key.
    pub fn occ_spot<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let text = std::str::from_utf8(key).ok()?;
        text.rsplit('/').next()
    }

    /// Returns the key of a reservation.
    pub fn reservation(&self, id: &str) -> Vec<u8> {
        format!("{}/reservations/{id}", self.root).into_bytes()
    }

    /// Returns the prefix of the reservations of a plate.
    pub fn by_plate_prefix(&self, plate: &str) -> Vec<u8> {
        format!("{}/by-plate/{plate}/", self.root).into_bytes()
    }

    /// Returns the prefix of the reservations of a lot.
    pub fn by_lot_prefix(&self, lot: &str) -> Vec<u8> {
        format!("{}/by-lot/{lot}/", self.root).into_bytes()
    }

    /// Returns `prefix` followed by a start time (a bound of a listing).
    pub fn at(prefix: &[u8], start: i64) -> Vec<u8> {
        let mut key = prefix.to_vec();
        key.extend_from_slice(&be(start));
        key
    }

    /// Returns an index entry: `prefix`, the start time, `/`, the id.
    pub fn entry(prefix: &[u8], start: i64, id: &str) -> Vec<u8> {
        let mut key = Keys::at(prefix, start);
        key.push(b'/');
        key.extend_from_slice(id.as_bytes());
        key
    }

    /// Returns the id of an index entry under `prefix`.
    pub fn entry_id<'k>(prefix: &[u8], key: &'k [u8]) -> Option<&'k str> {
        let rest = key.strip_prefix(prefix)?;
        (rest.get(8) == Some(&b'/')).then_some(())?;
        std::str::from_utf8(rest.get(9..)?).ok()
    }

    /// Returns the prefix of a due index.
    pub fn due_prefix(&self, due: Due) -> Vec<u8> {
        format!("{}/due/{}/", self.root, due.name()).into_bytes()
    }

    /// Returns a due index entry.
    pub fn due(&self, due: Due, ms: i64, id: &str) -> Vec<u8> {
        Keys::entry(&self.due_prefix(due), ms, id)
    }

    /// Returns the first due key after `ms` (exclusive end of a scan of due entries).
    pub fn due_after(&self, due: Due, ms: i64) -> Vec<u8> {
        Keys::at(&self.due_prefix(due), ms.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_time_and_parse_back() {
        let keys = Keys::new(ROOT);
        let a = keys.due(Due::Hold, 255, "rsv_b");
        let b = keys.due(Due::Hold, 256, "rsv_a");
        assert!(a < b && b < keys.due_after(Due::Hold, 256));
        assert!(keys.due_after(Due::Hold, 256) < keys.due(Due::Hold, 257, "rsv_a"));
        assert_eq!(Keys::entry_id(&keys.due_prefix(Due::Hold), &b), Some("rsv_a"));
        assert_eq!(Keys::entry_id(&keys.due_prefix(Due::NoShow), &b), None);
        let plate = keys.by_plate_prefix("AB123");
        assert!(Keys::entry(&plate, 5, "x") < Keys::entry(&plate, 6, "a"));
        assert!(!keys.by_plate_prefix("AB1").starts_with(&plate) && !plate.starts_with(&keys.by_plate_prefix("AB1")));
        assert_eq!(keys.occ_spot(&keys.occ("lot", 'r', "l1-r7")), Some("l1-r7"));
        assert!(keys.occ("lot", 'r', "s").starts_with(&keys.occ_prefix("lot", Some('r'))));
        assert!(keys.occ("lot", 'r', "s").starts_with(&keys.occ_prefix("lot", None)));
        assert!(!keys.occ("lot2", 'r', "s").starts_with(&keys.occ_prefix("lot", None)));
    }

    /// For any times and ids: due keys sort by time first, parse back to their id, and
    /// `due_after(t)` ends exactly the entries due at or before `t`.
    #[test]
    fn due_keys_preserve_time_order_for_any_entries() {
        fn prop(a: u32, b: u32, shift: u8, id_a: String, id_b: String) -> bool {
            let keys = Keys::new(ROOT);
            let (a, b) = (i64::from(a) << (shift % 31), i64::from(b) << (shift % 31));
            let (ka, kb) = (keys.due(Due::Hold, a, &id_a), keys.due(Due::Hold, b, &id_b));
            (a == b || a.cmp(&b) == ka.cmp(&kb))
                && Keys::entry_id(&keys.due_prefix(Due::Hold), &ka) == Some(id_a.as_str())
                && ka < keys.due_after(Due::Hold, a)
                && keys.due_after(Due::Hold, a) <= keys.due(Due::Hold, a + 1, "")
        }
        quickcheck::QuickCheck::new().tests(2_000).quickcheck(prop as fn(u32, u32, u8, String, String) -> bool);
    }
}
