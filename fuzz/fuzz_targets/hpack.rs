//! libFuzzer entry point of `hpack`; the body is `meshwork_fuzz_bodies::hpack`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::hpack(data));
