//! The `publish_body` fuzz target: its property and code are in
//! `fuzz::targets::publish_body` (fuzz/src/targets/publish_body.rs).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz::targets::publish_body::run(data);
});
