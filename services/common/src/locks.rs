//! Lock stripes: a fixed set of async mutexes that keys hash onto, so that writers of one
//! entity in this process take turns before their store transaction instead of racing it
//! (an optimistic transaction that loses retries with backoff; queueing locally turns those
//! retries into waits). Other replicas still race optimistically; the store's conditions stay
//! the only guarantee. Two keys may share a stripe: that costs a wait, never correctness.

use tokio::sync::Mutex;

use crate::paging::fingerprint;

/// `n` async mutexes, chosen by the hash of a key.
pub struct LockStripes {
    stripes: Box<[Mutex<()>]>,
}

impl LockStripes {
    /// `n` stripes (at least one).
    pub fn new(n: usize) -> Self {
        LockStripes { stripes: (0..n.max(1)).map(|_| Mutex::new(())).collect() }
    }

    /// The stripe of the key made of `parts` (hashed as [`fingerprint`] does: parts are
    /// separated, so `("ab", "c")` and `("a", "bc")` are different keys).
    pub fn stripe(&self, parts: &[&[u8]]) -> &Mutex<()> {
        &self.stripes[fingerprint(parts) as usize % self.stripes.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_takes_turns_and_every_key_has_a_stripe() {
        let stripes = LockStripes::new(8);
        let held = stripes.stripe(&[b"lot", b"spot-1"]).lock().await;
        assert!(stripes.stripe(&[b"lot", b"spot-1"]).try_lock().is_err());
        drop(held);
        assert!(stripes.stripe(&[b"lot", b"spot-1"]).try_lock().is_ok());
        assert!(LockStripes::new(0).stripe(&[b"x"]).try_lock().is_ok());
    }
}
