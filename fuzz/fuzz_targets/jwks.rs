//! libFuzzer entry point of `jwks`; the body is `meshwork_fuzz_bodies::jwks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::jwks(data));
