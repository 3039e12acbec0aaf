//! The waste service against real servers (in-process gRPC over loopback) and real stores
//! (memory, embedded fjall, the shared 3-member etcd cluster): the bad-input catalogue,
//! concurrent telemetry and pickups keeping a consistent bin state, concurrent PlanRoutes
//! with one request_id storing one plan, the route stream, and the end-to-end week of 500
//! bins. One test binary, so the etcd cluster starts once.

mod bad_input;
mod concurrency;
mod journey;
mod support;
