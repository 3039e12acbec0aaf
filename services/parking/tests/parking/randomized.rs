//! A seeded randomized run: thousands of reservations over 50 spots from 32 concurrent
//! workers on two replicas, half of them type-level, over windows of two days dense enough to
//! collide often, each then confirmed, cancelled, confirmed and cancelled, or left to expire,
//! while a manual clock moves on and both replicas' sweepers run. At the end every stored
//! reservation is scanned: the confirmed ones (CONFIRMED, CHECKED_IN, CHECKED_OUT) never
//! overlap on a spot, every live one is in its spot's occupancy record, and holds that ran out
//! were taken over by later reservations.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshwork_common::clock::Clock;
use meshwork_common::record::Record;
use meshwork_parking::keys::Keys;
use meshwork_parking::model::{ReservationRecord, ReservationState};
use meshwork_parking::rules::{Occupancy, QUARTER_MS};
use meshwork_proto::pb::parking::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::support::{self, create_lot, level, quarter_ahead};

const SEED: u64 = 0x5eed_2026;
const WORKERS: usize = 32;
const SPOTS: usize = 50;
/// Quarter hours over which 5,000 windows start (fewer attempts get a shorter span, so the
/// windows collide as often).
const SPAN_QUARTERS: i64 = 2 * 96;
/// The clock moves 2 minutes this many times over the run (a hold lasts 10).
const TICKS: usize = 20;

#[derive(Debug, Default)]
struct Tally {
    held: AtomicUsize,
    refused: AtomicUsize,
    confirmed: AtomicUsize,
    confirm_too_late: AtomicUsize,
    cancelled: AtomicUsize,
}

/// Returns the number of reservations to attempt: 5,000, and 1,500 on the etcd cluster,
/// where every transaction is a replicated, fsynced write (5,000 take about a minute there on
/// this machine, over the suite's 30 s budget per test).
fn attempts(backend: &str) -> usize {
    if backend == "etcd" { 1_500 } else { 5_000 }
}

async fn confirmed_reservations_never_overlap(backend: Backend) {
    let clock = support::manual_clock();
    let root = support::root("rand");
    let hold = Duration::from_secs(600);
    let sweep = Duration::from_millis(50);
    let (_a, mut a) = support::replica(&backend.store, &root, clock.clone(), hold, sweep).await;
    let (_b, b) = support::replica(&backend.store, &root, clock.clone(), hold, sweep).await;
    let lot = support::lot_id("rand");
    create_lot(
        &mut a,
        &lot,
        vec![level("l1", &[(pb::SpotType::Regular, 25)]), level("l2", &[(pb::SpotType::Regular, 25)])],
    )
    .await;
    let spots: Vec<String> = (1..=25).flat_map(|n| [format!("l1-r{n}"), format!("l2-r{n}")]).collect();
    assert_eq!(spots.len(), SPOTS);
    let base = quarter_ahead(clock.as_ref(), 24);
    let total = attempts(backend.store.backend());
    let span = (SPAN_QUARTERS * total as i64 / 5_000).max(16);
    let done = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let started = std::time::Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let mut client = if w % 2 == 0 { a.clone() } else { b.clone() };
        let (lot, spots, done, tally, clock) = (lot.clone(), spots.clone(), done.clone(), tally.clone(), clock.clone());
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(SEED + w as u64);
            let share = total / WORKERS + usize::from(w < total % WORKERS);
            for i in 0..share {
                let start = base + rng.random_range(0..span) * QUARTER_MS;
                let end = start + rng.random_range(1..=8) * QUARTER_MS;
                let spot = if rng.random_bool(0.5) { String::new() } else { spots[rng.random_range(0..SPOTS)].clone() };
                let mut req = support::reserve_req(&lot, &spot, start, end, &format!("R{w}X{i}"));
                req.request_id = format!("{}-{w}-{i}", lot);
                let then = rng.random_range(0..100);
                match support::reserve(&mut client, req).await {
                    Ok(r) => {
                        tally.held.fetch_add(1, Ordering::Relaxed);
                        let id = r.reservation_id;
                        if then < 70 {
                            let c = client
                                .confirm_reservation(pb::ConfirmReservationRequest { reservation_id: id.clone() });
                            match c.await {
                                Ok(_) => tally.confirmed.fetch_add(1, Ordering::Relaxed),
                                Err(s) if s.code() == Code::FailedPrecondition => {
                                    tally.confirm_too_late.fetch_add(1, Ordering::Relaxed)
                                }
                                Err(s) => panic!("confirm: {s:?}"),
                            };
                        }
                        if (50..80).contains(&then) {
                            let c = client.cancel_reservation(pb::CancelReservationRequest {
                                reservation_id: id.clone(),
                                reason: String::new(),
                            });
                            match c.await {
                                Ok(_) => tally.cancelled.fetch_add(1, Ordering::Relaxed),
                                Err(s) => panic!("cancel: {s:?}"),
                            };
                        }
                    }
                    Err(s) if s.code() == Code::FailedPrecondition => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(s) => panic!("reserve: {s:?}"),
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % (total / TICKS).max(1) == 0 {
                    clock.advance(2 * 60_000);
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("worker");
    }
    let elapsed = started.elapsed();
    // Every hold left is now past its time.
    clock.advance(11 * 60_000);
    let now = clock.now_ms();

    let records = support::all_reservations(&backend.store, &root).await;
    assert_eq!(records.len(), tally.held.load(Ordering::Relaxed));
    let mut by_spot: HashMap<&str, Vec<&ReservationRecord>> = HashMap::new();
    for r in &records {
        if matches!(r.state, ReservationState::Confirmed | ReservationState::CheckedIn | ReservationState::CheckedOut) {
            by_spot.entry(r.spot.as_str()).or_default().push(r);
        }
    }
    let confirmed: usize = by_spot.values().map(Vec::len).sum();
    assert_eq!(confirmed, tally.confirmed.load(Ordering::Relaxed) - count_cancelled_after_confirm(&records));
    for (spot, list) in &mut by_spot {
        list.sort_by_key(|r| (r.start, r.end));
        for pair in list.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "double booking on {spot}: {} [{}, {}) and {} [{}, {})",
                pair[0].id,
                pair[0].start,
                pair[0].end,
                pair[1].id,
                pair[1].start,
                pair[1].end
            );
        }
    }
    // Every confirmed reservation is in its spot's occupancy record; no hold is live.
    let keys = Keys::new(&root);
    for r in &records {
        let occ = match backend.store.get(&keys.occ(&r.lot, r.kind.letter(), &r.spot)).await.expect("get") {
            Some(v) => Occupancy::decode(&v.value).expect("decode"),
            None => Occupancy::default(),
        };
        match r.state {
            ReservationState::Confirmed => assert!(occ.find(&r.id).is_some_and(|s| s.is_live(now)), "{}", r.id),
            ReservationState::Held => assert_eq!(r.state_at(now), ReservationState::Expired),
            _ => {}
        }
    }
    // Holds that ran out were taken over: some later reservation overlaps an expired one.
    let expired: Vec<&ReservationRecord> =
        records.iter().filter(|r| r.state_at(now) == ReservationState::Expired).collect();
    let taken_over = expired
        .iter()
        .filter(|e| {
            records
                .iter()
                .any(|r| r.spot == e.spot && r.create_ms >= e.hold_until && r.start < e.end && e.start < r.end)
        })
        .count();
    eprintln!(
        "randomized on {}: {total} attempts in {elapsed:?}: {tally:?}, {confirmed} confirmed at the end, {} expired, {taken_over} of them taken over",
        backend.store.backend(),
        expired.len()
    );
    assert!(tally.refused.load(Ordering::Relaxed) > 0, "windows collided");
    assert!(confirmed > 0 && !expired.is_empty() && tally.cancelled.load(Ordering::Relaxed) > 0);
    assert!(taken_over > 0, "expired holds freed their spots for later callers");
}

/// Returns how many reservations were confirmed and then cancelled.
fn count_cancelled_after_confirm(records: &[ReservationRecord]) -> usize {
    records.iter().filter(|r| r.state == ReservationState::Cancelled && r.confirm_ms != 0).count()
}

on_every_backend!(confirmed_reservations_never_overlap);
