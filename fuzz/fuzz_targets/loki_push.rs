//! libFuzzer entry point of `loki_push`; the body is `meshwork_fuzz_bodies::loki_push`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::loki_push(data));
