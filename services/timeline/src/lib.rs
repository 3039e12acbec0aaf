//! Twitter-style timelines as a gRPC service (`meshwork.timeline.v1.Timeline`): users, a
//! follow graph, posts with snowflake-style time-ordered ids ([`snowflake`]), exact like and
//! repost counters ([`counts`]), and home timelines built by hybrid fan-out. Posts of ordinary
//! authors are pushed into followers' bounded inboxes by a durable fan-out queue that
//! replicas share ([`fanout`]); posts of celebrities (at least `timeline.celebrity_threshold`
//! followers) are pulled at read time and merged ([`home`]), and pages past the inbox fall
//! back to pulling. `StreamHomeTimeline` follows the service's event log.

#![forbid(unsafe_code)]

pub mod cache;
pub mod counts;
pub mod fanout;
pub mod grpc;
pub mod home;
pub mod keys;
pub mod model;
pub mod seed;
pub mod service;
pub mod snowflake;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::timeline::v1::timeline_server::TimelineServer;

pub use fanout::FanoutStats;
pub use grpc::TimelineService;
pub use seed::{Graph, power_law_graph, seed_graph, seed_graph_grpc};
pub use service::{Config, Timeline};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <TimelineServer<TimelineService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table; the gateway may retry the read-only methods and
/// the ones that are idempotent by design (CreatePost by its request_id; Follow, Unfollow,
/// Like, Unlike and Repost by their per-user keys).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "timeline",
        about: "Twitter-style timelines: hybrid push/pull fan-out with a durable queue, live home streams",
        grpc_services: vec![grpc_name::<TimelineServer<TimelineService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetUser",
            "ListFollowers",
            "ListFollowing",
            "GetPost",
            "GetUserTimeline",
            "GetHomeTimeline",
            "StreamHomeTimeline",
            "GetFanoutStatus",
            "CreatePost",
            "Follow",
            "Unfollow",
            "Like",
            "Unlike",
            "Repost",
        ],
    }
}

/// Builds the service on `ctx` with its settings (`timeline.celebrity_threshold`...) and
/// starts the event consumer and the fan-out workers.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    build(ctx, Config::from_settings(&ctx.settings)).0
}

/// [`hosted`] with explicit tunables; also returns the service state (its fan-out stats).
pub fn build(ctx: &ServiceContext, config: Config) -> (HostedService, Arc<Timeline>) {
    let background = config.run_background;
    let timeline = Arc::new(Timeline::new(ctx, config));
    let mut builder =
        HostedService::builder("timeline").grpc(TimelineServer::new(TimelineService::new(timeline.clone())));
    for task in timeline.cache_tasks() {
        builder = builder.task(task);
    }
    if background {
        let consumer = timeline.clone();
        builder = builder
            .task(async move {
                if let Err(e) = consumer.run_consumer().await {
                    tracing::error!(error = %e, "the timeline event consumer stopped");
                }
            })
            .task(timeline.clone().run_workers());
    }
    (builder.build(), timeline)
}
