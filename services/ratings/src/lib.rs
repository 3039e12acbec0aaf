//! Ratings and reviews as a gRPC service (`meshwork.ratings.v1.Ratings`): one review per user
//! per product (a second submit edits it and keeps the earlier version), a "verified
//! purchase" check against the orders service through the mesh, exact incremental aggregates
//! ([`aggregate`]) kept in the transaction of every change, helpful votes and abuse reports,
//! spam scoring at submit time ([`spam`]) that routes a review to PUBLISHED, PENDING (the
//! moderation queue) or REJECTED, moderators' decisions and seller replies. Every change of a
//! review goes to the `ratings` event log (`review.submitted`, `review.edited`,
//! `review.moderated`, payload `meshwork.ratings.v1.ReviewEvent`) in the same transaction.

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod service;
pub mod spam;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::ratings::v1::ratings_server::RatingsServer;

pub use grpc::RatingsService;
pub use service::{Config, Ratings};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <RatingsServer<RatingsService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table; the gateway may retry the read-only methods,
/// SubmitReview (idempotent by its request_id), VoteHelpful (it sets a vote) and ReportReview
/// (one report per user).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "ratings",
        about: "ratings and reviews: exact aggregates, helpful votes, spam scoring with a moderation queue",
        grpc_services: vec![grpc_name::<RatingsServer<RatingsService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetReview",
            "ListReviews",
            "GetProductRating",
            "ListModerationQueue",
            "SubmitReview",
            "VoteHelpful",
            "ReportReview",
        ],
    }
}

/// Builds the service on `ctx`.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables.
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let ratings = Arc::new(Ratings::new(ctx, config));
    HostedService::builder("ratings").grpc(RatingsServer::new(RatingsService::new(ratings))).build()
}
