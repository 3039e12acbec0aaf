//! The real backends the service-kit tests run on, from the shared test harness.

#![allow(unused_imports)]

pub use meshwork_test_support::backends::{Backend, embedded, etcd, memory, unique};
