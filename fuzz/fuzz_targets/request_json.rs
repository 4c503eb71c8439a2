#![no_main]
//! See `ragd_fuzz::request_json`.

libfuzzer_sys::fuzz_target!(init: ragd_fuzz::init("request_json"), |data: &[u8]| ragd_fuzz::request_json::run(data));
