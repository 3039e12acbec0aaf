//! Every storage key of the URL shortener, in one place. Layout:
//!
//! - `urlshortener/link/<code>`                 -> link record (versioned JSON, `meshwork_common::record`)
//! - `urlshortener/counter/ids`                 -> next unleased id (u64 big-endian)
//! - `urlshortener/secret/codes`                -> the short-code permutation's secret (32 bytes)
//! - `urlshortener/clicks/<code>/total`         -> clicks (u64 big-endian, `meshwork_common::counter`)
//! - `urlshortener/clicks/<code>/day/<date>`    -> clicks that UTC day (date `YYYY-MM-DD`, sorts by time)
//! - `urlshortener/clicks/<code>/ref/<host>`    -> clicks from that referrer host
//! - `urlshortener/requests/<request_id>`       -> the code a Shorten with that `request_id` made
//!   (`meshwork_common::idempotency`, kept 24 h)
//!
//! Codes and referrers are restricted to characters that cannot contain `/`, so the prefixes
//! never overlap.

pub const LINK_PREFIX: &str = "urlshortener/link/";
pub const ID_COUNTER: &str = "urlshortener/counter/ids";
/// The per-deployment secret of the short-code permutation: written once, never changed.
pub const CODE_SECRET: &str = "urlshortener/secret/codes";

/// Returns the key of a link record.
pub fn link(code: &str) -> Vec<u8> {
    format!("{LINK_PREFIX}{code}").into_bytes()
}

/// Returns the key of a code's total click counter.
pub fn clicks_total(code: &str) -> Vec<u8> {
    format!("urlshortener/clicks/{code}/total").into_bytes()
}

/// Returns the prefix of a code's per-day counters.
pub fn clicks_day_prefix(code: &str) -> String {
    format!("urlshortener/clicks/{code}/day/")
}

/// Returns the key of a code's click counter for one UTC day.
pub fn clicks_day(code: &str, date: &str) -> Vec<u8> {
    format!("{}{date}", clicks_day_prefix(code)).into_bytes()
}

/// Returns the prefix of a code's per-referrer counters.
pub fn clicks_referrer_prefix(code: &str) -> String {
    format!("urlshortener/clicks/{code}/ref/")
}

/// Returns the key of a code's click counter for one referrer host.
pub fn clicks_referrer(code: &str, referrer: &str) -> Vec<u8> {
    format!("{}{referrer}", clicks_referrer_prefix(code)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_keys_round_trip_and_prefixes_do_not_overlap() {
        assert_eq!(link("abc").strip_prefix(LINK_PREFIX.as_bytes()), Some(&b"abc"[..]));
        assert!(!clicks_total("abc").starts_with(LINK_PREFIX.as_bytes()));
        assert!(clicks_day(&"a".repeat(3), "2026-01-02") < clicks_day("aaa", "2026-01-10"));
        assert!(!clicks_total("ab").starts_with(clicks_day_prefix("a").as_bytes()));
    }
}
