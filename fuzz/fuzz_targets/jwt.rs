//! libFuzzer entry point of `jwt`; the body is `meshwork_fuzz_bodies::jwt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::jwt(data));
