//! libFuzzer entry point of `h2_frames`; the body is `meshwork_fuzz_bodies::h2_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::h2_frames(data));
