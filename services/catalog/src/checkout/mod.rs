//! Checkout (`meshwork.catalog.v1.Checkout`): turns a user's cart into a paid, confirmed
//! order as a saga across inventory, orders and payments, each step a call through the mesh
//! with a `request_id` derived from the checkout id, so that a retried or resumed step never
//! does anything twice. The saga's record is written before each step; a failure before the
//! capture of the payment compensates in reverse (void, cancel the order, release the hold),
//! after it the saga only goes forward. A recovery task on every replica finishes or
//! compensates the sagas of processes that died.
//!
//! Layout: [`saga`] decides (pure, unit-tested), [`service`] does the I/O, [`model`] is the
//! stored record, [`keys`] its keys, [`validate`] the request checks, [`grpc`] the glue.

pub mod grpc;
pub mod keys;
pub mod model;
pub mod saga;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedServiceBuilder, ServiceContext};
use meshwork_proto::pb::catalog::v1::checkout_server::CheckoutServer;

pub use grpc::CheckoutService;
pub use service::Checkouts;

/// Adds the Checkout gRPC service and its saga recovery task to `builder`.
pub fn install(builder: HostedServiceBuilder, ctx: &ServiceContext) -> HostedServiceBuilder {
    let checkouts = Arc::new(Checkouts::new(ctx.store.clone(), ctx.clock.clone(), ctx.mesh.clone()));
    builder.grpc(CheckoutServer::new(CheckoutService::new(checkouts.clone()))).task(checkouts.recovery_task())
}
