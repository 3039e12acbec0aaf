//! The records the inventory keeps in the store (versioned JSON, `meshwork_common::record`)
//! and their wire forms: a sku's stock across its locations, reservations, and the payload
//! of a change-log event.

use std::collections::BTreeMap;

use meshwork_common::fields::{timestamp, timestamp_opt};
use meshwork_common::record::Record;
use meshwork_proto::pb::inventory::v1 as pb;
use serde::{Deserialize, Serialize};

/// One location's stock of a sku.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationStock {
    pub on_hand: i64,
    pub reserved: i64,
    /// Increases with every change of this (sku, location).
    pub version: i64,
    pub update_ms: i64,
}

impl LocationStock {
    /// Returns on hand minus reserved.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// A sku's stock: every location that ever held it, and its low-stock threshold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuStock {
    /// Available stock under this emits LOW_STOCK; 0 means none.
    #[serde(default)]
    pub threshold: i64,
    /// By location id.
    #[serde(default)]
    pub locations: BTreeMap<String, LocationStock>,
}

impl Record for SkuStock {
    const KIND: &'static str = "stock record";
}

impl SkuStock {
    /// Returns the total (on hand, reserved) over every location.
    pub fn totals(&self) -> (i64, i64) {
        // Saturating: many locations near the largest on hand must not overflow (never panic).
        self.locations
            .values()
            .fold((0i64, 0i64), |(h, r), l| (h.saturating_add(l.on_hand), r.saturating_add(l.reserved)))
    }

    /// Returns the total available over every location.
    pub fn available(&self) -> i64 {
        let (on_hand, reserved) = self.totals();
        on_hand.saturating_sub(reserved)
    }

    /// Returns each location's available units, for the allocation.
    pub fn available_by_location(&self) -> Vec<(String, i64)> {
        self.locations.iter().map(|(id, l)| (id.clone(), l.available())).collect()
    }

    /// Returns the wire form of one location's level.
    pub fn level(&self, sku: &str, location: &str) -> pb::StockLevel {
        let l = self.locations.get(location).cloned().unwrap_or_default();
        pb::StockLevel {
            sku: sku.to_string(),
            location: location.to_string(),
            on_hand: l.on_hand,
            reserved: l.reserved,
            available: l.available(),
            version: l.version,
            update_time: timestamp_opt(l.update_ms),
        }
    }

    /// Returns the wire form of the whole sku.
    pub fn to_response(&self, sku: &str) -> pb::GetStockResponse {
        let (on_hand, reserved) = self.totals();
        pb::GetStockResponse {
            sku: sku.to_string(),
            locations: self.locations.keys().map(|l| self.level(sku, l)).collect(),
            on_hand,
            reserved,
            available: on_hand.saturating_sub(reserved),
            low_stock_threshold: self.threshold,
        }
    }
}

/// Where a reservation's life stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationState {
    Held,
    Committed,
    Released,
    Expired,
}

impl ReservationState {
    /// Returns the wire enum.
    pub fn to_pb(self) -> pb::ReservationState {
        match self {
            ReservationState::Held => pb::ReservationState::Held,
            ReservationState::Committed => pb::ReservationState::Committed,
            ReservationState::Released => pb::ReservationState::Released,
            ReservationState::Expired => pb::ReservationState::Expired,
        }
    }

    /// Returns the state's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ReservationState::Held => "HELD",
            ReservationState::Committed => "COMMITTED",
            ReservationState::Released => "RELEASED",
            ReservationState::Expired => "EXPIRED",
        }
    }
}

/// A requested line of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRecord {
    pub sku: String,
    pub quantity: i64,
    /// Empty when the service chose.
    #[serde(default)]
    pub location: String,
}

/// Units of one sku held at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    pub sku: String,
    pub location: String,
    pub quantity: i64,
}

/// A reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRecord {
    pub id: String,
    pub lines: Vec<LineRecord>,
    pub allocations: Vec<AllocationRecord>,
    pub state: ReservationState,
    #[serde(default)]
    pub reference: String,
    pub create_ms: i64,
    pub expire_ms: i64,
    pub update_ms: i64,
    /// Why it was released, when it was.
    #[serde(default)]
    pub release_reason: String,
}

impl Record for ReservationRecord {
    const KIND: &'static str = "reservation record";
}

impl ReservationRecord {
    /// Returns whether the hold is HELD but past its expiry at `now_ms` (expired, even if no
    /// sweeper has seen it yet).
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.state == ReservationState::Held && self.expire_ms <= now_ms
    }

    /// Returns the wire form.
    pub fn to_pb(&self) -> pb::Reservation {
        pb::Reservation {
            reservation_id: self.id.clone(),
            lines: self
                .lines
                .iter()
                .map(|l| pb::ReserveLine { sku: l.sku.clone(), quantity: l.quantity, location: l.location.clone() })
                .collect(),
            allocations: self
                .allocations
                .iter()
                .map(|a| pb::Allocation { sku: a.sku.clone(), location: a.location.clone(), quantity: a.quantity })
                .collect(),
            state: self.state.to_pb() as i32,
            reference: self.reference.clone(),
            create_time: Some(timestamp(self.create_ms)),
            expire_time: Some(timestamp(self.expire_ms)),
            update_time: Some(timestamp(self.update_ms)),
        }
    }
}

/// Returns the change-log event type of a stock event kind.
pub fn event_type(kind: pb::StockEventKind) -> &'static str {
    match kind {
        pb::StockEventKind::Adjusted => "stock.adjusted",
        pb::StockEventKind::Reserved => "stock.reserved",
        pb::StockEventKind::Committed => "stock.committed",
        pb::StockEventKind::Released => "stock.released",
        pb::StockEventKind::Expired => "stock.expired",
        pb::StockEventKind::LowStock => "stock.low",
        pb::StockEventKind::Unspecified => "stock.unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut stock = SkuStock { threshold: 3, ..Default::default() };
        stock.locations.insert("w1".into(), LocationStock { on_hand: 10, reserved: 4, version: 2, update_ms: 5 });
        stock.locations.insert("w2".into(), LocationStock { on_hand: 1, reserved: 0, version: 1, update_ms: 5 });
        assert_eq!(SkuStock::decode(&stock.encode().unwrap()).unwrap(), stock);
        assert_eq!(stock.totals(), (11, 4));
        assert_eq!(stock.available(), 7);
        let response = stock.to_response("ABC");
        assert_eq!(response.locations.len(), 2);
        assert_eq!(response.locations[0].available, 6);

        let res = ReservationRecord {
            id: "res_x".into(),
            lines: vec![LineRecord { sku: "ABC".into(), quantity: 2, location: String::new() }],
            allocations: vec![AllocationRecord { sku: "ABC".into(), location: "w1".into(), quantity: 2 }],
            state: ReservationState::Held,
            reference: "o1".into(),
            create_ms: 1,
            expire_ms: 100,
            update_ms: 1,
            release_reason: String::new(),
        };
        assert_eq!(ReservationRecord::decode(&res.encode().unwrap()).unwrap(), res);
        assert!(res.is_due(100) && !res.is_due(99));
    }
}
