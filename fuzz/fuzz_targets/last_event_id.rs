//! The `last_event_id` fuzz target: its property and code are in
//! `fuzz::targets::last_event_id` (fuzz/src/targets/last_event_id.rs).

#![no_main]

libfuzzer_sys::fuzz_target!(|input: fuzz::targets::last_event_id::Input| {
    fuzz::targets::last_event_id::check(&input);
});
