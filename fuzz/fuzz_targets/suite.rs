#![no_main]
//! Fuzz target: see `openweigh::fuzz::suite`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openweigh::fuzz::suite(data);
});
