#![no_main]
//! Fuzz target: see `openweigh::fuzz::lm_eval`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openweigh::fuzz::lm_eval(data);
});
