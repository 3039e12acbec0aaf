//! Recommendations (`meshwork.recommendation.v1.Recommendations`): item-item collaborative
//! filtering learned incrementally from the shop's events. Purchases (the orders' event
//! log), published reviews (the ratings' log), the catalog's categories and the interactions
//! recorded here (this service's log) feed a pure model ([`model`]: cosine similarity over the
//! user-item matrix with the top neighbours per item, as `implicit`'s `ItemItemRecommender`
//! keeps them) that every replica holds in memory ([`projection`]), built from the logs at
//! start and following them live, so a purchase moves "customers also bought" within a second
//! with no batch retrain; a periodic full rebuild checks and resets it. Answers come from
//! memory; users without history get popularity within the category. [`eval`] measures the
//! model offline (precision@k and friends) against a popularity baseline.

#![forbid(unsafe_code)]

pub mod eval;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod projection;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::recommendation::v1::recommendations_server::RecommendationsServer;

pub use grpc::RecommendationsService;
pub use projection::{Config, Live};
pub use service::Recommendations;

/// The gRPC service name.
pub const SERVICE_NAME: &str = <RecommendationsServer<RecommendationsService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table.
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "recommendation",
        about: "recommendations: item-item collaborative filtering learned live from orders, reviews and interactions",
        grpc_services: vec![grpc_name::<RecommendationsServer<RecommendationsService>>()],
        hosted,
        http_routes: vec![],
        // The queries only read; RecordInteraction is idempotent by its request_id.
        idempotent_methods: vec!["RecommendForUser", "SimilarItems", "Trending", "RecordInteraction"],
    }
}

/// Builds the service on `ctx` with its settings (`recommendation.rebuild_secs`,
/// `recommendation.neighbours`), starting the tasks that follow the logs and rebuild.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::from_settings(&ctx.settings)).0
}

/// [`hosted`] with an explicit [`Config`]; also returns the replica's live model (tests read
/// and rebuild it).
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> (HostedService, Live) {
    let live = Live::new(ctx.store.clone(), config);
    let service = Arc::new(Recommendations::new(ctx.store.clone(), ctx.clock.clone(), live.clone()));
    let hosted = HostedService::builder("recommendation")
        .grpc(RecommendationsServer::new(RecommendationsService::new(service)))
        .task(live.clone().follow())
        .task(live.clone().rebuild_periodically())
        .build();
    (hosted, live)
}
