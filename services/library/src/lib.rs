//! A library's circulation as a gRPC service (`meshwork.library.v1.Library`): titles by ISBN
//! (ISBN-10 or -13, check digits verified, kept as ISBN-13) and their copies by barcode,
//! members whose type sets loan limits, loan periods and fine rates ([`policy`]), checkout,
//! return and renewal, a FIFO holds queue per title with a pickup deadline that passes a missed
//! copy to the next hold, fines per overdue day capped at the replacement cost, and ranked
//! search over titles, authors and subjects kept as a per-replica tantivy projection of the
//! store ([`search`]).
//!
//! Every change is one conditional store transaction over the records it reads ([`service`]),
//! so the last copy goes to exactly one of the members racing for it, on every backend and
//! with any number of replicas. Time comes from the service's clock; each replica sweeps the
//! missed pickups.

#![forbid(unsafe_code)]

pub mod grpc;
pub mod isbn;
pub mod keys;
pub mod model;
pub mod policy;
pub mod search;
pub mod service;
pub mod validate;
mod work;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::library::v1::library_server::LibraryServer;

pub use grpc::LibraryService;
pub use search::SearchIndex;
pub use service::{Config, Library};

/// The service's entry in the mesh's table. The gateway may retry the read-only methods and
/// those a `request_id` makes idempotent (a retry answers the first call's answer).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "library",
        about: "library circulation: copies, members with limits, checkout/return/renew, FIFO holds, fines",
        grpc_services: vec![grpc_name::<LibraryServer<LibraryService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetTitle",
            "GetCopy",
            "SearchCatalog",
            "MemberAccount",
            "AddTitle",
            "AddCopy",
            "RegisterMember",
            "Checkout",
            "Return",
            "Renew",
            "PlaceHold",
            "PayFine",
        ],
    }
}

/// Builds the service on `ctx` and starts its background tasks (the pickup sweeper, the
/// search index following the store).
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables (a key root of its own, the currency, the sweep interval).
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let library = Arc::new(Library::new(ctx.store.clone(), ctx.clock.clone(), config));
    let index = Arc::new(SearchIndex::new());
    HostedService::builder("library")
        .grpc(LibraryServer::new(LibraryService::new(library.clone(), index.clone())))
        .task(search::follow::run(index, ctx.store.clone(), library.keys().clone()))
        .task(library.sweep_task())
        .build()
}
