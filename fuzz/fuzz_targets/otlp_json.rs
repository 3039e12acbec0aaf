//! libFuzzer entry point of `otlp_json`; the body is `meshwork_fuzz_bodies::otlp_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::otlp_json(data));
