//! The seed's Google Play Store as a gRPC service (`meshwork.appstore.v1.AppStore`).
//!
//! Developers own apps (reverse-DNS package names); apps get releases with strictly increasing
//! version codes, which go out on the tracks `internal`, `alpha`, `beta` and `production` as
//! staged rollouts shaped like the Play Developer API's tracks/releases ([`rollout`]: statuses
//! in progress, halted and completed with a user fraction). CheckUpdate buckets each device by a
//! SHA-256 of (device, package, release), so a device in at 10% stays in at 20% and the share
//! in matches the fraction; it answers from a watch-coherent cache. Installs touch only the
//! device's own key and are counted by batched counters, so a hot app is never one contended
//! key; daily counts feed the top charts ([`charts`]). Ranked search over title, developer and
//! description is a per-replica tantivy projection of the store ([`search`]), kept by the kit's
//! projection loop (`meshwork_common::projection`).

#![forbid(unsafe_code)]

pub mod charts;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod rollout;
pub mod search;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::projection::{self, FollowOptions};
use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::appstore::v1::app_store_server::AppStoreServer;

pub use grpc::AppStoreService;
pub use search::SearchIndex;
pub use service::{AppStore, Config};

/// The service's entry in the mesh's table. The gateway may retry the read-only methods, those
/// a `request_id` makes idempotent, and the install records (idempotent per device).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "appstore",
        about: "app store: apps, releases on tracks with staged rollouts, update checks, installs, search and charts",
        grpc_services: vec![grpc_name::<AppStoreServer<AppStoreService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "CheckUpdate",
            "GetAppDetails",
            "SearchApps",
            "TopCharts",
            "RecordInstall",
            "RecordUninstall",
            "CreateDeveloper",
            "CreateApp",
            "UploadRelease",
            "SetTrackRelease",
            "UpdateRollout",
            "HaltRollout",
            "ResumeRollout",
            "CompleteRollout",
            "PromoteRelease",
        ],
    }
}

/// Builds the service on `ctx` and starts its background tasks (the app cache's watch, the
/// install counters' flush, the search projection); the shutdown hook flushes the counters.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables (a key root of its own, the flush interval).
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let flush_every = config.counter_flush_interval;
    let store = Arc::new(AppStore::new(ctx.store.clone(), ctx.clock.clone(), config));
    let index = Arc::new(SearchIndex::new());
    let counters = store.counters().clone();
    let keys = store.keys().clone();
    let projected = index.clone();
    HostedService::builder("appstore")
        .grpc(AppStoreServer::new(AppStoreService::new(store.clone(), index)))
        .task(store.app_cache().watch_task())
        .task(counters.flush_task(flush_every))
        .task(projection::follow(
            "appstore_search",
            ctx.store.clone(),
            keys.apps_prefix().into_bytes(),
            FollowOptions::default(),
            move || search::AppProjector::new(projected.clone(), keys.clone()),
        ))
        .on_shutdown(counters.shutdown_hook())
        .build()
}
