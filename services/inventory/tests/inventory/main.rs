//! The inventory against real servers (in-process gRPC over loopback) and real stores (memory,
//! embedded fjall, the shared 3-member etcd cluster): no oversell under 500 racing
//! reservations on two replicas, all-or-nothing reservations, holds that expire by themselves
//! (also after a restart), the change stream resuming without gaps or repeats, the bad-input
//! catalogue, and 1,000-line batches. One test binary, so the etcd cluster starts once.

mod bad_input;
mod batch;
mod expiry;
mod oversell;
mod support;
mod watch;
