//! Flow-control arithmetic. Stream windows are relayed end to end: the relay opens a sender's
//! stream window only by what the other side has written out (see the crate docs); connection
//! windows are opened as bytes come off the socket.

use crate::frame::MAX_WINDOW;

/// Whether `unacked` consumed bytes are worth a WINDOW_UPDATE for a window of `window`:
/// a quarter of it. No sender can stall on this: a sender that is out of window has `window`
/// bytes outstanding, and all of them come back as credit.
pub fn worth_update(unacked: u32, window: u32) -> bool {
    unacked > 0 && unacked >= (window / 4).max(1)
}

/// Adds a WINDOW_UPDATE increment to a send window; `None` when it would overflow 2^31-1.
pub fn grow(window: i64, increment: u32) -> Option<i64> {
    let w = window + i64::from(increment);
    (w <= i64::from(MAX_WINDOW)).then_some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_overflow() {
        assert!(!worth_update(0, 100));
        assert!(!worth_update(24, 100));
        assert!(worth_update(25, 100));
        assert!(worth_update(1, 1));
        assert_eq!(grow(-10, 20), Some(10));
        assert_eq!(grow(i64::from(MAX_WINDOW), 1), None);
    }
}
