//! What every meshwork service shares, so that all of them behave alike: the one server
//! builder (health, reflection v1 + v1alpha, panic catching, message limits, a tracing span per
//! call), the mapping of domain errors to gRPC statuses, id allocation from leased ranges, page
//! tokens and the clock.

#![forbid(unsafe_code)]

pub mod clock;
pub mod error;
pub mod ids;
pub mod paging;
pub mod server;

pub use clock::{Clock, ManualClock, SystemClock, utc_date};
pub use error::{ServiceError, ServiceResult};
pub use ids::{IdAllocator, base62_decode, base62_encode};
pub use paging::PageToken;
pub use server::{HostedService, ServiceContext, serve};
