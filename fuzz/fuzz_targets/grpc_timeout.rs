//! libFuzzer entry point of `grpc_timeout`; the body is `meshwork_fuzz_bodies::grpc_timeout`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::grpc_timeout(data));
