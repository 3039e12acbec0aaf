//! Waste collection as a gRPC service (`meshwork.waste.v1.Waste`): depots, landfills, trucks
//! and bins; fill telemetry (one reading or a client stream of many) with a per-bin history
//! and a time-to-full prediction ([`predict`]); route planning that chooses the bins due at
//! collection time and solves the capacitated routing problem with landfill trips through
//! `meshwork-routing` (haversine distances); and route execution (start, pickups that reset
//! a bin's fill, skipped stops carried over to the next plan, truck GPS pings) with a
//! per-route event stream for dispatchers (`WatchRoute`).
//!
//! Every change is one store transaction ([`service`]); plans and pickups take a
//! `request_id`; a route's events are written with its changes (transactional outbox).

#![forbid(unsafe_code)]

pub mod grpc;
pub mod keys;
pub mod model;
pub mod predict;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::waste::v1::waste_server::WasteServer;

pub use grpc::WasteService;
pub use service::{Config, Waste};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <WasteServer<WasteService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table. The gateway may retry the reads, the calls a
/// `request_id` makes idempotent (PlanRoutes, RecordPickup), the creations by client-chosen
/// id, ReportFill (a reading is keyed by bin and time) and the state moves that answer again
/// when repeated (StartRoute, SkipStop).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "waste",
        about: "waste bins with fill telemetry and prediction, route planning with landfill trips, route execution",
        grpc_services: vec![grpc_name::<WasteServer<WasteService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetBin",
            "ListBins",
            "GetPlan",
            "WatchRoute",
            "CreateSite",
            "CreateTruck",
            "CreateBin",
            "ReportFill",
            "PlanRoutes",
            "StartRoute",
            "RecordPickup",
            "SkipStop",
        ],
    }
}

/// Builds the service on `ctx`.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables (a key root of its own).
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let waste = Arc::new(Waste::new(ctx.store.clone(), ctx.clock.clone(), config));
    HostedService::builder("waste").grpc(WasteServer::new(WasteService::new(waste))).build()
}
