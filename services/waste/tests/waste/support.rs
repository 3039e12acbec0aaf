//! Shared fixtures: a server of the waste service on a store under a key root of its own
//! (the etcd cluster is shared by every test of the run), timed by a manual clock.

use std::sync::Arc;

use meshwork_common::clock::{Clock, ManualClock};
use meshwork_proto::pb::waste::v1 as pb;
use meshwork_storage::DynStore;
use meshwork_test_support::{TestServer, backends::unique, context_with_clock};
use pb::waste_client::WasteClient;
use tonic::transport::Channel;

pub type Client = WasteClient<Channel>;

/// Monday 2026-01-05 00:00 UTC.
pub const MONDAY: i64 = 1_767_571_200_000;
pub const HOUR: i64 = 3_600_000;

/// An id no other test uses.
pub fn id(tag: &str) -> String {
    unique(tag)
}

/// A served replica and its client.
pub struct Fixture {
    pub server: TestServer,
    pub client: Client,
    pub clock: ManualClock,
    pub root: String,
}

/// Serves the service on `store` under a fresh root, its clock at `start_ms`.
pub async fn start(store: &DynStore, start_ms: i64) -> Fixture {
    let clock = ManualClock::new(start_ms);
    let root = unique("waste");
    let ctx = context_with_clock(store.clone(), Arc::new(clock.clone()) as Arc<dyn Clock>);
    let server =
        TestServer::start(vec![meshwork_waste::hosted_with(&ctx, meshwork_waste::Config { root: root.clone() })]).await;
    let client = WasteClient::new(server.channel.clone());
    Fixture { server, client, clock, root }
}

pub fn at(lat: f64, lon: f64) -> Option<pb::LatLon> {
    Some(pb::LatLon { lat, lon })
}

pub fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    Some(meshwork_common::fields::timestamp(ms))
}

/// Creates a depot and a landfill; returns their ids.
pub async fn sites(client: &mut Client) -> (String, String) {
    let depot = id("depot");
    let landfill = id("landfill");
    for (sid, kind, loc) in
        [(&depot, pb::SiteKind::Depot, at(52.52, 13.40)), (&landfill, pb::SiteKind::Landfill, at(52.60, 13.55))]
    {
        client
            .create_site(pb::CreateSiteRequest {
                site: Some(pb::Site { site_id: sid.clone(), kind: kind as i32, name: "s".into(), location: loc }),
            })
            .await
            .expect("create site");
    }
    (depot, landfill)
}

/// Creates a truck at `depot`.
pub async fn truck(client: &mut Client, depot: &str, capacity_litres: i64) -> String {
    let tid = id("truck");
    client
        .create_truck(pb::CreateTruckRequest {
            truck: Some(pb::Truck {
                truck_id: tid.clone(),
                depot_id: depot.into(),
                capacity_litres,
                shift_start_minute: 360,
                shift_end_minute: 960,
            }),
        })
        .await
        .expect("create truck");
    tid
}

/// A bin near the depot (index `i` spreads them over about 10 km).
pub fn bin(bin_id: &str, i: usize) -> pb::Bin {
    let a = (i as f64) * 2.399_963; // golden angle: an even spread
    let r = 0.08 * ((i % 97) as f64 / 97.0).sqrt();
    pb::Bin {
        bin_id: bin_id.into(),
        location: at(52.52 + r * a.sin(), 13.40 + 1.6 * r * a.cos()),
        capacity_litres: 240,
        waste_type: pb::WasteType::General as i32,
        ..Default::default()
    }
}

/// Creates bins `0..n` with ids `<prefix>-<i>`; returns the ids.
pub async fn bins(client: &Client, prefix: &str, n: usize) -> Vec<String> {
    use futures::StreamExt;
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    futures::stream::iter(ids.iter().enumerate())
        .map(|(i, b)| {
            let mut c = client.clone();
            let req = pb::CreateBinRequest { bin: Some(bin(b, i)) };
            async move { c.create_bin(req).await.expect("create bin") }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    ids
}

/// Sends `readings` on one ReportFillStream; returns how many were accepted.
pub async fn stream_fills(client: &Client, readings: Vec<pb::ReportFillRequest>) -> i64 {
    let mut c = client.clone();
    c.report_fill_stream(tokio_stream::iter(readings)).await.expect("report fill stream").into_inner().accepted
}
