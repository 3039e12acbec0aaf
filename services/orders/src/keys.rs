//! Every storage key of the orders service, in one place. Layout:
//!
//! - `orders/order/<order_id>`                                -> snapshot (the fold of its events)
//! - `orders/history/<order_id>/<version, u64 big-endian>`    -> one event of the order
//! - `orders/by_user/<user>/<inverted create ms, 16 hex>/<order_id>` -> empty (ListOrders, newest first)
//! - `orders/events/...`, `orders/event-head`, `orders/consumers/...` -> the event log (kit)
//! - `orders/requests/<request_id>`                           -> idempotency records (kit)
//!
//! User ids may hold any printable character, `/` included, so they are escaped (`%` ->
//! `%25`, `/` -> `%2F`) and one user's prefix never covers another's. Order ids are `ord_`
//! and base62 characters.

/// The service's key prefix, event log and idempotency namespace.
pub const SERVICE: &str = "orders";

/// Returns the key of an order's snapshot.
pub fn order(order_id: &str) -> Vec<u8> {
    format!("orders/order/{order_id}").into_bytes()
}

/// Returns the prefix of an order's events.
pub fn history_prefix(order_id: &str) -> Vec<u8> {
    format!("orders/history/{order_id}/").into_bytes()
}

/// Returns the key of an order's event at `version`.
pub fn history(order_id: &str, version: i64) -> Vec<u8> {
    let mut key = history_prefix(order_id);
    key.extend_from_slice(&(version.max(0) as u64).to_be_bytes());
    key
}

fn escape(user_id: &str) -> String {
    user_id.replace('%', "%25").replace('/', "%2F")
}

/// Returns the prefix of a user's order index.
pub fn by_user_prefix(user_id: &str) -> Vec<u8> {
    format!("orders/by_user/{}/", escape(user_id)).into_bytes()
}

/// Returns the index key of a user's order created at `create_ms` (newer orders sort first).
pub fn by_user(user_id: &str, create_ms: i64, order_id: &str) -> Vec<u8> {
    let inverted = u64::MAX - create_ms.max(0) as u64;
    let mut key = by_user_prefix(user_id);
    key.extend_from_slice(format!("{inverted:016x}/{order_id}").as_bytes());
    key
}

/// Returns the order id at the end of a user index key.
pub fn order_id_of_index(key: &[u8]) -> Option<&str> {
    let pos = key.iter().rposition(|b| *b == b'/')?;
    std::str::from_utf8(&key[pos + 1..]).ok().filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_sort_by_version_and_indexes_newest_first() {
        assert!(history("ord_a", 2) < history("ord_a", 10));
        assert!(history("ord_a", 255) < history("ord_a", 256));
        assert!(history("ord_a", 1).starts_with(&history_prefix("ord_a")));
        assert!(by_user("u", 2000, "ord_b") < by_user("u", 1000, "ord_a"), "newer first");
        assert!(by_user("u", 1000, "ord_a") < by_user("u", 1000, "ord_b"));
        assert_eq!(order_id_of_index(&by_user("u/x", 5, "ord_q")), Some("ord_q"));
    }

    #[test]
    fn a_users_prefix_never_covers_another_users_keys() {
        let key = by_user("a/b", 1, "ord_x");
        assert!(!key.starts_with(&by_user_prefix("a")));
        assert!(key.starts_with(&by_user_prefix("a/b")));
        assert!(!by_user("a%2Fb", 1, "ord_x").starts_with(&by_user_prefix("a/b")));
    }
}
