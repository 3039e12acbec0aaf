//! libFuzzer entry point of `logql`; the body is `meshwork_fuzz_bodies::logql`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::logql(data));
