//! Support for the page's end-to-end tests (in `tests/`): they run the real
//! `server` binary serving the built page from `dist/`, and drive headless
//! Chromium through chromedriver (WebDriver) the way a person would.
//!
//! - [`server`]: builds and starts the server binary on a chosen or free port.
//! - [`browser`]: starts chromedriver and a fresh headless Chromium session.
//! - [`page`]: reads the page's state (status, rows, counters) in one call and
//!   waits, with a deadline, for a condition on it.
//! - [`http`]: a minimal HTTP/1.1 client to publish from outside the browser.
//! - [`proxy`]: a TCP proxy whose connections a test can cut.
//!
//! The tests need `dist/index.html` (run `trunk build --release` first, as
//! `scripts/test.sh` does), `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (override with `E2E_CHROMIUM` and `E2E_CHROMEDRIVER`).

pub mod browser;
pub mod http;
pub mod page;
pub mod proxy;
pub mod server;

use std::path::PathBuf;

/// The workspace's root directory (where `dist/` is built).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

/// Only one browser test runs at a time: each starts a server and a Chromium,
/// and the machine may have only a couple of cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the other browser tests of this process to finish; hold the
/// guard for the whole test.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}
