#![no_main]
//! See `ragd_fuzz::store`.

libfuzzer_sys::fuzz_target!(init: ragd_fuzz::init("wal_replay"), |data: &[u8]| ragd_fuzz::store::wal_replay(data));
