//! Snowflake-style post ids: 41 bits of milliseconds since [`EPOCH_MS`], 10 bits of node id
//! and 12 bits of sequence, so that a later post has a larger id and newest-first is key
//! order. The node id is leased once per process from a counter in the store (the kit's
//! [`IdAllocator`](meshwork_common::IdAllocator), as the URL shortener leases code ranges), so
//! two replicas never share one while fewer than 1,024 processes have started on the store
//! since the oldest live one. Within a node the sequence makes ids unique; when the clock
//! stands still or steps back, ids keep growing from the last one handed out (borrowing the
//! next millisecond once 4,096 ids were handed out in one).

use std::sync::Mutex;

/// 2024-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
/// Bits of node id.
pub const NODE_BITS: u32 = 10;
/// Bits of per-millisecond sequence.
pub const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;
/// Node ids run from 0 to this.
pub const MAX_NODE: u64 = (1 << NODE_BITS) - 1;

/// Hands out ids for one node.
#[derive(Debug)]
pub struct Snowflake {
    node: u64,
    /// (milliseconds since the epoch of the last id, its sequence).
    last: Mutex<(u64, u64)>,
}

impl Snowflake {
    /// Returns a generator for `node` (taken modulo 1,024).
    pub fn new(node: u64) -> Self {
        Snowflake { node: node & MAX_NODE, last: Mutex::new((0, 0)) }
    }

    /// Returns the node id.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Returns the next id at wall-clock time `now_ms`; always larger than the previous one.
    pub fn next(&self, now_ms: i64) -> u64 {
        let now = now_ms.saturating_sub(EPOCH_MS).max(0) as u64;
        // The guarded pair is two plain numbers: a panic elsewhere cannot leave it torn.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (ms, seq) = if now > last.0 {
            (now, 0)
        } else if last.1 < MAX_SEQUENCE {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last = (ms, seq);
        (ms << (NODE_BITS + SEQUENCE_BITS)) | (self.node << SEQUENCE_BITS) | seq
    }
}

/// Returns the Unix milliseconds an id was made at.
pub fn time_ms(id: u64) -> i64 {
    (id >> (NODE_BITS + SEQUENCE_BITS)) as i64 + EPOCH_MS
}

/// Returns the node id of an id.
pub fn node_of(id: u64) -> u64 {
    (id >> SEQUENCE_BITS) & MAX_NODE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_with_time_and_within_a_millisecond() {
        let g = Snowflake::new(5);
        let t = EPOCH_MS + 1_000;
        let a = g.next(t);
        let b = g.next(t);
        let c = g.next(t + 1);
        assert!(a < b && b < c);
        assert_eq!(time_ms(a), t);
        assert_eq!(node_of(b), 5);
        // A clock stepping back keeps ids growing.
        let d = g.next(t - 500);
        assert!(d > c);
    }

    #[test]
    fn a_full_millisecond_borrows_the_next_one() {
        let g = Snowflake::new(MAX_NODE + 3);
        assert_eq!(g.node(), 2);
        let t = EPOCH_MS + 7;
        let ids: Vec<u64> = (0..5000).map(|_| g.next(t)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(time_ms(ids[4096]), t + 1);
    }

    #[test]
    fn two_nodes_never_collide_in_one_millisecond() {
        let (a, b) = (Snowflake::new(1), Snowflake::new(2));
        let t = EPOCH_MS + 99;
        let xs: std::collections::HashSet<u64> = (0..100).flat_map(|_| [a.next(t), b.next(t)]).collect();
        assert_eq!(xs.len(), 200);
    }
}
