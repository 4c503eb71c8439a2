#![no_main]
//! See `ragd_fuzz::gguf_metadata`.

libfuzzer_sys::fuzz_target!(init: ragd_fuzz::init("gguf_metadata"), |data: &[u8]| ragd_fuzz::gguf_metadata::run(data));
