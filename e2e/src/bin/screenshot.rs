//! Makes the README's screenshot of the page as a stream inspector:
//! `cargo run -p e2e --bin screenshot -- docs/inspector.png` (what
//! `scripts/screenshot.sh` runs).
//!
//! It starts the server binary with the ticker, behind the test proxy,
//! publishes to a few topics, cuts the connection once (a resume in the
//! timeline) and holds the stream back once (a bulk arrival), opens an
//! event's details, then saves a 1280×900 PNG from headless Chromium.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use e2e::browser::Browser;
use e2e::http;
use e2e::page::Page;
use e2e::proxy::Proxy;
use e2e::server::{Server, ServerOptions};

/// How long the page collects latency points before the picture.
const WARM_UP: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let out = std::env::args_os().nth(1).map_or_else(
        || e2e::workspace_root().join("docs/inspector.png"),
        PathBuf::from,
    );
    let server = Server::start(&ServerOptions::ticker("150ms"))?;
    let proxy = Proxy::start(server.addr()).await?;
    let browser = Browser::start().await?;
    // A 1280×900 viewport: the window is that plus the browser's own frame.
    let frame = browser
        .client()
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            Vec::new(),
        )
        .await?;
    let extra = |i: usize| frame[i].as_u64().unwrap_or(0) as u32;
    browser
        .client()
        .set_window_size(1280 + extra(0), 900 + extra(1))
        .await?;
    let page = Page::open(&browser, &proxy.url()).await?;
    page.wait_until("live with a clock offset", |s| {
        s.is("live") && s.offset_ms.is_some()
    })
    .await?;

    let publishing = tokio::spawn({
        let addr = server.addr();
        async move {
            for i in 0.. {
                let (topic, message) = match i % 3 {
                    0 => ("orders.eu", format!("order {i} placed")),
                    1 => ("chat.room-1", format!("hello from user {}", i % 7)),
                    _ => ("deploys", format!("build {i} green")),
                };
                if http::publish(addr, &message, Some(topic)).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
    });

    tokio::time::sleep(WARM_UP / 2).await;
    // A dropped connection, resumed with Last-Event-ID.
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A proxy that holds the stream back, then lets it go at once.
    proxy.hold();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.release();
    page.wait_until("the buffering hint", |s| s.hint_buffering.is_some())
        .await?;
    tokio::time::sleep(WARM_UP / 2).await;

    page.click("#messages > li:nth-child(2)").await?;
    page.wait_until("the event's details", |s| s.details_sse.is_some())
        .await?;
    // The details have the focus; the picture needs none.
    page.client()
        .execute(
            "document.activeElement.blur(); window.scrollTo(0, 0);",
            Vec::new(),
        )
        .await?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    page.screenshot(&out).await?;
    publishing.abort();
    browser.close().await?;
    let size = std::fs::metadata(&out)?.len();
    if size == 0 {
        bail!("{} is empty", out.display());
    }
    println!("wrote {} ({} KiB)", out.display(), size / 1024);
    Ok(())
}
