//! The `parse` fuzz target: its property and code are in
//! `fuzz::targets::parse` (fuzz/src/targets/parse.rs).

#![no_main]

libfuzzer_sys::fuzz_target!(init: fuzz::targets::parse::init(), |data: &[u8]| {
    fuzz::targets::parse::run(data);
});
