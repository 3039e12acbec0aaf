//! Every key the warehouse service writes, order-preserving: `warehouse/w/<warehouse>/...`
//! for one warehouse's records (locations by code, the sku -> location index, sku summaries,
//! purchase orders, fulfilments, waiting orders, waves, and its audit log), and two global
//! indexes the orders consumer needs before it knows the warehouse: a sku's home warehouse
//! and an order's warehouse.

/// The service's key root and idempotency prefix.
pub const SERVICE: &str = "warehouse";

/// The orders service's event log (read from sequence 1 by the wave consumer).
pub const ORDERS_LOG: &str = "orders";

/// The orders-log consumer's name.
pub const ORDERS_CONSUMER: &str = "warehouse-waves";

fn w(warehouse: &str) -> String {
    format!("{SERVICE}/w/{warehouse}")
}

/// The warehouse record.
pub fn warehouse(warehouse: &str) -> Vec<u8> {
    w(warehouse).into_bytes()
}

/// The log root of a warehouse's audit trail (`EventLog::new(store, &audit_log(w))`): each
/// warehouse has its own gapless sequence.
pub fn audit_log(warehouse: &str) -> String {
    format!("{}/audit", w(warehouse))
}

/// A location by code.
pub fn location(warehouse: &str, code: &str) -> Vec<u8> {
    format!("{}/loc/{code}", w(warehouse)).into_bytes()
}

/// Every location of a warehouse, by code.
pub fn locations(warehouse: &str) -> Vec<u8> {
    format!("{}/loc/", w(warehouse)).into_bytes()
}

/// Index entry: `code` holds some of `sku`.
pub fn sku_location(warehouse: &str, sku: &str, code: &str) -> Vec<u8> {
    format!("{}/skuloc/{sku}/{code}", w(warehouse)).into_bytes()
}

/// The index entries of one sku.
pub fn sku_locations(warehouse: &str, sku: &str) -> Vec<u8> {
    format!("{}/skuloc/{sku}/", w(warehouse)).into_bytes()
}

/// Returns the code of a [`sku_location`] key under `prefix`.
pub fn code_of(prefix: &[u8], key: &[u8]) -> Option<String> {
    key.strip_prefix(prefix).and_then(|c| std::str::from_utf8(c).ok()).map(str::to_string)
}

/// A sku's summary in a warehouse.
pub fn sku(warehouse: &str, sku: &str) -> Vec<u8> {
    format!("{}/sku/{sku}", w(warehouse)).into_bytes()
}

/// Every sku summary of a warehouse.
pub fn skus(warehouse: &str) -> Vec<u8> {
    format!("{}/sku/", w(warehouse)).into_bytes()
}

/// A purchase order.
pub fn purchase_order(warehouse: &str, po_id: &str) -> Vec<u8> {
    format!("{}/po/{po_id}", w(warehouse)).into_bytes()
}

/// An order's fulfilment.
pub fn fulfillment(warehouse: &str, order_id: &str) -> Vec<u8> {
    format!("{}/order/{order_id}", w(warehouse)).into_bytes()
}

/// Marks an order with units still to pick (waiting for a wave or for stock).
pub fn waiting(warehouse: &str, order_id: &str) -> Vec<u8> {
    format!("{}/waiting/{order_id}", w(warehouse)).into_bytes()
}

/// Every waiting order of a warehouse (by order id).
pub fn waiting_all(warehouse: &str) -> Vec<u8> {
    format!("{}/waiting/", w(warehouse)).into_bytes()
}

/// A wave.
pub fn wave(warehouse: &str, wave_id: &str) -> Vec<u8> {
    format!("{}/wave/{wave_id}", w(warehouse)).into_bytes()
}

/// The warehouse that first received a sku: CONFIRMED orders of it go there.
pub fn sku_home(sku: &str) -> Vec<u8> {
    format!("{SERVICE}/sku-home/{sku}").into_bytes()
}

/// The warehouse fulfilling an order.
pub fn order_home(order_id: &str) -> Vec<u8> {
    format!("{SERVICE}/order-home/{order_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_their_prefixes() {
        assert!(location("w1", "A-01-1-A").starts_with(&locations("w1")));
        assert!(sku_location("w1", "SKU-1", "A-01-1-A").starts_with(&sku_locations("w1", "SKU-1")));
        assert!(!sku_location("w1", "SKU-10", "X").starts_with(&sku_locations("w1", "SKU-1")));
        assert_eq!(
            code_of(&sku_locations("w1", "S"), &sku_location("w1", "S", "B-02-3-C")).as_deref(),
            Some("B-02-3-C")
        );
        assert!(waiting("w1", "ord_1").starts_with(&waiting_all("w1")));
        assert!(!location("w10", "X").starts_with(&locations("w1")));
    }
}
