//! The core mechanisms under concurrency, on every backend:
//! - telemetry streams racing pickups: whatever the interleaving, each bin ends with the
//!   state of its latest event in time (a later reading, or else the pickup), and its history
//!   holds every distinct reading once;
//! - PlanRoutes racing with one request_id: one plan is stored, and every call answers it;
//! - the route stream: gapless sequences, resumable from any sequence.

use std::time::Duration;

use futures::StreamExt;
use meshwork_proto::pb::waste::v1 as pb;
use meshwork_storage::{Direction, KeyRange, scan_all};
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;

use crate::support::*;

const BINS: usize = 5;
const STREAMS: usize = 4;
const PER_STREAM: i64 = 12;

async fn telemetry_races_pickups(backend: Backend) {
    let mut f = start(&backend.store, MONDAY + 10 * HOUR).await;
    let (depot, _) = sites(&mut f.client).await;
    let tk = truck(&mut f.client, &depot, 10_000).await;
    let ids = bins(&f.client, &id("c"), BINS).await;
    for b in &ids {
        f.client
            .report_fill(pb::ReportFillRequest { bin_id: b.clone(), fill_percent: 95.0, time: ts(MONDAY + 9 * HOUR) })
            .await
            .expect("fill");
    }
    let plan = f
        .client
        .plan_routes(pb::PlanRoutesRequest {
            request_id: id("p"),
            date: ts(MONDAY + 10 * HOUR),
            depot_id: depot.clone(),
            truck_ids: vec![tk],
            threshold: 50.0,
            time_limit: Some(prost_types::Duration { seconds: 0, nanos: 50_000_000 }),
            ..Default::default()
        })
        .await
        .expect("plan")
        .into_inner();
    let route = plan.routes[0].route_id.clone();
    assert_eq!(plan.routes[0].stops.len(), BINS);
    f.client.start_route(pb::StartRouteRequest { route_id: route.clone() }).await.expect("start");
    let pickup_ms = MONDAY + 10 * HOUR;

    // Stream s sends, for every bin, readings at minutes -(s*PER_STREAM + k) before the
    // pickup, and for stream 0 also two readings 1 and 2 minutes after it.
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let mut readings = Vec::new();
        for k in 0..PER_STREAM {
            for b in &ids {
                let t = pickup_ms - (s as i64 * PER_STREAM + k + 1) * 60_000;
                readings.push(pb::ReportFillRequest { bin_id: b.clone(), fill_percent: 50.0 + k as f64, time: ts(t) });
            }
        }
        if s == 0 {
            for (j, b) in ids.iter().enumerate() {
                if j % 2 == 0 {
                    for m in 1..=2 {
                        readings.push(pb::ReportFillRequest {
                            bin_id: b.clone(),
                            fill_percent: m as f64,
                            time: ts(pickup_ms + m * 60_000),
                        });
                    }
                }
            }
        }
        let client = f.client.clone();
        tasks.push(tokio::spawn(async move { stream_fills(&client, readings).await }));
    }
    for b in ids.clone() {
        let mut c = f.client.clone();
        let route = route.clone();
        tasks.push(tokio::spawn(async move {
            c.record_pickup(pb::RecordPickupRequest {
                request_id: id("k"),
                route_id: route,
                bin_id: b,
                weight_kg: 30.0,
            })
            .await
            .expect("pickup");
            0
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.expect("task");
    }
    let after = (BINS as i64 + 1) / 2 * 2;
    assert_eq!(sent, STREAMS as i64 * PER_STREAM * BINS as i64 + after);
    for (j, b) in ids.iter().enumerate() {
        let got = f.client.get_bin(pb::GetBinRequest { bin_id: b.clone(), history_limit: 1000 }).await.expect("bin");
        let got = got.into_inner();
        let bin = got.bin.expect("bin");
        assert_eq!(bin.emptied_time, ts(pickup_ms));
        let readings = 1 + STREAMS * PER_STREAM as usize + if j % 2 == 0 { 2 } else { 0 };
        assert_eq!(got.history.len(), readings, "bin {b}");
        if j % 2 == 0 {
            assert_eq!(bin.fill_percent, 2.0, "bin {b}: the latest reading, after the pickup");
            assert_eq!(bin.fill_time, ts(pickup_ms + 2 * 60_000));
        } else {
            assert_eq!(bin.fill_percent, 0.0, "bin {b}: the pickup is the latest event");
        }
    }
    let route = f.client.get_plan(pb::GetPlanRequest { plan_id: plan.plan_id.clone() }).await.expect("plan");
    assert_eq!(route.into_inner().routes[0].state, pb::RouteState::Completed as i32);
}

async fn one_plan_per_request_id(backend: Backend) {
    let mut f = start(&backend.store, MONDAY).await;
    let (depot, _) = sites(&mut f.client).await;
    truck(&mut f.client, &depot, 2_000).await;
    let ids = bins(&f.client, &id("q"), 30).await;
    for b in &ids {
        f.client
            .report_fill(pb::ReportFillRequest { bin_id: b.clone(), fill_percent: 90.0, time: ts(MONDAY - HOUR) })
            .await
            .expect("fill");
    }
    let req = pb::PlanRoutesRequest {
        request_id: id("same"),
        date: ts(MONDAY),
        depot_id: depot.clone(),
        threshold: 50.0,
        time_limit: Some(prost_types::Duration { seconds: 0, nanos: 100_000_000 }),
        ..Default::default()
    };
    let answers = futures::future::join_all((0..6).map(|_| {
        let mut c = f.client.clone();
        let req = req.clone();
        async move { c.plan_routes(req).await.expect("plan").into_inner() }
    }))
    .await;
    assert!(answers.iter().all(|a| *a == answers[0]), "every call answers the same plan");
    let plans =
        scan_all(&backend.store, KeyRange::prefix(format!("{}/plans/", f.root).into_bytes()), Direction::Forward)
            .await
            .expect("scan");
    assert_eq!(plans.len(), 1, "one plan stored");
    let routes =
        scan_all(&backend.store, KeyRange::prefix(format!("{}/routes/", f.root).into_bytes()), Direction::Forward)
            .await
            .expect("scan");
    assert_eq!(routes.len(), answers[0].routes.len());
    // The same request_id with another request is refused, and stores nothing.
    let other = pb::PlanRoutesRequest { threshold: 60.0, ..req };
    let err = f.client.plan_routes(other).await.expect_err("reused id");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
}

async fn route_stream_resumes(backend: Backend) {
    let mut f = start(&backend.store, MONDAY).await;
    let (depot, _) = sites(&mut f.client).await;
    let tk = truck(&mut f.client, &depot, 5_000).await;
    let ids = bins(&f.client, &id("w"), 3).await;
    for b in &ids {
        f.client
            .report_fill(pb::ReportFillRequest { bin_id: b.clone(), fill_percent: 100.0, time: ts(MONDAY) })
            .await
            .expect("fill");
    }
    let plan = f
        .client
        .plan_routes(pb::PlanRoutesRequest {
            request_id: id("p"),
            date: ts(MONDAY),
            depot_id: depot,
            threshold: 90.0,
            time_limit: Some(prost_types::Duration { seconds: 0, nanos: 20_000_000 }),
            ..Default::default()
        })
        .await
        .expect("plan")
        .into_inner();
    let route = plan.routes[0].route_id.clone();
    f.client.start_route(pb::StartRouteRequest { route_id: route.clone() }).await.expect("start");
    // Truck pings show on the stream.
    let pings: Vec<pb::TruckPing> = (0..3)
        .map(|k| pb::TruckPing {
            truck_id: tk.clone(),
            route_id: route.clone(),
            position: at(52.5 + k as f64 * 0.001, 13.4),
            time: ts(MONDAY + k * 1000),
        })
        .collect();
    let n = f.client.track_truck(tokio_stream::iter(pings)).await.expect("track").into_inner().accepted;
    assert_eq!(n, 3);
    for b in &ids {
        f.client
            .record_pickup(pb::RecordPickupRequest {
                request_id: id("k"),
                route_id: route.clone(),
                bin_id: b.clone(),
                weight_kg: 10.0,
            })
            .await
            .expect("pickup");
    }
    // STARTED, 3 POSITION, 3 COLLECTED, COMPLETED = 8.
    let all = collect(&mut f.client, &route, 1, 8).await;
    assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    assert_eq!(all[1].r#type, pb::RouteEventType::Position as i32);
    let tail = collect(&mut f.client, &route, 5, 4).await;
    assert_eq!(tail, all[4..].to_vec());
    let plan = f.client.get_plan(pb::GetPlanRequest { plan_id: plan.plan_id }).await.expect("plan").into_inner();
    assert_eq!(plan.routes[0].position, at(52.5 + 2.0 * 0.001, 13.4));
}

async fn collect(client: &mut Client, route: &str, from: u64, n: usize) -> Vec<pb::RouteEvent> {
    let stream = client
        .watch_route(pb::WatchRouteRequest { route_id: route.into(), from_sequence: from })
        .await
        .expect("watch")
        .into_inner();
    tokio::time::timeout(Duration::from_secs(10), stream.take(n).map(|e| e.expect("event")).collect::<Vec<_>>())
        .await
        .expect("events arrive")
}

on_every_backend!(telemetry_races_pickups, one_plan_per_request_id, route_stream_resumes);
