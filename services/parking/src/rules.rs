//! The parking rules as pure functions, unit-tested without a store: the 15-minute grid,
//! price quotes, the refund policy, overstay charges, and a spot's occupancy (the live
//! reservations on one spot and the overlap check that keeps them disjoint).
//!
//! Liveness is judged at a time `now`, so that a hold past its time or a confirmed
//! reservation past its no-show time stops occupying its spot the moment it is due, whether or
//! not a sweeper or a reader has recorded it yet.

use serde::{Deserialize, Serialize};

/// One quarter hour, the granularity of every window.
pub const QUARTER_MS: i64 = 15 * 60 * 1000;
/// One hour.
pub const HOUR_MS: i64 = 4 * QUARTER_MS;
/// How far ahead a reservation may start.
pub const MAX_AHEAD_MS: i64 = 30 * 24 * HOUR_MS;
/// Longest window.
pub const MAX_LENGTH_MS: i64 = 7 * 24 * HOUR_MS;
/// A confirmed reservation nobody checked in to is a no-show this long after its start.
pub const NO_SHOW_AFTER_MS: i64 = 30 * 60 * 1000;
/// Check-in opens this long before the start.
pub const EARLY_CHECK_IN_MS: i64 = 15 * 60 * 1000;
/// A cancellation more than this long before the start is refunded in full.
pub const FULL_REFUND_BEFORE_MS: i64 = HOUR_MS;

/// Returns `ms` rounded down to the quarter hour.
pub fn floor_quarter(ms: i64) -> i64 {
    ms.div_euclid(QUARTER_MS) * QUARTER_MS
}

/// Returns `ms` rounded up to the quarter hour.
pub fn ceil_quarter(ms: i64) -> i64 {
    let floor = floor_quarter(ms);
    if floor == ms { ms } else { floor.saturating_add(QUARTER_MS) }
}

/// Returns `a * b / d` rounded up, for non-negative inputs, saturating at `i64::MAX`.
fn mul_div_ceil(a: i64, b: i64, d: i64) -> i64 {
    let n = i128::from(a.max(0)) * i128::from(b.max(0));
    let d = i128::from(d.max(1));
    i64::try_from((n + d - 1) / d).unwrap_or(i64::MAX)
}

/// Returns the price of `[start, end)` at `hourly` per hour: per quarter hour, rounded up to
/// the minor unit.
pub fn quote(hourly: i64, start: i64, end: i64) -> i64 {
    let quarters = (end - start).max(0) / QUARTER_MS;
    mul_div_ceil(hourly, quarters, 4)
}

/// Returns the refund of a confirmed reservation of `price` cancelled at `now`: all of it
/// more than an hour before `start`, half after (rounded in the customer's favour).
pub fn refund(price: i64, now: i64, start: i64) -> i64 {
    let price = price.max(0);
    if now < start - FULL_REFUND_BEFORE_MS { price } else { price - price / 2 }
}

/// Returns the overstay charge of leaving at `out` a reservation that ended at `end`: every
/// started quarter hour past the end at 1.5 times `hourly`.
pub fn overstay(hourly: i64, end: i64, out: i64) -> i64 {
    if out <= end {
        return 0;
    }
    let quarters = (out - end + QUARTER_MS - 1) / QUARTER_MS;
    mul_div_ceil(hourly, quarters.saturating_mul(3), 8)
}

/// How a reservation occupies its spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotState {
    /// Until `hold_until`.
    #[serde(rename = "h")]
    Held,
    /// Until its no-show time, unless checked in.
    #[serde(rename = "c")]
    Confirmed,
    /// Until checked out, and past its end while the car stays.
    #[serde(rename = "i")]
    CheckedIn,
}

/// One live reservation on a spot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    #[serde(rename = "r")]
    pub id: String,
    #[serde(rename = "s")]
    pub start: i64,
    #[serde(rename = "e")]
    pub end: i64,
    #[serde(rename = "t")]
    pub state: SlotState,
    /// When a HELD slot stops holding (0 otherwise).
    #[serde(rename = "u", default)]
    pub hold_until: i64,
}

impl Slot {
    /// Returns whether the slot still occupies its spot at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        match self.state {
            SlotState::Held => now < self.hold_until,
            SlotState::Confirmed => now < self.start.saturating_add(NO_SHOW_AFTER_MS),
            SlotState::CheckedIn => true,
        }
    }

    /// Returns the end of the time the slot blocks at `now`: its end, or for a car that is
    /// still there past its end, the end of the current quarter hour.
    pub fn busy_until(&self, now: i64) -> i64 {
        match self.state {
            SlotState::CheckedIn => self.end.max(floor_quarter(now) + QUARTER_MS),
            _ => self.end,
        }
    }

    /// Returns whether the slot, live at `now`, overlaps `[start, end)`.
    pub fn overlaps(&self, start: i64, end: i64, now: i64) -> bool {
        self.is_live(now) && self.start < end && start < self.busy_until(now)
    }
}

/// The live reservations of one spot (stored in one record per spot, read and written in the
/// transaction of every reservation of that spot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupancy {
    #[serde(default)]
    pub slots: Vec<Slot>,
}

impl Occupancy {
    /// Drops the slots that no longer occupy the spot at `now` (holds past their time,
    /// no-shows); their reservations' records are settled by the sweeper.
    pub fn prune(&mut self, now: i64) {
        self.slots.retain(|s| s.is_live(now));
    }

    /// Returns whether `[start, end)` is free at `now`.
    pub fn is_free(&self, start: i64, end: i64, now: i64) -> bool {
        !self.slots.iter().any(|s| s.overlaps(start, end, now))
    }

    /// Returns the slot of reservation `id`.
    pub fn find(&self, id: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// Returns the slot of reservation `id`, to change it.
    pub fn find_mut(&mut self, id: &str) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    /// Removes the slot of reservation `id`.
    pub fn remove(&mut self, id: &str) {
        self.slots.retain(|s| s.id != id);
    }

    /// Adds a slot, keeping them by start.
    pub fn insert(&mut self, slot: Slot) {
        let at = self.slots.partition_point(|s| (s.start, &s.id) < (slot.start, &slot.id));
        self.slots.insert(at, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % QUARTER_MS;

    #[test]
    fn windows_round_outward_to_quarter_hours() {
        assert_eq!(floor_quarter(T0 + 1), T0);
        assert_eq!(ceil_quarter(T0 + 1), T0 + QUARTER_MS);
        assert_eq!(ceil_quarter(T0), T0);
        assert_eq!(floor_quarter(T0 + QUARTER_MS - 1), T0);
        assert_eq!(floor_quarter(-1), -QUARTER_MS);
    }

    #[test]
    fn quotes_are_per_quarter_hour_rounded_up() {
        assert_eq!(quote(400, T0, T0 + HOUR_MS), 400);
        assert_eq!(quote(400, T0, T0 + QUARTER_MS), 100);
        assert_eq!(quote(250, T0, T0 + 3 * QUARTER_MS), 188, "187.5 rounds up");
        assert_eq!(quote(0, T0, T0 + HOUR_MS), 0);
        assert_eq!(quote(400, T0, T0), 0);
        assert_eq!(quote(i64::MAX, T0, T0 + MAX_LENGTH_MS), i64::MAX, "saturates, never overflows");
    }

    #[test]
    fn refunds_are_full_more_than_an_hour_ahead_and_half_after() {
        let start = T0 + 10 * HOUR_MS;
        assert_eq!(refund(1000, start - HOUR_MS - 1, start), 1000);
        assert_eq!(refund(1000, start - HOUR_MS, start), 500, "exactly one hour before is not more than one");
        assert_eq!(refund(1001, start - 1, start), 501, "half, rounded for the customer");
        assert_eq!(refund(1000, start + QUARTER_MS, start), 500);
        assert_eq!(refund(0, 0, start), 0);
    }

    #[test]
    fn overstay_is_one_and_a_half_times_the_rate_per_started_quarter() {
        let end = T0 + HOUR_MS;
        assert_eq!(overstay(400, end, end), 0);
        assert_eq!(overstay(400, end, end - 1), 0);
        assert_eq!(overstay(400, end, end + 1), 150, "a started quarter: 400 / 4 * 1.5");
        assert_eq!(overstay(400, end, end + QUARTER_MS), 150);
        assert_eq!(overstay(400, end, end + HOUR_MS), 600);
        assert_eq!(overstay(333, end, end + QUARTER_MS), 125, "124.875 rounds up");
    }

    fn slot(id: &str, start: i64, end: i64, state: SlotState, hold_until: i64) -> Slot {
        Slot { id: id.into(), start, end, state, hold_until }
    }

    #[test]
    fn holds_and_no_shows_stop_occupying_when_due() {
        let start = T0 + 2 * HOUR_MS;
        let mut occ = Occupancy::default();
        occ.insert(slot("h", start, start + HOUR_MS, SlotState::Held, T0 + 600_000));
        assert!(!occ.is_free(start, start + QUARTER_MS, T0));
        assert!(!occ.is_free(start, start + QUARTER_MS, T0 + 599_999));
        assert!(occ.is_free(start, start + QUARTER_MS, T0 + 600_000), "the hold ran out");
        assert!(occ.is_free(start + HOUR_MS, start + 2 * HOUR_MS, T0), "ranges are half-open");
        assert!(occ.is_free(start - HOUR_MS, start, T0));

        let mut occ = Occupancy::default();
        occ.insert(slot("c", start, start + HOUR_MS, SlotState::Confirmed, 0));
        assert!(!occ.is_free(start, start + HOUR_MS, start + NO_SHOW_AFTER_MS - 1));
        assert!(occ.is_free(start, start + HOUR_MS, start + NO_SHOW_AFTER_MS), "a no-show frees the spot");
        occ.prune(start + NO_SHOW_AFTER_MS);
        assert!(occ.slots.is_empty());
    }

    #[test]
    fn a_car_still_there_blocks_past_its_end() {
        let start = T0;
        let mut occ = Occupancy::default();
        occ.insert(slot("i", start, start + HOUR_MS, SlotState::CheckedIn, 0));
        let late = start + HOUR_MS + 5 * 60 * 1000;
        assert!(occ.is_free(start + HOUR_MS, start + 2 * HOUR_MS, start + 10));
        assert!(!occ.is_free(start + HOUR_MS, start + 2 * HOUR_MS, late), "overstaying");
        assert!(occ.is_free(start + HOUR_MS + QUARTER_MS, start + 2 * HOUR_MS, late));
        occ.prune(late + 10 * HOUR_MS);
        assert_eq!(occ.slots.len(), 1, "a checked-in car is never pruned");
    }

    #[test]
    fn slots_stay_sorted_and_removable() {
        let mut occ = Occupancy::default();
        occ.insert(slot("b", T0 + 2 * HOUR_MS, T0 + 3 * HOUR_MS, SlotState::Confirmed, 0));
        occ.insert(slot("a", T0, T0 + HOUR_MS, SlotState::Confirmed, 0));
        assert_eq!(occ.slots[0].id, "a");
        assert!(occ.find("b").is_some());
        if let Some(s) = occ.find_mut("b") {
            s.state = SlotState::CheckedIn;
        }
        assert_eq!(occ.find("b").map(|s| s.state), Some(SlotState::CheckedIn));
        occ.remove("a");
        assert!(occ.find("a").is_none() && occ.slots.len() == 1);
    }
}
