//! What every meshwork service shares, so that all of them behave alike: the one server
//! builder (health, reflection v1 + v1alpha, panic catching, message limits, a tracing span per
//! call), the mapping of domain errors to gRPC statuses, id allocation from leased ranges, page
//! tokens and the clock; the service's entry in the mesh's table ([`spec`]) and the verified
//! identity of its caller ([`caller`]); and the service kit: idempotency keys ([`idempotency`]), the
//! transactional event log with its consumers ([`events`]), the mesh client for calls to
//! other services ([`mesh`]), the versioned encoding of stored records ([`record`]), the
//! watch-coherent read cache ([`cache`]) and counters flushed in batches ([`counter`]).

#![forbid(unsafe_code)]

pub mod cache;
pub mod caller;
pub mod clock;
pub mod counter;
pub mod error;
pub mod events;
pub mod fields;
pub mod idempotency;
pub mod ids;
pub mod locks;
pub mod mesh;
pub mod paging;
pub mod projection;
pub mod record;
pub mod server;
pub mod settings;
pub mod spec;

pub use cache::{WatchedCache, WatchedCacheBuilder};
pub use caller::{Caller, TrustedIdentityLayer};
pub use clock::{Clock, ManualClock, SystemClock, utc_date};
pub use counter::{BatchedCounters, Flushed};
pub use error::{ServiceError, ServiceResult};
pub use events::{Consumer, Event, EventLog};
pub use idempotency::{Claim, ClaimGuard, Fingerprint, Idempotency, validate_request_id};
pub use ids::{IdAllocator, base62_decode, base62_encode, is_random_id, random_id};
pub use mesh::{CallContext, MeshClient};
pub use paging::PageToken;
pub use record::{CodecError, Record};
pub use server::{HostedService, HostedServiceBuilder, ServiceContext, serve};
pub use settings::Settings;
pub use spec::{HttpRoute, RedirectRoute, ServiceSpec};
