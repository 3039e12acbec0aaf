//! The parking service against real servers (in-process gRPC over loopback, often two
//! replicas on one store) and real stores (memory, embedded fjall, the shared 3-member etcd
//! cluster): 200 racing Reserve calls on one spot, a seeded randomized run of thousands of
//! reservations over 50 spots whose confirmed ones never overlap, holds that expire and free
//! their spot for the next caller, the life of a reservation with its prices, idempotency,
//! and the bad-input catalogue. One test binary, so the etcd cluster starts once.

mod bad_input;
mod expiry;
mod lifecycle;
mod race;
mod randomized;
mod support;
