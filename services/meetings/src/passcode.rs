//! Meeting passcodes: only a salted PBKDF2-HMAC-SHA256 hash is stored, and a Join's passcode
//! is checked against it in constant time (`ring::pbkdf2::verify`), so that neither a leaked
//! store nor the timing of answers gives the passcode away.

use std::num::NonZeroU32;

use meshwork_common::{ServiceError, ServiceResult};
use ring::pbkdf2;

use crate::model::PasscodeHash;

/// PBKDF2 iterations of new hashes.
const ITERATIONS: u32 = 10_000;

/// Bytes of a derived key.
const KEY_BYTES: usize = 32;

const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

/// Returns the hash of `passcode` with a fresh random salt.
pub fn hash(passcode: &str) -> PasscodeHash {
    let salt = meshwork_common::random_id("", 22);
    let mut key = [0u8; KEY_BYTES];
    pbkdf2::derive(ALGORITHM, iterations(ITERATIONS), salt.as_bytes(), passcode.as_bytes(), &mut key);
    PasscodeHash { salt, iterations: ITERATIONS, hash: to_hex(&key) }
}

/// Checks `given` against `stored` in constant time: PERMISSION_DENIED when it does not
/// match (also when a passcode is needed and none was given).
pub fn verify(stored: &PasscodeHash, given: &str) -> ServiceResult<()> {
    let wrong = || ServiceError::PermissionDenied("wrong passcode".into());
    let key = from_hex(&stored.hash).ok_or_else(|| ServiceError::Internal("corrupt passcode hash".into()))?;
    pbkdf2::verify(ALGORITHM, iterations(stored.iterations), stored.salt.as_bytes(), given.as_bytes(), &key)
        .map_err(|_| wrong())
}

fn iterations(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_passcode_passes_and_the_hash_hides_it() {
        let stored = hash("s3cret");
        assert!(!stored.hash.contains("s3cret") && !stored.salt.contains("s3cret"));
        assert!(verify(&stored, "s3cret").is_ok());
        for wrong in ["", "s3cre", "s3cret ", "S3CRET"] {
            assert_eq!(verify(&stored, wrong).unwrap_err().code(), tonic::Code::PermissionDenied);
        }
        assert_ne!(hash("s3cret").hash, stored.hash, "salted");
    }
}
