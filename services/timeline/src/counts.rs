//! Exact counters that stay cheap under concurrency: each counter is [`COUNTER_SHARDS`]
//! keys, an increment adds to one shard inside the caller's transaction (so it commits with
//! the change it counts, or not at all), and a read sums the shards with one prefix scan.
//! Concurrent increments conflict only when they pick the same shard, and then the
//! transaction retries; the total is exact.

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_storage::{Direction, DynStore, KeyRange, Txn};
use rand::Rng;

use crate::keys::{self, COUNTER_SHARDS};

/// Returns a random shard number.
pub fn random_shard() -> u32 {
    rand::rng().random_range(0..COUNTER_SHARDS)
}

fn decode(raw: &[u8]) -> ServiceResult<i64> {
    let bytes: [u8; 8] =
        raw.try_into().map_err(|_| ServiceError::Internal(format!("corrupt counter shard: {} bytes", raw.len())))?;
    Ok(i64::from_be_bytes(bytes))
}

/// Adds `delta` to shard `shard` of the counter at `prefix`, inside `tx`.
pub async fn add(tx: &Txn, prefix: &[u8], shard: u32, delta: i64) -> ServiceResult<()> {
    let key = keys::shard(prefix, shard % COUNTER_SHARDS);
    let current = match tx.get(&key).await? {
        Some(v) => decode(&v.value)?,
        None => 0,
    };
    tx.put(key, (current + delta).to_be_bytes().to_vec());
    Ok(())
}

/// Returns the counter at `prefix`: the sum of its shards (never below 0).
pub async fn sum(store: &DynStore, prefix: &[u8]) -> ServiceResult<i64> {
    let page = store.scan(KeyRange::prefix(prefix.to_vec()), COUNTER_SHARDS as usize, Direction::Forward).await?;
    let mut total = 0i64;
    for entry in &page.entries {
        total += decode(&entry.value)?;
    }
    Ok(total.max(0))
}

/// Returns the value of a counter shard entry found by some other scan.
pub fn shard_value(raw: &[u8]) -> ServiceResult<i64> {
    decode(raw)
}
