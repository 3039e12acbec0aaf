//! The HPACK static table (RFC 7541 Appendix A) and a dynamic table with eviction (§4).

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

use bytes::Bytes;

/// Overhead the size of a table entry counts beyond its name and value (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// RFC 7541 Appendix A; index 1 is `STATIC[0]`.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The static entry at `index` (1-based), as shared `Bytes`.
pub fn static_entry(index: usize) -> Option<(Bytes, Bytes)> {
    let (name, value) = STATIC.get(index.checked_sub(1)?)?;
    Some((Bytes::from_static(name.as_bytes()), Bytes::from_static(value.as_bytes())))
}

/// Finds `name` (and `value`) in the static table: `(exact match, name match)`, 1-based.
pub fn static_find(name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
    type ByName = HashMap<&'static [u8], (usize, usize), foldhash::fast::FixedState>;
    static BY_NAME: OnceLock<ByName> = OnceLock::new();
    let by_name = BY_NAME.get_or_init(|| {
        let mut map = ByName::default();
        for (i, (name, _)) in STATIC.iter().enumerate() {
            map.entry(name.as_bytes()).and_modify(|r| r.1 = i + 1).or_insert((i, i + 1));
        }
        map
    });
    let Some(&(start, end)) = by_name.get(name) else { return (None, None) };
    let exact = (start..end).find(|&i| STATIC[i].1.as_bytes() == value).map(|i| i + 1);
    (exact, Some(start + 1))
}

/// A dynamic table: newest entry first, evicting the oldest to stay within `max_size`.
#[derive(Debug)]
pub struct DynamicTable {
    entries: VecDeque<(Bytes, Bytes)>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    pub fn new(max_size: usize) -> Self {
        DynamicTable { entries: VecDeque::new(), size: 0, max_size }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry at dynamic index `i` (0 = newest).
    pub fn get(&self, i: usize) -> Option<&(Bytes, Bytes)> {
        self.entries.get(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Bytes, Bytes)> {
        self.entries.iter()
    }

    /// Changes the maximum size, evicting as needed.
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    /// Inserts an entry; one larger than the table empties it (RFC 7541 §4.4).
    pub fn insert(&mut self, name: Bytes, value: Bytes) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.entries.push_front((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_lookup() {
        assert_eq!(static_find(b":method", b"POST"), (Some(3), Some(2)));
        assert_eq!(static_find(b":status", b"418"), (None, Some(8)));
        assert_eq!(static_find(b"content-type", b"application/grpc"), (None, Some(31)));
        assert_eq!(static_find(b"x-nope", b""), (None, None));
        assert_eq!(static_entry(61).unwrap().0, "www-authenticate");
        assert!(static_entry(0).is_none() && static_entry(62).is_none());
    }

    #[test]
    fn eviction() {
        let mut t = DynamicTable::new(100);
        t.insert(Bytes::from_static(b"aaaa"), Bytes::from_static(b"1111")); // 40
        t.insert(Bytes::from_static(b"bbbb"), Bytes::from_static(b"2222")); // 80
        t.insert(Bytes::from_static(b"cccc"), Bytes::from_static(b"3333")); // evicts aaaa
        assert_eq!(t.len(), 2);
        assert_eq!(t.size(), 80);
        assert_eq!(t.get(0).unwrap().0, "cccc");
        assert_eq!(t.get(1).unwrap().0, "bbbb");
        t.set_max_size(50);
        assert_eq!(t.len(), 1);
        t.insert(Bytes::from(vec![b'x'; 100]), Bytes::new());
        assert_eq!((t.len(), t.size()), (0, 0));
    }
}
