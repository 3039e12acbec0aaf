//! libFuzzer entry point of `gaen_export`; the body is `meshwork_fuzz_bodies::gaen_export`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwork_fuzz_bodies::gaen_export(data));
