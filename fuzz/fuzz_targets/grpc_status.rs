//! libFuzzer entry point of `grpc_status`; the body is `meshwork_fuzz_bodies::grpc_status`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::grpc_status(data));
