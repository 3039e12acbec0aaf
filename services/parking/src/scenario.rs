//! The double-booking race as a reusable scenario, for the in-process tests and for the
//! end-to-end run through the gateway alike: `calls` concurrent Reserve calls for one spot,
//! their windows in groups of ten that overlap within a group (every window of a group
//! contains the group's common quarter hour) and never across groups. Exactly one call per
//! group may win; [`RaceReport::verify`] checks that, and that the winners' windows are
//! disjoint as the service answers them.

use std::collections::BTreeMap;

use meshwork_proto::pb::parking::v1 as pb;
use pb::parking_client::ParkingClient;
use tonic::transport::Channel;

use crate::rules::{HOUR_MS, QUARTER_MS};

/// Windows per group: the calls of one overlapping set.
pub const GROUP: usize = 10;

/// Group stride: groups start this far apart (a group's windows span at most 2 hours).
const STRIDE_MS: i64 = 3 * HOUR_MS;

/// What the race gave.
#[derive(Debug, Default)]
pub struct RaceReport {
    /// HELD reservations won, by group.
    pub winners: BTreeMap<usize, Vec<pb::Reservation>>,
    /// Calls refused with FAILED_PRECONDITION (the spot was taken), by group.
    pub refused: BTreeMap<usize, usize>,
    /// Any other answer: (group, code, message).
    pub errors: Vec<(usize, tonic::Code, String)>,
    /// Groups raced.
    pub groups: usize,
}

impl RaceReport {
    /// Returns an error describing what broke the rule: exactly one HELD reservation per
    /// overlapping group, every other call refused, the winners' windows disjoint.
    pub fn verify(&self) -> Result<(), String> {
        if let Some(e) = self.errors.first() {
            return Err(format!("{} unexpected answers, first: group {} {:?} {}", self.errors.len(), e.0, e.1, e.2));
        }
        for group in 0..self.groups {
            let won = self.winners.get(&group).map_or(0, Vec::len);
            if won != 1 {
                return Err(format!("group {group}: {won} winners, want exactly 1"));
            }
        }
        let mut windows: Vec<(i64, i64, &str)> = self
            .winners
            .values()
            .flatten()
            .map(|r| {
                let ms = |t: &Option<prost_types::Timestamp>| t.as_ref().map_or(0, |t| t.seconds * 1000);
                (ms(&r.start_time), ms(&r.end_time), r.reservation_id.as_str())
            })
            .collect();
        windows.sort();
        for pair in windows.windows(2) {
            if pair[0].1 > pair[1].0 {
                return Err(format!("winners {} and {} overlap", pair[0].2, pair[1].2));
            }
        }
        if self.winners.values().flatten().any(|r| r.state != pb::ReservationState::Held as i32) {
            return Err("a winner is not HELD".into());
        }
        Ok(())
    }
}

/// Returns the window of call `i` of a race starting at `base_ms` (a quarter hour): group
/// `i / GROUP`, every window of which contains the group's second hour's first quarter.
pub fn window(base_ms: i64, i: usize) -> (usize, i64, i64) {
    let group = i / GROUP;
    let k = (i % GROUP) as i64;
    let g0 = base_ms + group as i64 * STRIDE_MS;
    let start = g0 + (k % 4) * QUARTER_MS;
    let end = g0 + HOUR_MS + QUARTER_MS + (k % 3) * QUARTER_MS;
    (group, start, end)
}

/// Runs `calls` concurrent Reserve calls for `spot_id` of `lot_id` (the clients are used in
/// turn, e.g. one per replica), windows from [`window`] after `base_ms`, request ids under
/// `tag`. Collects every answer.
pub async fn overlapping_reserves(
    clients: &[ParkingClient<Channel>],
    lot_id: &str,
    spot_id: &str,
    base_ms: i64,
    calls: usize,
    tag: &str,
) -> RaceReport {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..calls {
        let mut client = clients[i % clients.len().max(1)].clone();
        let (group, start, end) = window(base_ms, i);
        let request = pb::ReserveRequest {
            request_id: format!("{tag}-{i}"),
            lot_id: lot_id.to_string(),
            spot_id: spot_id.to_string(),
            start_time: Some(meshwork_common::fields::timestamp(start)),
            end_time: Some(meshwork_common::fields::timestamp(end)),
            plate: format!("RACE{i}"),
            ..Default::default()
        };
        tasks.spawn(async move { (group, client.reserve(request).await) });
    }
    let mut report = RaceReport { groups: calls.div_ceil(GROUP), ..RaceReport::default() };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((group, Ok(answer))) => {
                if let Some(r) = answer.into_inner().reservation {
                    report.winners.entry(group).or_default().push(r);
                }
            }
            Ok((group, Err(status))) if status.code() == tonic::Code::FailedPrecondition => {
                *report.refused.entry(group).or_default() += 1;
            }
            Ok((group, Err(status))) => report.errors.push((group, status.code(), status.message().to_string())),
            Err(e) => report.errors.push((usize::MAX, tonic::Code::Internal, e.to_string())),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_within_a_group_and_never_across() {
        let base = 1_800_000_000_000 - 1_800_000_000_000 % QUARTER_MS;
        let windows: Vec<(usize, i64, i64)> = (0..200).map(|i| window(base, i)).collect();
        for a in &windows {
            assert!(a.1 % QUARTER_MS == 0 && a.2 % QUARTER_MS == 0 && a.1 < a.2);
            for b in &windows {
                let overlap = a.1 < b.2 && b.1 < a.2;
                assert_eq!(overlap, a.0 == b.0, "{a:?} {b:?}");
            }
        }
    }
}
