#![no_main]
//! Fuzz target: see `openweigh::fuzz::prices`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openweigh::fuzz::prices(data);
});
