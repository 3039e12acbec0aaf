//! libFuzzer entry point of `grpc_message`; the body is `meshwork_fuzz_bodies::grpc_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::grpc_message(data));
