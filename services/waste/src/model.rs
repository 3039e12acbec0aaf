//! The records the waste service keeps in the store (versioned JSON,
//! `meshwork_common::record`) and their wire forms.

use meshwork_common::fields::{timestamp, timestamp_opt};
use meshwork_common::record::Record;
use meshwork_proto::pb::waste::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::predict::FillModel;

/// A depot or landfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRecord {
    pub site_id: String,
    /// `pb::SiteKind` as i32.
    pub kind: i32,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

impl Record for SiteRecord {
    const KIND: &'static str = "waste site record";
}

impl SiteRecord {
    /// The wire form.
    pub fn to_pb(&self) -> pb::Site {
        pb::Site {
            site_id: self.site_id.clone(),
            kind: self.kind,
            name: self.name.clone(),
            location: Some(pb::LatLon { lat: self.lat, lon: self.lon }),
        }
    }
}

/// A truck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruckRecord {
    pub truck_id: String,
    pub depot_id: String,
    pub capacity_litres: i64,
    pub shift_start_minute: i32,
    pub shift_end_minute: i32,
}

impl Record for TruckRecord {
    const KIND: &'static str = "waste truck record";
}

impl TruckRecord {
    /// The wire form.
    pub fn to_pb(&self) -> pb::Truck {
        pb::Truck {
            truck_id: self.truck_id.clone(),
            depot_id: self.depot_id.clone(),
            capacity_litres: self.capacity_litres,
            shift_start_minute: self.shift_start_minute,
            shift_end_minute: self.shift_end_minute,
        }
    }
}

/// A bin: its definition, current fill and prediction state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinRecord {
    pub bin_id: String,
    pub lat: f64,
    pub lon: f64,
    pub capacity_litres: i64,
    /// `pb::WasteType` as i32.
    pub waste_type: i32,
    /// Latest fill (reading or pickup), percent.
    pub fill: f64,
    /// Time of the latest reading or pickup (0 = never).
    pub fill_ms: i64,
    /// Time of the latest pickup (0 = never).
    pub emptied_ms: i64,
    /// Skipped on a route and not collected since.
    pub carried_over: bool,
    pub model: FillModel,
}

impl Record for BinRecord {
    const KIND: &'static str = "waste bin record";
}

impl BinRecord {
    /// Predicted fill at `at_ms` (the current fill when `at_ms` is not later).
    pub fn predicted_fill(&self, at_ms: i64) -> f64 {
        self.model.predict(self.fill, self.fill_ms, at_ms)
    }

    /// Applies a reading; returns false when it is older than the latest reading or pickup
    /// (kept in the history only).
    pub fn apply_reading(&mut self, fill: f64, at_ms: i64) -> bool {
        if at_ms < self.fill_ms || (at_ms == self.fill_ms && self.emptied_ms == at_ms) {
            return false;
        }
        self.fill = fill;
        self.fill_ms = at_ms;
        self.model.observe(fill, at_ms);
        true
    }

    /// Applies a pickup at `at_ms`: the bin is empty, unless a later reading is there.
    pub fn apply_pickup(&mut self, at_ms: i64) {
        self.emptied_ms = self.emptied_ms.max(at_ms);
        self.carried_over = false;
        // A reading taken after the pickup (arrived first) already describes the bin.
        if at_ms >= self.fill_ms {
            self.fill = 0.0;
            self.fill_ms = at_ms;
            self.model.emptied(at_ms);
        }
    }

    /// The wire form with the prediction at `at_ms`.
    pub fn to_pb(&self, at_ms: i64) -> pb::Bin {
        let full = self.model.full_time(self.fill, self.fill_ms.max(1));
        pb::Bin {
            bin_id: self.bin_id.clone(),
            location: Some(pb::LatLon { lat: self.lat, lon: self.lon }),
            capacity_litres: self.capacity_litres,
            waste_type: self.waste_type,
            fill_percent: self.fill,
            fill_time: timestamp_opt(self.fill_ms),
            emptied_time: timestamp_opt(self.emptied_ms),
            carried_over: self.carried_over,
            prediction: Some(pb::Prediction {
                rate_percent_per_hour: self.model.rate_at(at_ms),
                day_of_week_model: self.model.uses_day_of_week(),
                full_time: full.map(timestamp),
                predicted_fill_percent: self.predicted_fill(at_ms),
            }),
        }
    }
}

/// A plan: the routes it made and its totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan_id: String,
    pub date_ms: i64,
    pub depot_id: String,
    pub landfill_id: String,
    pub threshold: f64,
    pub route_ids: Vec<String>,
    pub distance_m: i64,
    pub bins: i32,
    pub create_ms: i64,
}

impl Record for PlanRecord {
    const KIND: &'static str = "waste plan record";
}

/// One stop of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRecord {
    pub bin_id: String,
    pub trip: i32,
    pub expected_litres: i64,
    /// `pb::StopStatus` as i32.
    pub status: i32,
    pub weight_kg: f64,
    pub skip_reason: String,
    pub done_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

/// A route and its execution state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub route_id: String,
    pub plan_id: String,
    pub truck_id: String,
    /// `pb::RouteState` as i32.
    pub state: i32,
    pub stops: Vec<StopRecord>,
    pub distance_m: i64,
    pub trips: i32,
    pub duration_s: i64,
    pub over_shift: bool,
    /// Latest position on this route, if any.
    pub position: Option<(f64, f64)>,
}

impl Record for RouteRecord {
    const KIND: &'static str = "waste route record";
}

impl RouteRecord {
    /// The wire form.
    pub fn to_pb(&self) -> pb::Route {
        pb::Route {
            route_id: self.route_id.clone(),
            plan_id: self.plan_id.clone(),
            truck_id: self.truck_id.clone(),
            state: self.state,
            stops: self
                .stops
                .iter()
                .map(|s| pb::Stop {
                    bin_id: s.bin_id.clone(),
                    trip: s.trip,
                    expected_litres: s.expected_litres,
                    status: s.status,
                    weight_kg: s.weight_kg,
                    skip_reason: s.skip_reason.clone(),
                    done_time: timestamp_opt(s.done_ms),
                    location: Some(pb::LatLon { lat: s.lat, lon: s.lon }),
                })
                .collect(),
            distance_m: self.distance_m,
            trips: self.trips,
            estimated_duration: Some(prost_types::Duration { seconds: self.duration_s, nanos: 0 }),
            over_shift: self.over_shift,
            position: self.position.map(|(lat, lon)| pb::LatLon { lat, lon }),
        }
    }

    /// Whether no stop is PENDING.
    pub fn all_done(&self) -> bool {
        self.stops.iter().all(|s| s.status != pb::StopStatus::Pending as i32)
    }
}

/// A truck's latest GPS ping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionRecord {
    pub lat: f64,
    pub lon: f64,
    pub time_ms: i64,
    pub route_id: String,
}

impl Record for PositionRecord {
    const KIND: &'static str = "waste position record";
}
