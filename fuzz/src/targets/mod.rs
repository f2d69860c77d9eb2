//! The fuzz targets' properties, one module per target, each named after its
//! libFuzzer binary in `fuzz_targets/` and documented with the property it
//! checks.
//!
//! Each has `run(data)`, which checks one input given as bytes, as libFuzzer
//! gives them; `parse` also has an `init()` to call once first. A target
//! whose input is structured (`encode`, `last_event_id`, `token`) decodes
//! it in `run` as libfuzzer-sys does ([`crate::decode`]) and checks it in
//! `check(input)`, which its binary calls. `tests/corpus.rs` replays the
//! committed inputs through `run` under `cargo test`.

pub mod encode;
pub mod http_request;
pub mod last_event_id;
pub mod parse;
pub mod publish_body;
pub mod token;
