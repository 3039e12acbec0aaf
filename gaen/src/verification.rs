//! The HMAC that binds an upload of keys to a verification certificate, as the GAEN
//! verification protocol defines it (google/exposure-notifications-server,
//! docs/design/verification_protocol.md, "HMAC Calculation"): the device draws a random HMAC
//! key (at least 128 bits), builds the cleartext `key[,key]` where each `key` segment is
//! `base64(TEK).rolling_start_interval_number.rolling_period.transmission_risk` (standard
//! base64 with padding), the segments sorted lexicographically, and sends
//! `base64(HMAC-SHA256(hmac_key, cleartext))` to the verification server, which signs it into the
//! certificate's `tekhmac` claim. The key server recomputes it from the uploaded keys and the
//! `hmac_key` the device sends with them; a different key set or HMAC key does not match.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One uploaded key, as the HMAC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacKey<'a> {
    /// The 16-byte TEK.
    pub key_data: &'a [u8],
    /// Its rolling start interval number.
    pub rolling_start_interval_number: i64,
    /// Its rolling period.
    pub rolling_period: i64,
    /// Its transmission risk.
    pub transmission_risk: i64,
}

/// Returns the cleartext the HMAC is computed over.
pub fn cleartext(keys: &[HmacKey<'_>]) -> String {
    let mut segments: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "{}.{}.{}.{}",
                STANDARD.encode(k.key_data),
                k.rolling_start_interval_number,
                k.rolling_period,
                k.transmission_risk
            )
        })
        .collect();
    segments.sort();
    segments.join(",")
}

/// Returns HMAC-SHA256(`hmac_key`, cleartext(`keys`)).
pub fn tek_hmac(hmac_key: &[u8], keys: &[HmacKey<'_>]) -> Vec<u8> {
    // HMAC takes keys of any length, so new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(hmac_key) else { return Vec::new() };
    mac.update(cleartext(keys).as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Returns [`tek_hmac`] in standard base64, the form of the certificate's `tekhmac` claim.
pub fn tek_hmac_base64(hmac_key: &[u8], keys: &[HmacKey<'_>]) -> String {
    STANDARD.encode(tek_hmac(hmac_key, keys))
}

/// Whether `expected` (raw bytes) is the HMAC of `keys` under `hmac_key`, compared in constant
/// time.
pub fn verify_tek_hmac(hmac_key: &[u8], keys: &[HmacKey<'_>], expected: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(hmac_key) else { return false };
    mac.update(cleartext(keys).as_bytes());
    mac.verify_slice(expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_sorts_segments_by_their_base64_bytes_and_the_hmac_binds_every_field() {
        let a = [0xffu8; 16];
        let b = [0u8; 16];
        let keys = [
            HmacKey {
                key_data: &a,
                rolling_start_interval_number: 2_650_000,
                rolling_period: 144,
                transmission_risk: 4,
            },
            HmacKey {
                key_data: &b,
                rolling_start_interval_number: 2_649_856,
                rolling_period: 144,
                transmission_risk: 5,
            },
        ];
        assert_eq!(cleartext(&keys), "/////////////////////w==.2650000.144.4,AAAAAAAAAAAAAAAAAAAAAA==.2649856.144.5");
        let hmac_key = [7u8; 32];
        let mac = tek_hmac(&hmac_key, &keys);
        assert_eq!(mac.len(), 32);
        assert!(verify_tek_hmac(&hmac_key, &keys, &mac));
        assert!(!verify_tek_hmac(&[8u8; 32], &keys, &mac));
        let mut changed = keys.clone();
        changed[1].transmission_risk = 6;
        assert!(!verify_tek_hmac(&hmac_key, &changed, &mac));
        // Order of the upload does not matter.
        let reversed = [keys[1].clone(), keys[0].clone()];
        assert!(verify_tek_hmac(&hmac_key, &reversed, &mac));
    }
}
