//! Every storage key of checkout, in one place. Layout:
//!
//! - `catalog/checkouts/<checkout_id>`          -> saga record (versioned JSON, [`super::model::SagaRecord`])
//! - `catalog/checkouts-open/<checkout_id>`     -> empty: index of the sagas not finished yet,
//!   written with the record and deleted by the final write, so recovery scans only these
//! - `catalog/checkout-requests/<request_id>`   -> the checkout id a `request_id` created
//! - `catalog/checkout/requests/<request_id>`   -> PlaceOrder's idempotency claim and answer
//!   (the kit's [`meshwork_common::Idempotency`], apart from the catalog's other requests)
//!
//! `checkouts/` and `checkouts-open/` differ in the byte after `checkouts`, so a scan of one
//! prefix never sees the other's keys; request-keyed entries are only read whole.

/// The name the idempotency records of PlaceOrder are kept under.
pub const IDEMPOTENCY_SERVICE: &str = "catalog/checkout";

/// Prefix of the saga records.
pub const CHECKOUT_PREFIX: &str = "catalog/checkouts/";
/// Prefix of the index of unfinished sagas.
pub const OPEN_PREFIX: &str = "catalog/checkouts-open/";
/// Prefix of the request id -> checkout id mapping.
pub const REQUEST_PREFIX: &str = "catalog/checkout-requests/";

/// Returns the key of a saga record.
pub fn checkout(checkout_id: &str) -> Vec<u8> {
    format!("{CHECKOUT_PREFIX}{checkout_id}").into_bytes()
}

/// Returns the key marking a saga as not finished.
pub fn open(checkout_id: &str) -> Vec<u8> {
    format!("{OPEN_PREFIX}{checkout_id}").into_bytes()
}

/// Returns the key holding the checkout id created by `request_id`.
pub fn request(request_id: &str) -> Vec<u8> {
    format!("{REQUEST_PREFIX}{request_id}").into_bytes()
}

/// Returns the checkout id of an index key, if it is one.
pub fn open_id(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key).ok()?.strip_prefix(OPEN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_name_their_checkout_and_prefixes_do_not_overlap() {
        let id = "chk_0123456789abcdefghij";
        assert_eq!(open_id(&open(id)), Some(id));
        assert_eq!(open_id(&checkout(id)), None);
        assert!(!open(id).starts_with(CHECKOUT_PREFIX.as_bytes()));
        assert!(!checkout(id).starts_with(OPEN_PREFIX.as_bytes()));
        assert!(!request("r").starts_with(CHECKOUT_PREFIX.as_bytes()));
    }
}
