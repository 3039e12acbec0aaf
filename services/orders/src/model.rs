//! The records the orders service stores: an order's events (its record, under
//! `orders/history/<id>/<version>`) and the snapshot folded from them (under
//! `orders/order/<id>`, for fast reads), both with the kit's versioned JSON encoding.

use serde::{Deserialize, Serialize};

use meshwork_common::Record;

use crate::state::State;

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub title: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// A shipping address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    #[serde(default)]
    pub region: String,
    pub postal_code: String,
    pub country: String,
}

/// An order as of some event: the fold of its events up to that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: String,
    pub user_id: String,
    pub state: State,
    pub lines: Vec<Line>,
    pub currency: String,
    pub total_minor: i64,
    pub address: Address,
    #[serde(default)]
    pub reservation_id: String,
    #[serde(default)]
    pub payment_id: String,
    #[serde(default)]
    pub checkout_id: String,
    /// Number of events so far.
    pub version: i64,
    #[serde(default)]
    pub reason: String,
    pub create_ms: i64,
    pub update_ms: i64,
    /// When it became DELIVERED; 0 before.
    #[serde(default)]
    pub delivery_ms: i64,
    #[serde(default)]
    pub refunded_minor: i64,
    /// The state it was cancelled from (which decides what cancelling gives back).
    #[serde(default)]
    pub cancelled_from: Option<State>,
    /// Whether a REFUNDED event was recorded.
    #[serde(default)]
    pub refunded: bool,
    /// Whether a RESTOCKED event was recorded.
    #[serde(default)]
    pub restocked: bool,
}

impl Record for OrderRecord {
    const KIND: &'static str = "order record";
}

/// One event of an order: what changed, not the order after it (that is the fold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub order_id: String,
    /// The order's version after this event (1 for the creation).
    pub version: i64,
    /// The event's position in the orders' event log.
    pub sequence: u64,
    pub time_ms: i64,
    pub body: EventBody,
}

impl Record for EventRecord {
    const KIND: &'static str = "order event record";
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// The order was created in CREATED.
    Created {
        user_id: String,
        lines: Vec<Line>,
        currency: String,
        /// Boxed: the other events are small.
        address: Box<Address>,
        #[serde(default)]
        reservation_id: String,
        #[serde(default)]
        checkout_id: String,
    },
    /// The order moved from one state to another.
    StateChanged {
        from: State,
        to: State,
        #[serde(default)]
        reason: String,
        /// The captured payment, for a move to CONFIRMED.
        #[serde(default)]
        payment_id: String,
    },
    /// Money was given back.
    Refunded { payment_id: String, amount: i64 },
    /// Items were put back in stock or their hold released.
    Restocked { units: i64 },
}

impl EventBody {
    /// Returns the event log type of this event (`order.created`).
    pub fn log_type(&self) -> &'static str {
        match self {
            EventBody::Created { .. } => "order.created",
            EventBody::StateChanged { .. } => "order.state_changed",
            EventBody::Refunded { .. } => "order.refunded",
            EventBody::Restocked { .. } => "order.restocked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_a_version() {
        let e = EventRecord {
            order_id: "ord_1".into(),
            version: 2,
            sequence: 7,
            time_ms: 10,
            body: EventBody::StateChanged {
                from: State::Created,
                to: State::Confirmed,
                reason: String::new(),
                payment_id: "pay_1".into(),
            },
        };
        let bytes = e.encode().unwrap();
        assert!(bytes.starts_with(br#"{"_v":1,"#), "{}", String::from_utf8_lossy(&bytes));
        assert!(String::from_utf8_lossy(&bytes).contains(r#""kind":"state_changed""#));
        assert!(String::from_utf8_lossy(&bytes).contains(r#""to":"CONFIRMED""#));
        assert_eq!(EventRecord::decode(&bytes).unwrap(), e);
        assert!(EventRecord::decode(b"{}").is_err());
    }
}
