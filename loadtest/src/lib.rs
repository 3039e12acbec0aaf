//! The ghz-style load generator and benchmark scenarios. Empty until the loadtest issue; the
//! benchmarks of the foundation use h2load (see docs/BENCHMARKS.md).

#![forbid(unsafe_code)]
