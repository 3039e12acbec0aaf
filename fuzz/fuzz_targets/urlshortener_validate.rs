//! libFuzzer entry point of `urlshortener_validate`; the body is `meshwork_fuzz_bodies::urlshortener_validate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::urlshortener_validate(data));
