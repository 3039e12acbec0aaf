//! A payment processor simulator as a real gRPC service (`meshwork.payments.v1.Payments`), the
//! outside processor of the e-commerce checkout: authorizations hold an amount, captures take
//! at most that once, refunds give back at most what was captured, voids cancel an uncaptured
//! authorization. Every call that moves money is idempotent by `request_id`, and its change,
//! idempotency record and event (`payments/events/...`) commit as one Store write. Test card
//! tokens decline or fail on demand, and the `payments.failure_rate` / `payments.latency_ms`
//! settings inject failures and latency so that callers' retries and compensation get tested.

#![forbid(unsafe_code)]

pub mod grpc;
pub mod keys;
pub mod model;
pub mod rules;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::payments::v1::payments_server::PaymentsServer;

pub use grpc::PaymentsService;
pub use service::{Config, Payments};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <PaymentsServer<PaymentsService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table; the gateway may retry every method (see below).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "payments",
        about: "payment processor simulator: authorize, capture, void, refund, with injected failures",
        grpc_services: vec![grpc_name::<PaymentsServer<PaymentsService>>()],
        hosted,
        http_routes: vec![],
        // Every call that moves money is idempotent by its request_id, so the gateway may retry
        // it on another replica.
        idempotent_methods: vec!["GetPayment", "ListPayments", "Authorize", "Capture", "Void", "Refund"],
    }
}

/// Builds the service on `ctx`, with failure and latency injection from its settings
/// (`payments.failure_rate`, `payments.latency_ms`).
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::from_settings(&ctx.settings))
}

/// [`hosted`] with an explicit [`Config`].
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let payments = Arc::new(Payments::new(ctx.store.clone(), ctx.clock.clone(), config));
    HostedService::builder("payments").grpc(PaymentsServer::new(PaymentsService::new(payments))).build()
}
