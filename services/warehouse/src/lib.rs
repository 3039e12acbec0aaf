//! Warehouse operations as a gRPC service (`meshwork.warehouse.v1.Warehouse`) on top of
//! inventory and orders: locations with bin codes ([`codes`]), purchase orders received and
//! put away ([`putaway`] suggests bins), waves of CONFIRMED orders taken from the orders'
//! event log by a consumer with a checkpoint, pick lists in FEFO order walked along the
//! shortest path through the aisles beside an S-shape baseline ([`picking`], over the
//! routing crate), short picks that backorder, pack and ship through the orders service,
//! cycle counts by ABC class ([`abc`]) with their differences booked to LOSS and to
//! inventory, and moves with capacity checked.
//!
//! Stock conservation (see [`service`]): per sku, what STORAGE, PACKING and SHIPPING hold
//! minus what open orders already bought equals inventory's on-hand at the warehouse's
//! inventory location, after every call.

#![forbid(unsafe_code)]

pub mod abc;
pub mod bench;
pub mod codes;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod picking;
pub mod putaway;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::warehouse::v1::warehouse_server::WarehouseServer;

pub use grpc::WarehouseService;
pub use service::{Config, Warehouses};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <WarehouseServer<WarehouseService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table. The gateway may retry the read-only methods and
/// every changing one (each takes a `request_id`).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "warehouse",
        about: "warehouse operations: receiving and put-away, waves with optimized pick paths, pack and ship, cycle counts",
        grpc_services: vec![grpc_name::<WarehouseServer<WarehouseService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetWarehouse",
            "GetLocation",
            "ListLocations",
            "GetSkuStock",
            "GetPurchaseOrder",
            "SuggestPutAway",
            "GetWave",
            "GetFulfillment",
            "PlanCycleCounts",
            "ListAudit",
            "CreateWarehouse",
            "CreateLocations",
            "CreatePurchaseOrder",
            "Receive",
            "PutAway",
            "MoveStock",
            "BuildWave",
            "ConfirmPick",
            "Pack",
            "Ship",
            "RecordCount",
        ],
    }
}

/// Builds the service on `ctx` and starts the consumer of the orders' log.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables.
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let consumer = config.orders_consumer;
    let warehouses = Arc::new(Warehouses::new(ctx, config));
    let mut builder =
        HostedService::builder("warehouse").grpc(WarehouseServer::new(WarehouseService::new(warehouses.clone())));
    if consumer {
        builder = builder.task(async move {
            if let Err(e) = warehouses.run_orders_consumer().await {
                tracing::error!(error = %e, "the warehouse's orders consumer stopped");
            }
        });
    }
    builder.build()
}
