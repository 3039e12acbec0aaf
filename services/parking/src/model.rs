//! The records the parking service keeps in the store (versioned JSON,
//! `meshwork_common::record`) and their wire forms: lots with their spots, reservations, and
//! the per-spot occupancy ([`crate::rules::Occupancy`]).

use meshwork_common::fields::{timestamp, timestamp_opt};
use meshwork_common::record::Record;
use meshwork_proto::pb::parking::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::rules::{NO_SHOW_AFTER_MS, Occupancy};

/// A spot type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpotKind {
    Compact,
    Regular,
    Large,
    Ev,
    Accessible,
}

impl SpotKind {
    /// Every type, in wire order.
    pub const ALL: [SpotKind; 5] =
        [SpotKind::Compact, SpotKind::Regular, SpotKind::Large, SpotKind::Ev, SpotKind::Accessible];

    /// Returns the type of a wire value (`None` for UNSPECIFIED or unknown).
    pub fn from_pb(value: i32) -> Option<SpotKind> {
        match pb::SpotType::try_from(value).ok()? {
            pb::SpotType::Unspecified => None,
            pb::SpotType::Compact => Some(SpotKind::Compact),
            pb::SpotType::Regular => Some(SpotKind::Regular),
            pb::SpotType::Large => Some(SpotKind::Large),
            pb::SpotType::Ev => Some(SpotKind::Ev),
            pb::SpotType::Accessible => Some(SpotKind::Accessible),
        }
    }

    /// Returns the wire enum.
    pub fn to_pb(self) -> pb::SpotType {
        match self {
            SpotKind::Compact => pb::SpotType::Compact,
            SpotKind::Regular => pb::SpotType::Regular,
            SpotKind::Large => pb::SpotType::Large,
            SpotKind::Ev => pb::SpotType::Ev,
            SpotKind::Accessible => pb::SpotType::Accessible,
        }
    }

    /// Returns the type's letter, in keys and generated spot ids.
    pub fn letter(self) -> char {
        match self {
            SpotKind::Compact => 'c',
            SpotKind::Regular => 'r',
            SpotKind::Large => 'l',
            SpotKind::Ev => 'e',
            SpotKind::Accessible => 'a',
        }
    }

    /// Returns the type's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            SpotKind::Compact => "COMPACT",
            SpotKind::Regular => "REGULAR",
            SpotKind::Large => "LARGE",
            SpotKind::Ev => "EV",
            SpotKind::Accessible => "ACCESSIBLE",
        }
    }
}

/// One spot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotRecord {
    pub id: String,
    pub kind: SpotKind,
}

/// One level and its spots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelRecord {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub spots: Vec<SpotRecord>,
}

/// A lot. Immutable once created, so replicas may cache it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotRecord {
    pub id: String,
    pub name: String,
    pub currency: String,
    /// Hourly price per type.
    pub prices: Vec<(SpotKind, i64)>,
    pub levels: Vec<LevelRecord>,
    pub create_ms: i64,
}

impl Record for LotRecord {
    const KIND: &'static str = "lot record";
}

impl LotRecord {
    /// Returns the hourly price of a type, if the lot prices it.
    pub fn hourly(&self, kind: SpotKind) -> Option<i64> {
        self.prices.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
    }

    /// Returns every spot with its level, in lot order.
    pub fn spots(&self) -> impl Iterator<Item = (&LevelRecord, &SpotRecord)> {
        self.levels.iter().flat_map(|l| l.spots.iter().map(move |s| (l, s)))
    }

    /// Returns a spot and its level.
    pub fn spot(&self, id: &str) -> Option<(&LevelRecord, &SpotRecord)> {
        self.spots().find(|(_, s)| s.id == id)
    }

    /// Returns the number of spots.
    pub fn spot_count(&self) -> usize {
        self.levels.iter().map(|l| l.spots.len()).sum()
    }

    /// Returns the wire form of a spot.
    pub fn spot_pb(level: &LevelRecord, spot: &SpotRecord) -> pb::Spot {
        pb::Spot { spot_id: spot.id.clone(), r#type: spot.kind.to_pb() as i32, level_id: level.id.clone() }
    }

    /// Returns the wire form.
    pub fn to_pb(&self) -> pb::Lot {
        pb::Lot {
            lot_id: self.id.clone(),
            name: self.name.clone(),
            currency: self.currency.clone(),
            prices: self.prices.iter().map(|(k, p)| pb::Price { r#type: k.to_pb() as i32, hourly_minor: *p }).collect(),
            levels: self
                .levels
                .iter()
                .map(|l| pb::Level {
                    level_id: l.id.clone(),
                    name: l.name.clone(),
                    spots: l.spots.iter().map(|s| LotRecord::spot_pb(l, s)).collect(),
                    blocks: vec![],
                })
                .collect(),
            spot_count: self.spot_count() as i32,
            create_time: timestamp_opt(self.create_ms),
        }
    }
}

/// A spot's occupancy as stored.
impl Record for Occupancy {
    const KIND: &'static str = "occupancy record";
}

/// Where a reservation's life stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationState {
    Held,
    Confirmed,
    CheckedIn,
    CheckedOut,
    Cancelled,
    Expired,
    NoShow,
}

impl ReservationState {
    /// Returns the wire enum.
    pub fn to_pb(self) -> pb::ReservationState {
        match self {
            ReservationState::Held => pb::ReservationState::Held,
            ReservationState::Confirmed => pb::ReservationState::Confirmed,
            ReservationState::CheckedIn => pb::ReservationState::CheckedIn,
            ReservationState::CheckedOut => pb::ReservationState::CheckedOut,
            ReservationState::Cancelled => pb::ReservationState::Cancelled,
            ReservationState::Expired => pb::ReservationState::Expired,
            ReservationState::NoShow => pb::ReservationState::NoShow,
        }
    }

    /// Returns the state's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ReservationState::Held => "HELD",
            ReservationState::Confirmed => "CONFIRMED",
            ReservationState::CheckedIn => "CHECKED_IN",
            ReservationState::CheckedOut => "CHECKED_OUT",
            ReservationState::Cancelled => "CANCELLED",
            ReservationState::Expired => "EXPIRED",
            ReservationState::NoShow => "NO_SHOW",
        }
    }
}

/// A reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRecord {
    pub id: String,
    pub lot: String,
    pub spot: String,
    pub level: String,
    pub kind: SpotKind,
    pub plate: String,
    #[serde(default)]
    pub user: String,
    pub state: ReservationState,
    pub start: i64,
    pub end: i64,
    pub hold_until: i64,
    pub hourly: i64,
    pub price: i64,
    pub currency: String,
    #[serde(default)]
    pub refund: i64,
    #[serde(default)]
    pub overstay: i64,
    /// When it was confirmed (0: never).
    #[serde(default)]
    pub confirm_ms: i64,
    #[serde(default)]
    pub check_in_ms: i64,
    #[serde(default)]
    pub check_out_ms: i64,
    #[serde(default)]
    pub cancel_reason: String,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl Record for ReservationRecord {
    const KIND: &'static str = "reservation record";
}

impl ReservationRecord {
    /// Returns when a confirmed reservation becomes a no-show.
    pub fn no_show_at(&self) -> i64 {
        self.start.saturating_add(NO_SHOW_AFTER_MS)
    }

    /// Returns the state as of `now`: a hold past its time is EXPIRED and a confirmed
    /// reservation past its no-show time NO_SHOW, whether recorded yet or not.
    pub fn state_at(&self, now: i64) -> ReservationState {
        match self.state {
            ReservationState::Held if self.hold_until <= now => ReservationState::Expired,
            ReservationState::Confirmed if self.no_show_at() <= now => ReservationState::NoShow,
            s => s,
        }
    }

    /// Returns what is owed in all.
    pub fn total(&self) -> i64 {
        if self.confirm_ms == 0 {
            return 0;
        }
        self.price.saturating_sub(self.refund).saturating_add(self.overstay)
    }

    /// Returns the wire form as of `now` (see [`ReservationRecord::state_at`]).
    pub fn to_pb(&self, now: i64) -> pb::Reservation {
        pb::Reservation {
            reservation_id: self.id.clone(),
            lot_id: self.lot.clone(),
            spot_id: self.spot.clone(),
            level_id: self.level.clone(),
            r#type: self.kind.to_pb() as i32,
            plate: self.plate.clone(),
            user_id: self.user.clone(),
            state: self.state_at(now).to_pb() as i32,
            start_time: Some(timestamp(self.start)),
            end_time: Some(timestamp(self.end)),
            hold_expire_time: Some(timestamp(self.hold_until)),
            hourly_minor: self.hourly,
            price_minor: self.price,
            currency: self.currency.clone(),
            refund_minor: self.refund,
            overstay_minor: self.overstay,
            total_minor: self.total(),
            check_in_time: timestamp_opt(self.check_in_ms),
            check_out_time: timestamp_opt(self.check_out_ms),
            create_time: Some(timestamp(self.create_ms)),
            update_time: Some(timestamp(self.update_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{HOUR_MS, SlotState};

    fn reservation() -> ReservationRecord {
        ReservationRecord {
            id: "rsv_x".into(),
            lot: "lot".into(),
            spot: "l1-r1".into(),
            level: "l1".into(),
            kind: SpotKind::Regular,
            plate: "AB123".into(),
            user: String::new(),
            state: ReservationState::Held,
            start: 10 * HOUR_MS,
            end: 12 * HOUR_MS,
            hold_until: 600_000,
            hourly: 400,
            price: 800,
            currency: "USD".into(),
            refund: 0,
            overstay: 0,
            confirm_ms: 0,
            check_in_ms: 0,
            check_out_ms: 0,
            cancel_reason: String::new(),
            create_ms: 1,
            update_ms: 1,
        }
    }

    #[test]
    fn records_round_trip_and_show_due_states() {
        let r = reservation();
        assert_eq!(ReservationRecord::decode(&r.encode().unwrap()).unwrap(), r);
        assert_eq!(r.state_at(599_999), ReservationState::Held);
        assert_eq!(r.state_at(600_000), ReservationState::Expired);
        assert_eq!(r.total(), 0, "nothing is owed before a confirmation");
        let c = ReservationRecord { state: ReservationState::Confirmed, confirm_ms: 5, refund: 0, ..r.clone() };
        assert_eq!(c.state_at(10 * HOUR_MS + NO_SHOW_AFTER_MS - 1), ReservationState::Confirmed);
        assert_eq!(c.state_at(10 * HOUR_MS + NO_SHOW_AFTER_MS), ReservationState::NoShow);
        assert_eq!(ReservationRecord { refund: 400, overstay: 150, ..c }.total(), 550);

        let mut occ = Occupancy::default();
        occ.insert(crate::rules::Slot { id: "a".into(), start: 1, end: 2, state: SlotState::Held, hold_until: 3 });
        assert_eq!(Occupancy::decode(&occ.encode().unwrap()).unwrap(), occ);
        for kind in SpotKind::ALL {
            assert_eq!(SpotKind::from_pb(kind.to_pb() as i32), Some(kind));
        }
        assert_eq!(SpotKind::from_pb(0), None);
        assert_eq!(SpotKind::from_pb(99), None);
    }
}
