#![no_main]
//! Fuzz target: see `openweigh::fuzz::template`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openweigh::fuzz::template(data);
});
