//! An exposure-notification key server (`meshwork.contacttracing.v1.ContactTracing`): Aarogya
//! Setu built the privacy-preserving way of Google/Apple Exposure Notification. A health
//! authority issues one-time codes; a positive patient's app trades its code for a token and
//! the token with the HMAC of its Temporary Exposure Keys for a signed certificate, then
//! publishes the keys with it (every check of the GAEN key server: certificate, HMAC, 14 days,
//! no future, rolling period, no overlap, one upload per code, idempotent retries, a per-device
//! rate limit). Devices download signed `TemporaryExposureKeyExport` batches and match them
//! themselves ([`meshwork_gaen`]); the server never learns who met whom. `AreaCounts` gives
//! positive reports per geohash-5 cell, hiding cells under 10.

#![forbid(unsafe_code)]

pub mod certificate;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::contacttracing::v1::contact_tracing_server::ContactTracingServer;

pub use grpc::ContactTracingService;
pub use service::{Config, ContactTracing, HEALTH_AUTHORITY_ROLE};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <ContactTracingServer<ContactTracingService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table.
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "contacttracing",
        about: "exposure-notification key server (GAEN): verification codes, key uploads, signed exports",
        grpc_services: vec![grpc_name::<ContactTracingServer<ContactTracingService>>()],
        hosted,
        http_routes: vec![],
        // Reads, IssueCode (request_id), GetCertificate (the same HMAC answers the same
        // certificate) and PublishKeys (a repeat of an upload replays its answer) are safe to
        // send twice. VerifyCode is not: a code is taken once.
        idempotent_methods: vec![
            "ListExports",
            "GetExport",
            "GetSigningKey",
            "AreaCounts",
            "IssueCode",
            "GetCertificate",
            "PublishKeys",
        ],
    }
}

/// Builds the service on `ctx` (settings `contacttracing.*`, see [`Config::from_settings`])
/// and starts its sweeper of expired keys.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::from_settings(&ctx.settings))
}

/// [`hosted`] with an explicit [`Config`].
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let service = Arc::new(ContactTracing::new(ctx.store.clone(), ctx.clock.clone(), config));
    HostedService::builder("contacttracing")
        .grpc(ContactTracingServer::new(ContactTracingService::new(service.clone())))
        .task(service.sweep_task())
        .build()
}
