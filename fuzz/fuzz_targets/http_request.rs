//! The `http_request` fuzz target: its property and code are in
//! `fuzz::targets::http_request` (fuzz/src/targets/http_request.rs).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz::targets::http_request::run(data);
});
