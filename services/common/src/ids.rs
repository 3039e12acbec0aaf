//! Ids that never collide across replicas: each replica leases a block of ids from a counter
//! key in the shared store with a conditional write (the lease is the only coordination), then
//! hands them out locally. A crashed replica's unused ids are skipped, never reused.
//! Plus base62, the alphabet of short codes, and random prefixed ids (`pay_`, `ord_`...)
//! for resources whose ids need no order.

use meshwork_storage::{Condition, DynStore, Mutation, StoreError};
use tokio::sync::Mutex;

use crate::error::{ServiceError, ServiceResult};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Returns `n` in base62, left-padded with '0' to at least `width` characters.
pub fn base62_encode(mut n: u64, width: usize) -> String {
    let mut out = Vec::with_capacity(width.max(11));
    while n > 0 {
        out.push(ALPHABET[(n % 62) as usize]);
        n /= 62;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    // The alphabet is ASCII, so the bytes are valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Returns `prefix` followed by `chars` random base62 characters (`ord_` + 20 characters: 119
/// bits, so collisions need not be checked).
pub fn random_id(prefix: &str, chars: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut id = String::with_capacity(prefix.len() + chars);
    id.push_str(prefix);
    id.extend((0..chars).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])));
    id
}

/// Returns whether `id` has the shape [`random_id`] gives it: `prefix` and `chars` base62
/// characters.
pub fn is_random_id(id: &str, prefix: &str, chars: usize) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| rest.len() == chars && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Returns the number a base62 string stands for, or `None` for a character outside the
/// alphabet or an overflow.
pub fn base62_decode(s: &str) -> Option<u64> {
    s.bytes().try_fold(0u64, |acc, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'A'..=b'Z' => b - b'A' + 10,
            b'a'..=b'z' => b - b'a' + 36,
            _ => return None,
        } as u64;
        acc.checked_mul(62)?.checked_add(digit)
    })
}

/// Hands out unique, increasing-per-replica ids from blocks leased from a counter in the store.
pub struct IdAllocator {
    store: DynStore,
    counter_key: Vec<u8>,
    block_size: u64,
    block: Mutex<(u64, u64)>,
}

impl IdAllocator {
    /// Returns an allocator leasing `block_size` ids at a time from the counter at `counter_key`.
    pub fn new(store: DynStore, counter_key: impl Into<Vec<u8>>, block_size: u64) -> Self {
        IdAllocator { store, counter_key: counter_key.into(), block_size: block_size.max(1), block: Mutex::new((0, 0)) }
    }

    /// Returns the next id; leases a new block from the store when the current one is used up.
    pub async fn next(&self) -> ServiceResult<u64> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            *block = self.lease().await?;
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Leases the next block `[start, end)` by moving the counter forward with a conditional
    /// write; a concurrent lease by another replica makes this one retry.
    async fn lease(&self) -> ServiceResult<(u64, u64)> {
        for attempt in 0..64u32 {
            let current = self.store.get(&self.counter_key).await?;
            let (start, condition) = match &current {
                Some(v) => {
                    let bytes: [u8; 8] = v.value.as_slice().try_into().map_err(|_| {
                        ServiceError::Internal(format!("id counter {:?} is not 8 bytes", self.counter_key))
                    })?;
                    (u64::from_be_bytes(bytes), Condition::Version(self.counter_key.clone(), v.version))
                }
                // Id 0 is never handed out, so that 0 can mean "none" on the wire.
                None => (1, Condition::Absent(self.counter_key.clone())),
            };
            let end = start
                .checked_add(self.block_size)
                .ok_or_else(|| ServiceError::ResourceExhausted("id space exhausted".into()))?;
            let put = Mutation::put(self.counter_key.clone(), end.to_be_bytes().to_vec());
            match self.store.write(vec![condition], vec![put]).await {
                Ok(_) => {
                    tracing::debug!(start, end, "leased id block");
                    return Ok((start, end));
                }
                Err(StoreError::Conflict { .. }) => {
                    let backoff = std::time::Duration::from_micros(200 * u64::from(attempt + 1));
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Aborted("could not lease an id block: too much contention".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_round_trips_and_pads() {
        for n in [0u64, 1, 61, 62, 3843, 3844, 1 << 40, u64::MAX] {
            assert_eq!(base62_decode(&base62_encode(n, 7)), Some(n));
        }
        assert_eq!(base62_encode(0, 7), "0000000");
        assert_eq!(base62_encode(61, 1), "z");
        assert_eq!(base62_encode(62, 1), "10");
        assert_eq!(base62_decode("a-b"), None);
        assert_eq!(base62_decode("zzzzzzzzzzzzzzzz"), None);
    }
}
