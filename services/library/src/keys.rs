//! Every store key of the library, in one place. Layout under a root (`library` in
//! production; tests give each case a root of its own on the shared etcd cluster):
//!
//! - `<root>/titles/<isbn13>`                  -> a title: its text, its copies' barcodes, the
//!   barcodes on the shelf and its holds queue (the search index follows this prefix)
//! - `<root>/copies/<barcode>`                 -> a copy: status, loan or hold shelf details
//! - `<root>/members/<member_id>`              -> a member: type, loans, holds, fine balance
//! - `<root>/pickups/<deadline_ms u64 BE>/<isbn13>/<member_id>` -> empty: a copy waiting on
//!   the hold shelf, in deadline order, scanned by every replica's sweeper
//! - `<root>/requests/<request_id>`            -> idempotency records (`meshwork_common`)
//!
//! A title's holds queue lives in the title record, so that a return (which hands the copy to
//! the first hold) and a renewal (refused while holds wait) read one key. ISBNs are digits,
//! barcodes `[A-Z0-9-]` and member ids `[A-Za-z0-9._-]`: none contains `/`.

/// The root of production keys: the service's name.
pub const ROOT: &str = "library";

/// The keys of one library deployment (one root). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Returns the keys under `root`.
    pub fn new(root: &str) -> Self {
        Keys { root: root.to_string() }
    }

    /// Returns the root (`library`); idempotency records use it as their service prefix.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Returns the prefix of every title.
    pub fn titles_prefix(&self) -> String {
        format!("{}/titles/", self.root)
    }

    /// Returns the key of a title.
    pub fn title(&self, isbn: &str) -> Vec<u8> {
        format!("{}/titles/{isbn}", self.root).into_bytes()
    }

    /// Returns the ISBN of a title key, if it is one.
    pub fn isbn_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        std::str::from_utf8(key.strip_prefix(self.titles_prefix().as_bytes())?).ok()
    }

    /// Returns the key of a copy.
    pub fn copy(&self, barcode: &str) -> Vec<u8> {
        format!("{}/copies/{barcode}", self.root).into_bytes()
    }

    /// Returns the key of a member.
    pub fn member(&self, member_id: &str) -> Vec<u8> {
        format!("{}/members/{member_id}", self.root).into_bytes()
    }

    /// Returns the prefix of the pickup deadline index.
    pub fn pickups_prefix(&self) -> Vec<u8> {
        format!("{}/pickups/", self.root).into_bytes()
    }

    /// Returns the first pickup key due after `ms` (the exclusive end of a scan of due ones).
    pub fn pickups_after(&self, ms: i64) -> Vec<u8> {
        let mut key = self.pickups_prefix();
        key.extend_from_slice(&(ms.max(0) as u64).saturating_add(1).to_be_bytes());
        key
    }

    /// Returns the pickup index key of `member_id`'s copy of `isbn`, due at `deadline_ms`.
    pub fn pickup(&self, deadline_ms: i64, isbn: &str, member_id: &str) -> Vec<u8> {
        let mut key = self.pickups_prefix();
        key.extend_from_slice(&(deadline_ms.max(0) as u64).to_be_bytes());
        key.extend_from_slice(format!("/{isbn}/{member_id}").as_bytes());
        key
    }

    /// Returns the ISBN of a pickup index key, if it is one.
    pub fn pickup_isbn<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let rest = key.strip_prefix(self.pickups_prefix().as_slice())?;
        (rest.get(8) == Some(&b'/')).then_some(())?;
        let rest = std::str::from_utf8(rest.get(9..)?).ok()?;
        rest.split_once('/').map(|(isbn, _)| isbn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_pickups_sort_by_deadline() {
        let k = Keys::new("library");
        assert_eq!(k.isbn_of(&k.title("9780306406157")), Some("9780306406157"));
        assert_eq!(k.isbn_of(&k.copy("B-1")), None);
        let early = k.pickup(1_000, "9780306406157", "m-1");
        let late = k.pickup(2_000, "9780306406157", "a");
        assert!(early < late);
        assert_eq!(k.pickup_isbn(&early), Some("9780306406157"));
        assert!(early < k.pickups_after(1_000) && k.pickups_after(1_000) <= late);
        assert!(late >= k.pickups_after(1_999));
        assert_eq!(k.pickup_isbn(b"library/pickups/short"), None);
    }
}
