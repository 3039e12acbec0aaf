//! The meetings service served for real (in-process, on the memory, embedded and 3-member
//! etcd stores): streams, host controls and participant rules, presence across drops and
//! restarts, and the bad-input catalogue.

mod bad_input;
mod controls;
mod presence;
mod streams;
mod support;
