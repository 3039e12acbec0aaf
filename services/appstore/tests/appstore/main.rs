//! The app store against real servers (in-process gRPC over loopback, sometimes two replicas
//! on one store) and real stores (memory, embedded fjall, the shared 3-member etcd cluster):
//! rollout shares and stable bucketing (100,000 devices through the bucketing rules on the
//! stored tracks, 2,000 through CheckUpdate), widening, halting, min_sdk and track
//! visibility, 64 racing uploads of one version code, 100-way concurrent installs counted
//! exactly, charts on a manual clock, search as a projection, identity, idempotency and the
//! bad-input catalogue, and a short run of the load scenario. One test binary, so the etcd cluster starts once.

mod bad_input;
mod installs;
mod releases;
mod rollouts;
mod scenario;
mod search;
mod support;
