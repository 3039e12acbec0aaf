//! What every meshwork service shares, so that all of them behave alike: the one server
//! builder (health, reflection v1 + v1alpha, panic catching, message limits, a tracing span per
//! call), the mapping of domain errors to gRPC statuses, id allocation from leased ranges, page
//! tokens and the clock; and the service kit: idempotency keys ([`idempotency`]), the
//! transactional event log with its consumers ([`events`]) and the mesh client for calls to
//! other services ([`mesh`]).

#![forbid(unsafe_code)]

pub mod caller;
pub mod clock;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod mesh;
pub mod paging;
pub mod server;
pub mod spec;

pub use caller::{Caller, TrustedIdentityLayer};
pub use clock::{Clock, ManualClock, SystemClock, utc_date};
pub use error::{ServiceError, ServiceResult};
pub use events::{Consumer, Event, EventLog};
pub use idempotency::{Claim, ClaimGuard, Fingerprint, Idempotency, validate_request_id};
pub use ids::{IdAllocator, base62_decode, base62_encode};
pub use mesh::{CallContext, MeshClient};
pub use paging::PageToken;
pub use server::{HostedService, HostedServiceBuilder, ServiceContext, serve};
pub use spec::{HttpRoute, RedirectRoute, ServiceSpec};
