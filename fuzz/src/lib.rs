//! The fuzz targets of `fuzz_targets/`, and the oracles they check the
//! project's code against.
//!
//! [`targets`] holds every target's property and code, callable as plain
//! functions: the libFuzzer binaries (the `libfuzzer` feature, built by
//! cargo-fuzz) are one line each, and `tests/corpus.rs` replays the
//! committed inputs through the same functions under `cargo test`.
//!
//! The oracles are small, deliberately plain re-statements of the rules the
//! project's code implements, written from the specifications rather than
//! from that code:
//!
//! - [`whatwg`]: "interpreting an event stream" (WHATWG HTML, Server-Sent
//!   Events), over a whole stream held in memory.
//! - [`form`]: the `application/x-www-form-urlencoded` parser (WHATWG URL),
//!   which reads `/stream`'s query string.
//! - [`lines`]: splitting text on CRLF, CR and LF.

use arbitrary::{Arbitrary, Unstructured};

pub mod form;
pub mod lines;
pub mod targets;
pub mod whatwg;

/// `data` decoded as a typed fuzz input exactly as libfuzzer-sys's
/// `fuzz_target!` decodes it for a closure that takes a `T`: too short for
/// `T`'s size hint, or not decodable, gives `None` (libFuzzer rejects such
/// an input without running the target).
pub fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    if data.len() < T::size_hint(0).0 {
        return None;
    }
    let u = Unstructured::new(data);
    T::arbitrary_take_rest(u).ok()
}
