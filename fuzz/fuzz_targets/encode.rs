//! The `encode` fuzz target: its property and code are in
//! `fuzz::targets::encode` (fuzz/src/targets/encode.rs).

#![no_main]

libfuzzer_sys::fuzz_target!(|input: fuzz::targets::encode::Input| {
    fuzz::targets::encode::check(&input);
});
