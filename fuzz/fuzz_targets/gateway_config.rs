//! libFuzzer entry point of `gateway_config`; the body is `meshwork_fuzz_bodies::gateway_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::gateway_config(data));
