#![no_main]
//! See `ragd_fuzz::store`.

libfuzzer_sys::fuzz_target!(init: ragd_fuzz::init("snapshot"), |data: &[u8]| ragd_fuzz::store::snapshot(data));
