//! libFuzzer entry point of `grpc_framing`; the body is `meshwork_fuzz_bodies::grpc_framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::grpc_framing(data));
