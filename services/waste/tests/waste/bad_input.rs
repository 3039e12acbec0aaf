//! The bad-input catalogue: every RPC refuses malformed input with INVALID_ARGUMENT naming
//! the field (or NOT_FOUND / FAILED_PRECONDITION / ALREADY_EXISTS for the state rules), and a
//! refused call changes nothing.

use meshwork_proto::pb::waste::v1 as pb;
use meshwork_storage::{Direction, KeyRange, scan_all};
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::*;

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, field: &str) {
    let e = r.expect_err("must be refused");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().contains(field), "{field:?} not named in {:?}", e.message());
}

async fn bad_input_catalogue(backend: Backend) {
    let mut f = start(&backend.store, MONDAY).await;
    let c = &mut f.client;
    let (depot, landfill) = sites(c).await;
    let tk = truck(c, &depot, 1_000).await;
    let bid = id("bad");
    c.create_bin(pb::CreateBinRequest { bin: Some(bin(&bid, 1)) }).await.expect("bin");
    c.report_fill(pb::ReportFillRequest { bin_id: bid.clone(), fill_percent: 97.0, time: ts(MONDAY - HOUR) })
        .await
        .expect("fill");
    let before =
        c.get_bin(pb::GetBinRequest { bin_id: bid.clone(), history_limit: 100 }).await.expect("get").into_inner();
    const IA: Code = Code::InvalidArgument;

    // CreateSite.
    let site =
        pb::Site { site_id: id("s"), kind: pb::SiteKind::Depot as i32, name: "x".into(), location: at(1.0, 2.0) };
    refused(c.create_site(pb::CreateSiteRequest { site: None }).await, IA, "site");
    let bad = |s: pb::Site| pb::CreateSiteRequest { site: Some(s) };
    refused(c.create_site(bad(pb::Site { site_id: "a/b".into(), ..site.clone() })).await, IA, "site.site_id");
    refused(c.create_site(bad(pb::Site { kind: 0, ..site.clone() })).await, IA, "site.kind");
    refused(c.create_site(bad(pb::Site { location: at(91.0, 0.0), ..site.clone() })).await, IA, "site.location.lat");
    refused(c.create_site(bad(pb::Site { location: None, ..site.clone() })).await, IA, "site.location");
    refused(c.create_site(bad(pb::Site { name: "n".repeat(201), ..site.clone() })).await, IA, "site.name");
    let taken = pb::Site { site_id: depot.clone(), ..site.clone() };
    refused(c.create_site(bad(taken)).await, Code::AlreadyExists, "site");

    // CreateTruck.
    let t = pb::Truck {
        truck_id: id("t"),
        depot_id: depot.clone(),
        capacity_litres: 100,
        shift_start_minute: 0,
        shift_end_minute: 60,
    };
    let bad = |t: pb::Truck| pb::CreateTruckRequest { truck: Some(t) };
    refused(c.create_truck(pb::CreateTruckRequest { truck: None }).await, IA, "truck");
    refused(c.create_truck(bad(pb::Truck { capacity_litres: 0, ..t.clone() })).await, IA, "truck.capacity_litres");
    refused(
        c.create_truck(bad(pb::Truck { shift_start_minute: 1440, ..t.clone() })).await,
        IA,
        "truck.shift_start_minute",
    );
    refused(c.create_truck(bad(pb::Truck { shift_end_minute: 0, ..t.clone() })).await, IA, "truck.shift_end_minute");
    refused(c.create_truck(bad(pb::Truck { depot_id: String::new(), ..t.clone() })).await, IA, "truck.depot_id");
    refused(c.create_truck(bad(pb::Truck { depot_id: id("nodepot"), ..t.clone() })).await, Code::NotFound, "depot");
    let at_landfill = pb::Truck { depot_id: landfill.clone(), ..t.clone() };
    refused(c.create_truck(bad(at_landfill)).await, Code::FailedPrecondition, "not a depot");

    // CreateBin.
    let b = bin(&id("nb"), 2);
    let bad = |b: pb::Bin| pb::CreateBinRequest { bin: Some(b) };
    refused(c.create_bin(pb::CreateBinRequest { bin: None }).await, IA, "bin");
    refused(c.create_bin(bad(pb::Bin { capacity_litres: 0, ..b.clone() })).await, IA, "bin.capacity_litres");
    refused(c.create_bin(bad(pb::Bin { waste_type: 0, ..b.clone() })).await, IA, "bin.waste_type");
    refused(c.create_bin(bad(pb::Bin { waste_type: 99, ..b.clone() })).await, IA, "bin.waste_type");
    refused(c.create_bin(bad(pb::Bin { location: at(0.0, 181.0), ..b.clone() })).await, IA, "bin.location.lon");
    refused(c.create_bin(bad(pb::Bin { bin_id: String::new(), ..b.clone() })).await, IA, "bin.bin_id");
    let taken = pb::Bin { capacity_litres: 999, ..bin(&bid, 1) };
    refused(c.create_bin(bad(taken)).await, Code::AlreadyExists, "bin");

    // GetBin, ListBins.
    refused(c.get_bin(pb::GetBinRequest { bin_id: String::new(), history_limit: 0 }).await, IA, "bin_id");
    refused(c.get_bin(pb::GetBinRequest { bin_id: bid.clone(), history_limit: -1 }).await, IA, "history_limit");
    refused(c.get_bin(pb::GetBinRequest { bin_id: id("none"), history_limit: 0 }).await, Code::NotFound, "bin");
    let list = pb::ListBinsRequest::default();
    refused(
        c.list_bins(pb::ListBinsRequest { min_predicted_fill: 101.0, ..list.clone() }).await,
        IA,
        "min_predicted_fill",
    );
    let inverted = pb::Area { south_west: at(10.0, 10.0), north_east: at(9.0, 11.0) };
    refused(c.list_bins(pb::ListBinsRequest { area: Some(inverted), ..list.clone() }).await, IA, "area");
    refused(c.list_bins(pb::ListBinsRequest { page_size: 1001, ..list.clone() }).await, IA, "page_size");
    refused(c.list_bins(pb::ListBinsRequest { page_token: "xyz".into(), ..list.clone() }).await, IA, "page_token");

    // ReportFill and ReportFillStream.
    let r = pb::ReportFillRequest { bin_id: bid.clone(), fill_percent: 10.0, time: ts(MONDAY) };
    refused(c.report_fill(pb::ReportFillRequest { fill_percent: 100.5, ..r.clone() }).await, IA, "fill_percent");
    refused(c.report_fill(pb::ReportFillRequest { fill_percent: f64::NAN, ..r.clone() }).await, IA, "fill_percent");
    refused(c.report_fill(pb::ReportFillRequest { time: None, ..r.clone() }).await, IA, "time");
    refused(c.report_fill(pb::ReportFillRequest { time: ts(MONDAY + HOUR), ..r.clone() }).await, IA, "time");
    refused(c.report_fill(pb::ReportFillRequest { bin_id: "a b".into(), ..r.clone() }).await, IA, "bin_id");
    refused(c.report_fill(pb::ReportFillRequest { bin_id: id("none"), ..r.clone() }).await, Code::NotFound, "bin");
    let stream = vec![pb::ReportFillRequest { bin_id: id("none"), ..r.clone() }];
    refused(c.report_fill_stream(tokio_stream::iter(stream)).await, Code::NotFound, "bin");
    let stream = vec![pb::ReportFillRequest { fill_percent: -1.0, ..r.clone() }];
    refused(c.report_fill_stream(tokio_stream::iter(stream)).await, IA, "fill_percent");

    // PlanRoutes.
    let p = pb::PlanRoutesRequest {
        request_id: id("r"),
        date: ts(MONDAY),
        depot_id: depot.clone(),
        threshold: 50.0,
        time_limit: Some(prost_types::Duration { seconds: 0, nanos: 20_000_000 }),
        ..Default::default()
    };
    refused(c.plan_routes(pb::PlanRoutesRequest { request_id: String::new(), ..p.clone() }).await, IA, "request_id");
    refused(c.plan_routes(pb::PlanRoutesRequest { date: None, ..p.clone() }).await, IA, "date");
    refused(c.plan_routes(pb::PlanRoutesRequest { threshold: 0.0, ..p.clone() }).await, IA, "threshold");
    refused(c.plan_routes(pb::PlanRoutesRequest { threshold: 100.1, ..p.clone() }).await, IA, "threshold");
    let slow = Some(prost_types::Duration { seconds: 61, nanos: 0 });
    refused(c.plan_routes(pb::PlanRoutesRequest { time_limit: slow, ..p.clone() }).await, IA, "time_limit");
    let neg = Some(prost_types::Duration { seconds: -1, nanos: 0 });
    refused(c.plan_routes(pb::PlanRoutesRequest { time_limit: neg, ..p.clone() }).await, IA, "time_limit");
    refused(c.plan_routes(pb::PlanRoutesRequest { depot_id: "".into(), ..p.clone() }).await, IA, "depot_id");
    refused(c.plan_routes(pb::PlanRoutesRequest { waste_type: 42, ..p.clone() }).await, IA, "waste_type");
    let twice = vec![tk.clone(), tk.clone()];
    refused(c.plan_routes(pb::PlanRoutesRequest { truck_ids: twice, ..p.clone() }).await, IA, "truck_ids[1]");
    refused(c.plan_routes(pb::PlanRoutesRequest { depot_id: id("x"), ..p.clone() }).await, Code::NotFound, "depot");
    let as_landfill = pb::PlanRoutesRequest { depot_id: landfill.clone(), ..p.clone() };
    refused(c.plan_routes(as_landfill).await, Code::FailedPrecondition, "not a depot");
    let unknown_truck = pb::PlanRoutesRequest { truck_ids: vec![id("t")], ..p.clone() };
    refused(c.plan_routes(unknown_truck).await, Code::NotFound, "truck");
    let wrong_landfill = pb::PlanRoutesRequest { landfill_id: depot.clone(), ..p.clone() };
    refused(c.plan_routes(wrong_landfill).await, Code::FailedPrecondition, "not a landfill");
    let plans = format!("{}/plans/", f.root).into_bytes();
    let stored = scan_all(&backend.store, KeyRange::prefix(plans.clone()), Direction::Forward).await.expect("scan");
    assert!(stored.is_empty(), "a refused plan stores nothing");

    // GetPlan, StartRoute, RecordPickup, SkipStop on a real plan.
    refused(c.get_plan(pb::GetPlanRequest { plan_id: String::new() }).await, IA, "plan_id");
    refused(c.get_plan(pb::GetPlanRequest { plan_id: id("pl") }).await, Code::NotFound, "plan");
    let plan = c.plan_routes(p.clone()).await.expect("plan").into_inner();
    let route = plan.routes[0].route_id.clone();
    refused(c.start_route(pb::StartRouteRequest { route_id: "?".into() }).await, IA, "route_id");
    refused(c.start_route(pb::StartRouteRequest { route_id: id("r") }).await, Code::NotFound, "route");
    let pick =
        pb::RecordPickupRequest { request_id: id("k"), route_id: route.clone(), bin_id: bid.clone(), weight_kg: 5.0 };
    refused(c.record_pickup(pick.clone()).await, Code::FailedPrecondition, "not in progress");
    let skip = pb::SkipStopRequest { route_id: route.clone(), bin_id: bid.clone(), reason: "closed".into() };
    refused(c.skip_stop(skip.clone()).await, Code::FailedPrecondition, "not in progress");
    c.start_route(pb::StartRouteRequest { route_id: route.clone() }).await.expect("start");
    refused(c.record_pickup(pb::RecordPickupRequest { weight_kg: -1.0, ..pick.clone() }).await, IA, "weight_kg");
    refused(
        c.record_pickup(pb::RecordPickupRequest { request_id: String::new(), ..pick.clone() }).await,
        IA,
        "request_id",
    );
    refused(
        c.record_pickup(pb::RecordPickupRequest { bin_id: id("nb"), ..pick.clone() }).await,
        Code::NotFound,
        "stop",
    );
    refused(c.skip_stop(pb::SkipStopRequest { reason: String::new(), ..skip.clone() }).await, IA, "reason");
    refused(c.skip_stop(pb::SkipStopRequest { reason: "r".repeat(501), ..skip.clone() }).await, IA, "reason");
    refused(c.skip_stop(pb::SkipStopRequest { bin_id: String::new(), ..skip.clone() }).await, IA, "bin_id");

    // TrackTruck and WatchRoute.
    let ping =
        pb::TruckPing { truck_id: tk.clone(), route_id: route.clone(), position: at(1.0, 1.0), time: ts(MONDAY) };
    let one = |p: pb::TruckPing| tokio_stream::iter(vec![p]);
    refused(c.track_truck(one(pb::TruckPing { position: None, ..ping.clone() })).await, IA, "position");
    refused(c.track_truck(one(pb::TruckPing { time: None, ..ping.clone() })).await, IA, "time");
    refused(c.track_truck(one(pb::TruckPing { truck_id: id("t"), ..ping.clone() })).await, Code::NotFound, "truck");
    refused(c.watch_route(pb::WatchRouteRequest { route_id: String::new(), from_sequence: 0 }).await, IA, "route_id");
    refused(
        c.watch_route(pb::WatchRouteRequest { route_id: id("r"), from_sequence: 0 }).await,
        Code::NotFound,
        "route",
    );

    // Nothing changed: the bin and its history are as before; the route has no stop done.
    let after =
        c.get_bin(pb::GetBinRequest { bin_id: bid.clone(), history_limit: 100 }).await.expect("get").into_inner();
    assert_eq!(after.history, before.history);
    let (a, b) = (after.bin.expect("bin"), before.bin.expect("bin"));
    assert_eq!((a.fill_percent, a.fill_time, a.carried_over), (b.fill_percent, b.fill_time, b.carried_over));
    let plan = c.get_plan(pb::GetPlanRequest { plan_id: plan.plan_id }).await.expect("plan").into_inner();
    assert!(plan.routes[0].stops.iter().all(|s| s.status == pb::StopStatus::Pending as i32));
    assert_eq!(plan.routes[0].position, None);
}

on_every_backend!(bad_input_catalogue);
