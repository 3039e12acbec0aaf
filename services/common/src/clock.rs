//! The time source services use, so tests can move time by hand instead of sleeping. The clock
//! itself lives in `meshwork-clock`, which every layer (the gateway and the trace collector
//! too) can depend on; it is re-exported here so that services keep reading
//! `meshwork_common::{Clock, SystemClock, ManualClock, utc_date}`.

pub use meshwork_clock::{Clock, ManualClock, SystemClock, utc_date};
