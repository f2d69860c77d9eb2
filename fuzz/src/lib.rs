//! Oracles for the fuzz targets in `fuzz_targets/`: small, deliberately
//! plain re-statements of the rules the project's code implements, written
//! from the specifications rather than from that code.
//!
//! - [`whatwg`]: "interpreting an event stream" (WHATWG HTML, Server-Sent
//!   Events), over a whole stream held in memory.
//! - [`form`]: the `application/x-www-form-urlencoded` parser (WHATWG URL),
//!   which reads `/stream`'s query string.
//! - [`lines`]: splitting text on CRLF, CR and LF.

pub mod form;
pub mod lines;
pub mod whatwg;
