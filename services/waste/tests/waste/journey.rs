//! The "waste end to end": 500 bins with fill telemetry over a simulated week (the
//! service's clock is a ManualClock moved by hand), a plan for 5 trucks with landfill trips,
//! execution with pickups and one skipped stop, and the next day's plan including the
//! skipped bin — on every backend.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use meshwork_proto::pb::waste::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;

use crate::support::*;

const BINS: usize = 500;
const TRUCKS: usize = 5;
/// Readings every 12 hours for a week.
const ROUNDS: i64 = 14;

/// Fill rate of bin `i`, percent per hour (0.1 .. 0.6), and its fill at the start.
fn profile(i: usize) -> (f64, f64) {
    (0.1 + 0.5 * ((i * 37) % 101) as f64 / 100.0, ((i * 13) % 31) as f64)
}

async fn waste_end_to_end(backend: Backend) {
    let started = Instant::now();
    let mut f = start(&backend.store, MONDAY).await;
    let (depot, landfill) = sites(&mut f.client).await;
    let mut trucks = Vec::new();
    for _ in 0..TRUCKS {
        trucks.push(truck(&mut f.client, &depot, 8_000).await);
    }
    let prefix = id("b");
    let ids = bins(&f.client, &prefix, BINS).await;

    // A week of telemetry: every 12 hours each bin's sensor reports, through 8 gateways.
    for round in 0..=ROUNDS {
        let now = MONDAY + round * 12 * HOUR;
        if round > 0 {
            f.clock.advance(12 * HOUR);
        }
        let readings: Vec<pb::ReportFillRequest> = ids
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (rate, start) = profile(i);
                let fill = (start + rate * (round * 12) as f64).min(100.0);
                pb::ReportFillRequest { bin_id: b.clone(), fill_percent: fill, time: ts(now) }
            })
            .collect();
        let parts: Vec<Vec<pb::ReportFillRequest>> = readings.chunks(BINS / 8 + 1).map(|c| c.to_vec()).collect();
        let accepted: i64 =
            futures::future::join_all(parts.into_iter().map(|p| stream_fills(&f.client, p))).await.into_iter().sum();
        assert_eq!(accepted, BINS as i64);
    }
    let telemetry_done = started.elapsed();

    // The history and the prediction of one bin.
    let (rate, _) = profile(7);
    let got = f
        .client
        .get_bin(pb::GetBinRequest { bin_id: ids[7].clone(), history_limit: 100 })
        .await
        .expect("get bin")
        .into_inner();
    assert_eq!(got.history.len(), (ROUNDS + 1) as usize);
    let prediction = got.bin.and_then(|b| b.prediction).expect("prediction");
    assert!((prediction.rate_percent_per_hour - rate).abs() < 1e-6 || got.history[0].fill_percent >= 100.0);

    // Plan the next morning at 80 %.
    let date = MONDAY + ROUNDS * 12 * HOUR + 8 * HOUR;
    let due = f
        .client
        .list_bins(pb::ListBinsRequest {
            min_predicted_fill: 80.0,
            at: ts(date),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list bins")
        .into_inner();
    let due_ids: HashSet<String> =
        due.bins.iter().map(|b| b.bin_id.clone()).filter(|b| b.starts_with(&prefix)).collect();
    assert!(due_ids.len() > 50 && due_ids.len() < BINS, "{} due", due_ids.len());
    let plan_req = pb::PlanRoutesRequest {
        request_id: id("plan"),
        date: ts(date),
        depot_id: depot.clone(),
        truck_ids: trucks.clone(),
        threshold: 80.0,
        time_limit: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        landfill_id: landfill.clone(),
        ..Default::default()
    };
    let plan = f.client.plan_routes(plan_req.clone()).await.expect("plan").into_inner();
    assert_eq!(plan.routes.len(), TRUCKS, "every truck gets a route");
    assert_eq!(plan.bins as usize, due_ids.len());
    let mut planned = HashSet::new();
    for r in &plan.routes {
        let mut load = std::collections::HashMap::<i32, i64>::new();
        for s in &r.stops {
            assert!(planned.insert(s.bin_id.clone()), "bin {} planned twice", s.bin_id);
            *load.entry(s.trip).or_default() += s.expected_litres;
        }
        assert!(load.values().all(|&l| l <= 8_000), "a load over capacity: {load:?}");
        assert_eq!(r.trips as usize, load.len());
    }
    assert_eq!(planned, due_ids);
    assert!(plan.routes.iter().any(|r| r.trips > 1), "some truck unloads at the landfill and goes on");
    // GetPlan shows the same plan; a repeat of the request answers it again.
    let stored =
        f.client.get_plan(pb::GetPlanRequest { plan_id: plan.plan_id.clone() }).await.expect("get").into_inner();
    assert_eq!(stored, plan);
    let again = f.client.plan_routes(plan_req).await.expect("replay").into_inner();
    assert_eq!(again.plan_id, plan.plan_id);

    // Execute route 0: a dispatcher watches; every stop collected but one, skipped.
    f.clock.advance(8 * HOUR);
    let route = plan.routes[0].clone();
    let mut watch = f
        .client
        .watch_route(pb::WatchRouteRequest { route_id: route.route_id.clone(), from_sequence: 1 })
        .await
        .expect("watch")
        .into_inner();
    f.client.start_route(pb::StartRouteRequest { route_id: route.route_id.clone() }).await.expect("start");
    let skipped = route.stops[route.stops.len() / 2].bin_id.clone();
    let mut done = None;
    for s in &route.stops {
        f.clock.advance(60_000);
        done = Some(if s.bin_id == skipped {
            f.client
                .skip_stop(pb::SkipStopRequest {
                    route_id: route.route_id.clone(),
                    bin_id: s.bin_id.clone(),
                    reason: "blocked by a parked van".into(),
                })
                .await
                .expect("skip")
                .into_inner()
        } else {
            f.client
                .record_pickup(pb::RecordPickupRequest {
                    request_id: id("pick"),
                    route_id: route.route_id.clone(),
                    bin_id: s.bin_id.clone(),
                    weight_kg: 40.0,
                })
                .await
                .expect("pickup")
                .into_inner()
        });
    }
    let done = done.expect("stops");
    assert_eq!(done.state, pb::RouteState::Completed as i32);
    // The stream: STARTED, one event per stop, COMPLETED, with sequences 1, 2, 3...
    let expected = route.stops.len() + 2;
    let events: Vec<pb::RouteEvent> = tokio::time::timeout(
        Duration::from_secs(10),
        (&mut watch).take(expected).map(|e| e.expect("event")).collect::<Vec<_>>(),
    )
    .await
    .expect("the route's events arrive");
    assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=expected as u64).collect::<Vec<_>>());
    assert_eq!(events[0].r#type, pb::RouteEventType::Started as i32);
    assert_eq!(events[expected - 1].r#type, pb::RouteEventType::Completed as i32);
    assert_eq!(events.iter().filter(|e| e.r#type == pb::RouteEventType::Skipped as i32).count(), 1);

    // Collected bins are empty; the skipped one is carried over.
    let bin = |b: &str| {
        let mut c = f.client.clone();
        let b = b.to_string();
        async move {
            c.get_bin(pb::GetBinRequest { bin_id: b, history_limit: 1 })
                .await
                .expect("bin")
                .into_inner()
                .bin
                .expect("bin")
        }
    };
    let collected = route.stops.iter().find(|s| s.bin_id != skipped).map(|s| s.bin_id.clone()).expect("a pickup");
    assert_eq!(bin(&collected).await.fill_percent, 0.0);
    assert!(bin(&skipped).await.carried_over);

    // The next day's plan includes the skipped bin and none of the collected ones.
    let next = f
        .client
        .plan_routes(pb::PlanRoutesRequest {
            request_id: id("plan2"),
            date: ts(date + 24 * HOUR),
            depot_id: depot.clone(),
            threshold: 80.0,
            time_limit: Some(prost_types::Duration { seconds: 0, nanos: 300_000_000 }),
            ..Default::default()
        })
        .await
        .expect("next plan")
        .into_inner();
    let next_bins: HashSet<String> =
        next.routes.iter().flat_map(|r| r.stops.iter().map(|s| s.bin_id.clone())).collect();
    assert!(next_bins.contains(&skipped), "the skipped bin is planned again");
    for s in route.stops.iter().filter(|s| s.bin_id != skipped) {
        assert!(!next_bins.contains(&s.bin_id), "collected bin {} planned again", s.bin_id);
    }
    eprintln!("waste end to end: telemetry {telemetry_done:?}, total {:?}", started.elapsed());
    drop(f.server);
}

on_every_backend!(waste_end_to_end);
