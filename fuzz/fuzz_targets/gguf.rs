#![no_main]
//! Fuzz target: see `openweigh::fuzz::gguf`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openweigh::fuzz::gguf(data);
});
