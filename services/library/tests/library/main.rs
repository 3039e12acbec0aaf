//! The library's suites, through a real server on every backend (memory, embedded, the shared
//! 3-member etcd cluster), each case under a key root of its own.

mod bad_input;
mod circulation;
mod fines;
mod holds;
mod identity;
mod search;
mod support;
