#![no_main]
//! Fuzz target: see `openweigh::fuzz::data`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openweigh::fuzz::data(data);
});
