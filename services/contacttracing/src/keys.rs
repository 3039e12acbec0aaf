//! Every key the contact-tracing service writes, order-preserving (numbers big-endian):
//!
//! - `contacttracing/signing`: the signing keys (generated on first start, shared by replicas);
//! - `contacttracing/code/<code>`: a verification code; `contacttracing/token/<token>`: a token;
//! - `contacttracing/upload/<code id>`: the one upload of a code; `contacttracing/revision/<rt>`:
//!   its revision token;
//! - `contacttracing/key/<window start s: u64><key id>`: a diagnosis key, grouped by the export
//!   window of its arrival (random ids, so stored order says nothing of who uploaded together);
//! - `contacttracing/expiry/<expire ms: u64><window: u64><key id>`: the sweeper's index;
//! - `contacttracing/window/<window start s: u64>`: an export window that holds keys;
//! - `contacttracing/area/<geohash-5>/<day: u32><code id>`: one positive report of a cell;
//! - `contacttracing/rate/<device id>\0<day: u32>`: a device's uploads that day.
//!
//! The kit adds `contacttracing/requests/...` (idempotency of IssueCode).

/// The default key root: the service name.
pub const SERVICE: &str = "contacttracing";

/// The keys under one root (the service name, or a root of its own for a test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(SERVICE)
    }
}

impl Keys {
    /// Keys under `root`.
    pub fn new(root: impl Into<String>) -> Self {
        Keys { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &str {
        &self.root
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(self.root.as_bytes());
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }

    /// The signing keys.
    pub fn signing(&self) -> Vec<u8> {
        self.key(&[b"/signing"])
    }

    /// A verification code.
    pub fn code(&self, code: &str) -> Vec<u8> {
        self.key(&[b"/code/", code.as_bytes()])
    }

    /// A verification token.
    pub fn token(&self, token: &str) -> Vec<u8> {
        self.key(&[b"/token/", token.as_bytes()])
    }

    /// The upload of a code (by the code's id, the certificate's `jti`).
    pub fn upload(&self, code_id: &str) -> Vec<u8> {
        self.key(&[b"/upload/", code_id.as_bytes()])
    }

    /// The revision token index.
    pub fn revision(&self, revision_token: &str) -> Vec<u8> {
        self.key(&[b"/revision/", revision_token.as_bytes()])
    }

    /// Prefix of the keys that arrived in one window.
    pub fn window_keys_prefix(&self, window_start_s: u64) -> Vec<u8> {
        self.key(&[b"/key/", &window_start_s.to_be_bytes()])
    }

    /// A stored diagnosis key.
    pub fn diagnosis_key(&self, window_start_s: u64, key_id: &str) -> Vec<u8> {
        let mut k = self.window_keys_prefix(window_start_s);
        k.extend_from_slice(key_id.as_bytes());
        k
    }

    /// Prefix of the expiry index.
    pub fn expiry_prefix(&self) -> Vec<u8> {
        self.key(&[b"/expiry/"])
    }

    /// First expiry index key after every entry due at or before `now_ms`.
    pub fn expiry_after(&self, now_ms: i64) -> Vec<u8> {
        let mut k = self.expiry_prefix();
        k.extend_from_slice(&(now_ms.max(0) as u64).saturating_add(1).to_be_bytes());
        k
    }

    /// The expiry index entry of a key.
    pub fn expiry(&self, expire_ms: i64, window_start_s: u64, key_id: &str) -> Vec<u8> {
        let mut k = self.expiry_prefix();
        k.extend_from_slice(&(expire_ms.max(0) as u64).to_be_bytes());
        k.extend_from_slice(&window_start_s.to_be_bytes());
        k.extend_from_slice(key_id.as_bytes());
        k
    }

    /// The diagnosis key an expiry entry points to.
    pub fn key_of_expiry(&self, entry: &[u8]) -> Option<Vec<u8>> {
        let rest = entry.strip_prefix(self.expiry_prefix().as_slice())?;
        let window = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
        let id = std::str::from_utf8(rest.get(16..)?).ok()?;
        Some(self.diagnosis_key(window, id))
    }

    /// Prefix of the window markers.
    pub fn window_prefix(&self) -> Vec<u8> {
        self.key(&[b"/window/"])
    }

    /// The marker of a window that holds keys.
    pub fn window(&self, window_start_s: u64) -> Vec<u8> {
        let mut k = self.window_prefix();
        k.extend_from_slice(&window_start_s.to_be_bytes());
        k
    }

    /// The window start of a marker key.
    pub fn window_of(&self, marker: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(marker.strip_prefix(self.window_prefix().as_slice())?.try_into().ok()?))
    }

    /// Prefix of the area reports of cells under `geohash_prefix`.
    pub fn area_prefix(&self, geohash_prefix: &str) -> Vec<u8> {
        self.key(&[b"/area/", geohash_prefix.as_bytes()])
    }

    /// One positive report of `cell` (geohash-5) on Unix `day`.
    pub fn area(&self, cell: &str, day: u32, code_id: &str) -> Vec<u8> {
        self.key(&[b"/area/", cell.as_bytes(), b"/", &day.to_be_bytes(), code_id.as_bytes()])
    }

    /// The cell and day of an area report key.
    pub fn area_of(&self, entry: &[u8]) -> Option<(String, u32)> {
        let rest = entry.strip_prefix(self.area_prefix("").as_slice())?;
        let cell = std::str::from_utf8(rest.get(..5)?).ok()?.to_string();
        let day = u32::from_be_bytes(rest.get(6..10)?.try_into().ok()?);
        Some((cell, day))
    }

    /// A device's upload count on Unix `day`.
    pub fn rate(&self, device_id: &str, day: u32) -> Vec<u8> {
        self.key(&[b"/rate/", device_id.as_bytes(), b"\0", &day.to_be_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        let k = Keys::default();
        assert_eq!(k.code("12345678"), b"contacttracing/code/12345678");
        let e = k.expiry(5_000, 3_600, "abc");
        assert!(e < k.expiry_after(5_000) && e >= k.expiry_after(4_999));
        assert_eq!(k.key_of_expiry(&e), Some(k.diagnosis_key(3_600, "abc")));
        assert!(k.diagnosis_key(3_600, "zz").starts_with(&k.window_keys_prefix(3_600)));
        assert!(k.window(3_600) < k.window(7_200) && k.window(255) < k.window(256));
        assert_eq!(k.window_of(&k.window(7_200)), Some(7_200));
        let a = k.area("tdr1v", 20_000, "cd_1");
        assert!(a.starts_with(&k.area_prefix("tdr")));
        assert_eq!(k.area_of(&a), Some(("tdr1v".to_string(), 20_000)));
    }
}
