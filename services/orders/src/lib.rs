//! Order management as a gRPC service (`meshwork.orders.v1.Orders`): an explicit state
//! machine ([`state`]) over event-sourced orders. An order's events are its record
//! (`GetOrderHistory`); its current state is their fold ([`fold`]), kept as a snapshot written
//! in the same transaction as each event. Every event also goes to the orders' event log
//! (transactional outbox), which `WatchOrders` streams from with resumable sequences and
//! which a consumer follows to complete the effects of cancellations and returns (refund,
//! restock through the payments and inventory services) that a crash left undone.

#![forbid(unsafe_code)]

pub mod access;
pub mod effects;
pub mod fold;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod service;
pub mod state;
pub mod validate;
pub mod wire;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::orders::v1::orders_server::OrdersServer;

pub use grpc::OrdersService;
pub use service::{Config, Orders};
pub use wire::fold_history;

/// The gRPC service name.
pub const SERVICE_NAME: &str = <OrdersServer<OrdersService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table; the gateway may retry the read-only methods and
/// CreateOrder.
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "orders",
        about: "order management: an event-sourced state machine with a watch stream",
        grpc_services: vec![grpc_name::<OrdersServer<OrdersService>>()],
        hosted,
        http_routes: vec![],
        // CreateOrder is idempotent by its request_id; TransitionOrder is not (a repeated move is
        // an illegal one).
        idempotent_methods: vec!["GetOrder", "ListOrders", "GetOrderHistory", "WatchOrders", "CreateOrder"],
    }
}

/// Builds the service on `ctx` and starts the consumer that completes the effects of
/// cancellations and returns.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables.
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let consumer = config.effects_consumer;
    let orders = Arc::new(Orders::new(ctx, config));
    let mut builder = HostedService::builder("orders").grpc(OrdersServer::new(OrdersService::new(orders.clone())));
    if consumer {
        builder = builder.task(async move {
            if let Err(e) = orders.run_effects_consumer().await {
                tracing::error!(error = %e, "the orders effects consumer stopped");
            }
        });
    }
    builder.build()
}
