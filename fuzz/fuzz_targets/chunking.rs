#![no_main]
//! See `ragd_fuzz::chunking`.

libfuzzer_sys::fuzz_target!(init: ragd_fuzz::init("chunking"), |data: &[u8]| ragd_fuzz::chunking::run(data));
