//! Short codes from ids. An id leased from the store maps to a 7-character base62 code through a
//! keyed permutation of `[0, 62^7)`: a Feistel network whose round function is HMAC-SHA256 under
//! a per-deployment secret, so codes are unique exactly when ids are, yet nobody without the
//! secret can list the codes in use by counting ids (the old public affine map allowed that).
//!
//! The network is a balanced Feistel over 42-bit blocks (two 21-bit halves; 2^41 < 62^7 < 2^42)
//! with cycle-walking: a result at or above 62^7 is permuted again until it lands inside the
//! space. That is a permutation of the space (Black and Rogaway): each in-range value goes to the
//! next in-range value on its cycle of the 42-bit permutation, and going back is the same walk
//! with the inverse network. As 62^7 / 2^42 is about 0.8, a walk takes 1.25 steps on average.
//!
//! The secret (32 random bytes) is made by the first replica that needs it and kept in the store
//! under [`keys::CODE_SECRET`] with a create-if-absent write, so replicas sharing a store agree
//! and two racing first starts end with one secret. It must never change: codes already handed
//! out would stay valid, but fresh ids could then map onto taken codes (those ids are skipped).

use meshwork_common::{ServiceError, ServiceResult, base62_decode, base62_encode};
use meshwork_storage::{Condition, DynStore, Mutation, StoreError};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::keys;

/// Length of generated codes.
pub const CODE_LEN: usize = 7;
/// Number of distinct generated codes: 62^7.
pub const CODE_SPACE: u64 = 3_521_614_606_208;
/// Length of the per-deployment secret, in bytes.
pub const SECRET_LEN: usize = 32;
/// Feistel rounds. Four rounds of a PRF already give a strong pseudo-random permutation
/// (Luby-Rackoff), but their bound is weak for 21-bit halves; ten rounds, as NIST's FF1 uses for
/// small domains, push the distinguishing advantage well below what an enumerating client gets.
pub const ROUNDS: u8 = 10;

const HALF_BITS: u32 = 21;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;

/// A keyed bijection of `[0, CODE_SPACE)`: ids to code numbers and back.
///
/// The round function is HMAC-SHA256 (ring's, which the workspace already builds for rustls):
/// a standard PRF under a 256-bit key. SipHash would be faster, but it is specified as a PRF for
/// hash tables and short inputs rather than as a MAC one can cite, and a code costs about a dozen
/// HMACs, microseconds against a store write.
#[derive(Clone)]
pub struct CodePermutation {
    key: hmac::Key,
}

impl std::fmt::Debug for CodePermutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CodePermutation").finish_non_exhaustive()
    }
}

impl CodePermutation {
    /// Returns the permutation keyed by `secret`.
    pub fn new(secret: &[u8; SECRET_LEN]) -> Self {
        CodePermutation { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// Returns the round function of round `round` on the half `half`: 21 bits of
    /// HMAC-SHA256(secret, round || half).
    fn round(&self, round: u8, half: u64) -> u64 {
        let mut message = [0u8; 9];
        message[0] = round;
        message[1..].copy_from_slice(&half.to_be_bytes());
        let tag = hmac::sign(&self.key, &message);
        // A SHA-256 tag is 32 bytes, so its first 8 always exist.
        let first = tag.as_ref().first_chunk::<8>().copied().unwrap_or_default();
        u64::from_be_bytes(first) & HALF_MASK
    }

    /// Runs the Feistel network forwards on a 42-bit block.
    fn encrypt_block(&self, block: u64) -> u64 {
        let (mut left, mut right) = ((block >> HALF_BITS) & HALF_MASK, block & HALF_MASK);
        for round in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(round, right));
        }
        (left << HALF_BITS) | right
    }

    /// Runs the Feistel network backwards on a 42-bit block.
    fn decrypt_block(&self, block: u64) -> u64 {
        let (mut left, mut right) = ((block >> HALF_BITS) & HALF_MASK, block & HALF_MASK);
        for round in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(round, left), left);
        }
        (left << HALF_BITS) | right
    }

    /// Returns the image of `n` in `[0, CODE_SPACE)`, or `None` when `n` is outside the space.
    pub fn permute(&self, n: u64) -> Option<u64> {
        Self::walk(n, |x| self.encrypt_block(x))
    }

    /// Returns the `n` that [`permute`](Self::permute) maps to `image`, or `None` when `image` is
    /// outside the space.
    pub fn invert(&self, image: u64) -> Option<u64> {
        Self::walk(image, |x| self.decrypt_block(x))
    }

    /// Applies `step` (a permutation of `[0, 2^42)`) until the value is back inside the code
    /// space. This ends: the cycle of `step` through `n` returns to `n`, which is inside.
    fn walk(n: u64, step: impl Fn(u64) -> u64) -> Option<u64> {
        if n >= CODE_SPACE {
            return None;
        }
        let mut x = step(n);
        while x >= CODE_SPACE {
            x = step(x);
        }
        Some(x)
    }

    /// Returns the code of `id`, or `None` once the id space is used up.
    pub fn code_for_id(&self, id: u64) -> Option<String> {
        self.permute(id).map(|n| base62_encode(n, CODE_LEN))
    }

    /// Returns the id a generated code stands for, or `None` when `code` is not a 7-character
    /// base62 string (a custom alias, say).
    pub fn id_for_code(&self, code: &str) -> Option<u64> {
        if code.len() != CODE_LEN {
            return None;
        }
        self.invert(base62_decode(code)?)
    }
}

/// Returns this deployment's code secret from the store, creating it with a create-if-absent
/// write when no replica has yet. Concurrent first calls on one store all return the one secret
/// that won.
pub async fn load_or_create_secret(store: &DynStore) -> ServiceResult<[u8; SECRET_LEN]> {
    let key = keys::CODE_SECRET.as_bytes().to_vec();
    // A lost race means the key exists now, so the second read finds it; the third pass is a
    // margin for a store whose reads lag its conflicts.
    for _ in 0..3 {
        if let Some(stored) = store.get(&key).await? {
            return stored.value.as_slice().try_into().map_err(|_| {
                ServiceError::Internal(format!(
                    "code secret {:?} is {} bytes, want {SECRET_LEN}",
                    keys::CODE_SECRET,
                    stored.value.len()
                ))
            });
        }
        let secret = random_secret()?;
        let put = Mutation::put(key.clone(), secret.to_vec());
        match store.write(vec![Condition::Absent(key.clone())], vec![put]).await {
            Ok(_) => {
                tracing::info!(key = keys::CODE_SECRET, "created the short-code secret");
                return Ok(secret);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Aborted("could not read or create the short-code secret; retry".into()))
}

/// Returns [`SECRET_LEN`] bytes from the operating system's random source.
fn random_secret() -> ServiceResult<[u8; SECRET_LEN]> {
    let mut secret = [0u8; SECRET_LEN];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| ServiceError::Internal("the operating system's random source failed".into()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};
    use std::collections::HashSet;
    use std::sync::Arc;

    fn permutation(seed: u8) -> CodePermutation {
        CodePermutation::new(&[seed; SECRET_LEN])
    }

    #[test]
    fn the_block_network_inverts() {
        let p = permutation(7);
        for x in [0u64, 1, HALF_MASK, 1 << HALF_BITS, (1 << 42) - 1, CODE_SPACE, CODE_SPACE - 1] {
            assert_eq!(p.decrypt_block(p.encrypt_block(x)), x);
            assert!(p.encrypt_block(x) < 1 << 42);
        }
    }

    #[test]
    fn codes_are_seven_characters_distinct_and_invert() {
        let p = permutation(1);
        let mut seen = HashSet::new();
        for id in 1..20_000u64 {
            let code = p.code_for_id(id).unwrap();
            assert_eq!(code.len(), CODE_LEN);
            assert_eq!(p.id_for_code(&code), Some(id), "{code}");
            assert!(seen.insert(code), "id {id} collided");
        }
        for id in [0, CODE_SPACE - 1, CODE_SPACE - 2, CODE_SPACE / 2] {
            let n = p.permute(id).unwrap();
            assert!(n < CODE_SPACE);
            assert_eq!(p.invert(n), Some(id));
        }
        assert_eq!(p.code_for_id(CODE_SPACE), None);
        assert_eq!(p.code_for_id(u64::MAX), None);
        assert_eq!(p.invert(CODE_SPACE), None);
        assert_eq!(p.id_for_code("zzzzzzz"), Some(p.invert(CODE_SPACE - 1).unwrap()));
        assert_eq!(p.id_for_code("launch"), None);
        assert_eq!(p.id_for_code("a-b-c-d"), None);
    }

    #[test]
    fn consecutive_ids_do_not_give_neighbouring_codes() {
        let p = permutation(2);
        let codes: Vec<u64> = (1..1000u64).map(|id| p.permute(id).unwrap()).collect();
        // Differences of an affine map are all equal; a PRP's are spread out.
        let diffs: HashSet<u64> = codes.windows(2).map(|w| w[1].wrapping_sub(w[0]) % CODE_SPACE).collect();
        assert!(diffs.len() > 990, "only {} distinct steps", diffs.len());
    }

    #[test]
    fn different_secrets_give_different_codes_for_the_same_id() {
        let (a, b) = (permutation(1), permutation(2));
        let differing = (1..1000u64).filter(|&id| a.code_for_id(id) != b.code_for_id(id)).count();
        // Equal by chance with probability 1/62^7 each.
        assert_eq!(differing, 999);
        let mut one_bit = [1u8; SECRET_LEN];
        one_bit[31] ^= 1;
        assert_ne!(CodePermutation::new(&one_bit).code_for_id(1), a.code_for_id(1));
    }

    /// The real space is too large to enumerate, so the same network and walk run on a small
    /// one (8-bit halves, walked into `[0, 50_000)`) and are checked exhaustively.
    #[test]
    fn cycle_walking_is_a_bijection_on_a_small_space() {
        const SPACE: u64 = 50_000;
        const BITS: u32 = 8;
        let p = permutation(3);
        // The round function on every 8-bit half, computed once.
        let table: Vec<Vec<u64>> =
            (0..ROUNDS).map(|round| (0..1u64 << BITS).map(|h| p.round(round, h)).collect()).collect();
        let small = |x: u64| {
            let mask = (1u64 << BITS) - 1;
            let (mut l, mut r) = (x >> BITS, x & mask);
            for round_table in &table {
                (l, r) = (r, (l ^ round_table[r as usize]) & mask);
            }
            (l << BITS) | r
        };
        let mut image = vec![false; 1 << (2 * BITS)];
        for x in 0..(1u64 << (2 * BITS)) {
            let y = small(x) as usize;
            assert!(!image[y], "{x} collides");
            image[y] = true;
        }
        let mut hit = vec![false; SPACE as usize];
        for x in 0..SPACE {
            let mut y = small(x);
            while y >= SPACE {
                y = small(y);
            }
            assert!(!hit[y as usize], "{x} collides after walking");
            hit[y as usize] = true;
        }
        assert!(hit.iter().all(|&h| h));
    }

    #[test]
    fn quickcheck_permute_stays_in_range_and_inverts() {
        fn prop(n: u64, seed: (u64, u64, u64, u64)) -> TestResult {
            let mut secret = [0u8; SECRET_LEN];
            for (chunk, word) in secret.chunks_mut(8).zip([seed.0, seed.1, seed.2, seed.3]) {
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            let p = CodePermutation::new(&secret);
            let id = n % CODE_SPACE;
            let Some(image) = p.permute(id) else { return TestResult::failed() };
            let code = base62_encode(image, CODE_LEN);
            TestResult::from_bool(image < CODE_SPACE && p.invert(image) == Some(id) && p.id_for_code(&code) == Some(id))
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(u64, (u64, u64, u64, u64)) -> TestResult);
    }

    #[tokio::test]
    async fn racing_first_starts_agree_on_one_secret() {
        let store: DynStore = Arc::new(meshwork_storage::memory::MemoryStore::new());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { load_or_create_secret(&store).await.unwrap() })
            })
            .collect();
        let mut secrets = HashSet::new();
        for t in tasks {
            secrets.insert(t.await.unwrap());
        }
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets.into_iter().next(), Some(load_or_create_secret(&store).await.unwrap()));
    }

    #[tokio::test]
    async fn the_secret_survives_a_restart_on_an_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, code) = {
            let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
            let secret = load_or_create_secret(&store).await.unwrap();
            store.flush().await.unwrap();
            (secret, CodePermutation::new(&secret).code_for_id(42))
        };
        let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
        let again = load_or_create_secret(&store).await.unwrap();
        assert_eq!(again, secret);
        assert_eq!(CodePermutation::new(&again).code_for_id(42), code);
        // A different deployment (another store) makes its own secret.
        let other: DynStore = Arc::new(meshwork_storage::memory::MemoryStore::new());
        assert_ne!(load_or_create_secret(&other).await.unwrap(), secret);
    }

    #[tokio::test]
    async fn a_corrupt_secret_is_an_internal_error_not_a_new_secret() {
        let store: DynStore = Arc::new(meshwork_storage::memory::MemoryStore::new());
        store
            .write(vec![], vec![Mutation::put(keys::CODE_SECRET.as_bytes().to_vec(), b"short".to_vec())])
            .await
            .unwrap();
        let err = load_or_create_secret(&store).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(err.to_string().contains("5 bytes"));
    }
}
