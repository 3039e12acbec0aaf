//! libFuzzer entry point of `vrplib`; the body is `meshwork_fuzz_bodies::vrplib`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::vrplib(data));
