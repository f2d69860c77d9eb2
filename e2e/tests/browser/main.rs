//! The page in real headless Chromium through chromedriver, against the real
//! server binary, one binary: the page's own behaviour (`page`), the stream
//! inspector's panels (`inspector`), how the browser's connections are
//! shared over HTTP/2 and HTTP/1.1 (`http2`), and the last events a new
//! tab opens with (`last`).

mod http2;
mod inspector;
mod last;
mod page;
