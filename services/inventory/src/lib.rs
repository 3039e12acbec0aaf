//! Real-time inventory as a gRPC service (`meshwork.inventory.v1.Inventory`): stock per sku and
//! location, all-or-nothing reservations across skus and locations with a hold that expires by
//! itself, commit and release, a change stream with low-stock alerts.
//!
//! Never oversell: every change is one conditional store transaction over the stock records it
//! reads ([`service`]), so available stock stays at or above zero on every backend and with any
//! number of replicas. Every change appends its events to the inventory's event log in the same
//! transaction; `WatchStock` streams them. Each replica sweeps holds past their time.

#![forbid(unsafe_code)]

pub mod allocation;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::inventory::v1::inventory_server::InventoryServer;

pub use grpc::InventoryService;
pub use service::{Config, Inventory};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <InventoryServer<InventoryService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table. The gateway may retry the read-only methods, those
/// a `request_id` makes idempotent, and the reservation moves that answer their result again
/// when repeated (committing a COMMITTED reservation, releasing a RELEASED one).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "inventory",
        about: "stock per sku and location, all-or-nothing reservations with expiry, a change stream",
        grpc_services: vec![grpc_name::<InventoryServer<InventoryService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetStock",
            "GetReservation",
            "WatchStock",
            "AdjustStock",
            "BatchAdjust",
            "Reserve",
            "CommitReservation",
            "ReleaseReservation",
            "SetLowStockThreshold",
        ],
    }
}

/// Builds the service on `ctx` and starts its background tasks (the expiry sweeper, the change
/// log's retention).
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables (a key root of its own, the sweep interval).
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let inventory = Arc::new(Inventory::new(ctx.store.clone(), ctx.clock.clone(), config));
    HostedService::builder("inventory")
        .grpc(InventoryServer::new(InventoryService::new(inventory.clone())))
        .task(inventory.clone().sweep_task())
        .task(inventory.trim_task())
        .build()
}
