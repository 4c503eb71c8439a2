#![no_main]
//! See `ragd_fuzz::tiktoken_pickle`.

libfuzzer_sys::fuzz_target!(init: ragd_fuzz::init("tiktoken_pickle"), |data: &[u8]| ragd_fuzz::tiktoken_pickle::run(data));
