//! Every key the payments service writes, order-preserving. Payments live under
//! `payments/payment/<payment_id>`; two indexes name them in creation order by the sequence of
//! their `payment.authorized` event (gapless, committed in order, so "oldest first" is exact):
//! `payments/by-time/<sequence>` for every payment and `payments/by-order/<order_id>\0<sequence>`
//! per order (order ids hold no control characters, so the NUL ends the id and one order's
//! prefix never covers another's). Sequences are big-endian, so byte order is numeric order.
//! The kit adds `payments/requests/...` (idempotency) and `payments/events/...` (the log).

/// The service name, the first segment of every key.
pub const SERVICE: &str = "payments";

/// Returns the key of a payment record.
pub fn payment(payment_id: &str) -> Vec<u8> {
    format!("{SERVICE}/payment/{payment_id}").into_bytes()
}

/// Returns the prefix of the creation-order index of every payment.
pub fn by_time_prefix() -> Vec<u8> {
    format!("{SERVICE}/by-time/").into_bytes()
}

/// Returns the creation-order index key of the payment created by event `sequence`.
pub fn by_time(sequence: u64) -> Vec<u8> {
    let mut key = by_time_prefix();
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// Returns the prefix of the index of one order's payments.
pub fn by_order_prefix(order_id: &str) -> Vec<u8> {
    let mut key = format!("{SERVICE}/by-order/{order_id}").into_bytes();
    key.push(0);
    key
}

/// Returns the order index key of the payment of `order_id` created by event `sequence`.
pub fn by_order(order_id: &str, sequence: u64) -> Vec<u8> {
    let mut key = by_order_prefix(order_id);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_sequence_and_orders_do_not_overlap() {
        let seqs = [1u64, 2, 255, 256, 70_000, u64::MAX];
        let time: Vec<_> = seqs.iter().map(|s| by_time(*s)).collect();
        assert!(time.windows(2).all(|w| w[0] < w[1]));
        let order: Vec<_> = seqs.iter().map(|s| by_order("o-1", *s)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert!(order.iter().all(|k| k.starts_with(&by_order_prefix("o-1"))));
        assert!(!by_order("o-10", 1).starts_with(&by_order_prefix("o-1")));
        assert_eq!(payment("pay_x"), b"payments/payment/pay_x");
    }
}
