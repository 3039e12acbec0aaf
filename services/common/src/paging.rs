//! Opaque page tokens: a scan continuation key plus the request's fingerprint, base64url
//! encoded. A token that was tampered with, or is reused with different filters, is refused
//! with INVALID_ARGUMENT naming the `page_token` field.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ServiceError;

const VERSION: u8 = 1;

/// A decoded page token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// Where the next page starts (store key).
    pub resume_key: Vec<u8>,
    /// Hash of the query the token belongs to.
    pub fingerprint: u32,
}

/// Returns a fingerprint of query parameters (FNV-1a), so a token only continues its own query.
pub fn fingerprint(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for &b in part.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

impl PageToken {
    /// Encodes the token.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(self.resume_key.len() + 9);
        raw.push(VERSION);
        raw.extend_from_slice(&self.fingerprint.to_be_bytes());
        raw.extend_from_slice(&self.resume_key);
        let check = fingerprint(&[&raw]);
        raw.extend_from_slice(&check.to_be_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes `token` for the query with `expected_fingerprint`; an empty token is `None`.
    pub fn decode(token: &str, expected_fingerprint: u32) -> Result<Option<PageToken>, ServiceError> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || ServiceError::invalid("page_token", "is not a token returned by this query");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        if raw.len() < 9 || raw[0] != VERSION {
            return Err(bad());
        }
        let (body, check) = raw.split_at(raw.len() - 4);
        if fingerprint(&[body]).to_be_bytes() != check {
            return Err(bad());
        }
        let fp = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
        if fp != expected_fingerprint {
            return Err(bad());
        }
        Ok(Some(PageToken { resume_key: body[5..].to_vec(), fingerprint: fp }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let fp = fingerprint(&[b"user-1", b"newest"]);
        let token = PageToken { resume_key: b"timeline/x/\x00\x01".to_vec(), fingerprint: fp };
        let encoded = token.encode();
        assert_eq!(PageToken::decode(&encoded, fp).unwrap(), Some(token));
        assert_eq!(PageToken::decode("", fp).unwrap(), None);
        assert!(PageToken::decode(&encoded, fp ^ 1).is_err(), "token of another query");
        let mut chars: Vec<char> = encoded.chars().collect();
        chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(PageToken::decode(&tampered, fp).is_err());
        assert!(PageToken::decode("!!!", fp).is_err());
        let err = PageToken::decode("AAAA", fp).unwrap_err();
        assert_eq!(err.to_string(), "page_token: is not a token returned by this query");
    }

    /// Every token round-trips for its own query and no other; any string decodes to a token
    /// or INVALID_ARGUMENT, never a panic.
    #[test]
    fn any_token_round_trips_and_any_string_is_refused_cleanly() {
        fn round_trip(resume_key: Vec<u8>, fp: u32) -> bool {
            let token = PageToken { resume_key, fingerprint: fp };
            let encoded = token.encode();
            PageToken::decode(&encoded, fp).unwrap() == Some(token) && PageToken::decode(&encoded, fp ^ 1).is_err()
        }
        fn any_string(text: String, fp: u32) -> bool {
            match PageToken::decode(&text, fp) {
                Ok(Some(token)) => token.encode() == text,
                Ok(None) => text.is_empty(),
                Err(e) => e.to_string().starts_with("page_token: "),
            }
        }
        quickcheck::QuickCheck::new().tests(1_000).quickcheck(round_trip as fn(Vec<u8>, u32) -> bool);
        quickcheck::QuickCheck::new().tests(2_000).quickcheck(any_string as fn(String, u32) -> bool);
    }
}
