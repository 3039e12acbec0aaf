//! Parking lot reservations as a gRPC service (`meshwork.parking.v1.Parking`): lots of levels
//! and typed spots with hourly prices, availability searches, reservations at a 15-minute
//! granularity up to 30 days ahead that are HELD with a price quote and expire by themselves
//! unless confirmed, cancellation refunds by policy, check-in and check-out with overstay
//! charges, and no-shows that free their spot 30 minutes after the start.
//!
//! No double booking, whatever the concurrency or the number of replicas: a spot's live
//! reservations are one occupancy record that every reservation change of that spot reads and
//! writes in its own conditional transaction ([`service`]); a type-level request tries
//! candidate spots one small transaction each. Each replica sweeps due holds and no-shows.

#![forbid(unsafe_code)]

pub mod grpc;
pub mod keys;
pub mod model;
pub mod rules;
pub mod scenario;
pub mod service;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::parking::v1::parking_server::ParkingServer;

pub use grpc::ParkingService;
pub use service::{Config, HOLD_TTL_SETTING, Parking};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <ParkingServer<ParkingService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table. The gateway may retry the read-only methods,
/// CreateLot and Reserve (idempotent by `request_id`), and the reservation moves, which answer
/// their result again when repeated (confirming a CONFIRMED reservation, cancelling a
/// CANCELLED one, checking in a CHECKED_IN one, checking out a CHECKED_OUT one).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "parking",
        about: "parking lots: typed spots, time-range reservations without double booking, expiring holds, pricing",
        grpc_services: vec![grpc_name::<ParkingServer<ParkingService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetLot",
            "SearchAvailability",
            "GetReservation",
            "ListReservations",
            "CreateLot",
            "Reserve",
            "ConfirmReservation",
            "CancelReservation",
            "CheckIn",
            "CheckOut",
        ],
    }
}

/// Returns the configuration `ctx`'s settings give: `parking.hold_ttl_secs` (default 600).
pub fn config_from(ctx: &ServiceContext) -> Config {
    let default = service::DEFAULT_HOLD_TTL.as_secs();
    let secs = ctx.settings.get_or(HOLD_TTL_SETTING, default).max(1);
    Config { hold_ttl: Duration::from_secs(secs), ..Config::default() }
}

/// Builds the service on `ctx` and starts its sweeper of due holds and no-shows.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, config_from(ctx))
}

/// [`hosted`] with explicit tunables (a key root of its own, the hold time, the sweep
/// interval).
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let parking = Arc::new(Parking::new(ctx.store.clone(), ctx.clock.clone(), config));
    HostedService::builder("parking")
        .grpc(ParkingServer::new(ParkingService::new(parking.clone())))
        .task(parking.sweep_task())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hold_time_comes_from_the_settings() {
        let store: meshwork_storage::DynStore = std::sync::Arc::new(meshwork_storage::memory::MemoryStore::new());
        let ctx = |settings: meshwork_common::Settings| ServiceContext {
            store: store.clone(),
            clock: std::sync::Arc::new(meshwork_common::SystemClock),
            public_url: String::new(),
            mesh: meshwork_common::MeshClient::new("http://127.0.0.1:9").expect("mesh url"),
            settings,
        };
        assert_eq!(config_from(&ctx(Default::default())).hold_ttl, Duration::from_secs(600));
        let set = meshwork_common::Settings::default().with(HOLD_TTL_SETTING, 30);
        assert_eq!(config_from(&ctx(set)).hold_ttl, Duration::from_secs(30));
        let zero = meshwork_common::Settings::default().with(HOLD_TTL_SETTING, 0);
        assert_eq!(config_from(&ctx(zero)).hold_ttl, Duration::from_secs(1), "at least a second");
        let spec = spec();
        assert_eq!(spec.name, "parking");
        assert_eq!(spec.grpc_services, vec![SERVICE_NAME]);
    }
}
