//! libFuzzer entry point of `jaeger_query`; the body is `meshwork_fuzz_bodies::jaeger_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::jaeger_query(data));
