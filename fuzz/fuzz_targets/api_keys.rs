//! libFuzzer entry point of `api_keys`; the body is `meshwork_fuzz_bodies::api_keys`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::api_keys(data));
