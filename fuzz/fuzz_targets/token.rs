//! The `token` fuzz target: its property and code are in
//! `fuzz::targets::token` (fuzz/src/targets/token.rs).

#![no_main]

libfuzzer_sys::fuzz_target!(|input: fuzz::targets::token::Input| {
    fuzz::targets::token::check(&input);
});
