//! Zoom-style meetings as a gRPC service (`meshwork.meetings.v1.Meetings`), the signalling
//! side: meetings with a hashed passcode and a waiting room, host controls (admit, deny,
//! remove for good, mute all, allow unmute, co-hosts, lock, end), participant state (role,
//! mute, hand, the one screen share) and a bidirectional stream per participant
//! (`StreamMeeting`) that carries every meeting event in the meeting's one order.
//!
//! The whole state is in the Store ([`model`], [`keys`]); every change and its event are one
//! transaction into the meeting's own event log ([`service`]), whose gapless sequence is what
//! every participant on every replica sees, and what a reconnecting stream resumes from
//! ([`stream`], fanned out per replica by [`feed`]). Participants whose stream dropped for
//! more than 60 s are marked LEFT by a sweeper every replica runs ([`presence`]).

#![forbid(unsafe_code)]

pub mod access;
pub mod feed;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod passcode;
pub mod presence;
pub mod rules;
pub mod service;
pub mod stream;
pub mod validate;
pub mod wire;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::meetings::v1::meetings_server::MeetingsServer;

pub use grpc::MeetingsService;
pub use service::{Config, Meetings};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <MeetingsServer<MeetingsService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table. The gateway may retry the read-only methods and
/// CreateMeeting (idempotent by its `request_id`).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "meetings",
        about: "Zoom-style meetings: passcodes, waiting room, host controls, a resumable signalling stream",
        grpc_services: vec![grpc_name::<MeetingsServer<MeetingsService>>()],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec!["GetMeeting", "ListParticipants", "GetMeetingReport", "CreateMeeting"],
    }
}

/// Builds the service on `ctx` and starts its presence sweeper.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    hosted_with(ctx, Config::default())
}

/// [`hosted`] with explicit tunables (a key root of its own, the sweep interval).
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let meetings = Arc::new(Meetings::new(ctx.store.clone(), ctx.clock.clone(), config));
    HostedService::builder("meetings")
        .grpc(MeetingsServer::new(MeetingsService::new(meetings.clone())))
        .task(presence::run(meetings))
        .build()
}
