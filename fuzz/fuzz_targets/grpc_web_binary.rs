//! libFuzzer entry point of `grpc_web_binary`; the body is `meshwork_fuzz_bodies::grpc_web_binary`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::grpc_web_binary(data));
