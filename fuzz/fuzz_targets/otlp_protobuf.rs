//! libFuzzer entry point of `otlp_protobuf`; the body is `meshwork_fuzz_bodies::otlp_protobuf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::otlp_protobuf(data));
