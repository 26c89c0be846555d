#![no_main]
//! Fuzz target: see `openweigh::fuzz::arrow`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openweigh::fuzz::arrow(data);
});
