//! Why HTTPS with HTTP/2 matters, in real headless Chromium: over HTTP/2 a
//! page's twelve `EventSource`s share one connection and all receive; over
//! plain HTTP/1.1 the browser opens at most six connections to the origin,
//! so the rest wait with no error. The page shows the protocol in use.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::browser::{Browser, TRUST_ANY_CERTIFICATE};
use e2e::http;
use e2e::page::{Page, WAIT};
use e2e::server::{Server, ServerOptions};
use serde::Deserialize;
use serde_json::json;

/// How many `EventSource`s the page opens beside its own stream.
const SOURCES: usize = 12;

/// Chromium's limit of connections per origin over HTTP/1.1.
const H1_CONNECTIONS: usize = 6;

/// Opens `arguments[0]` EventSources on topic `arguments[1]`; each keeps
/// the last message it received.
const OPEN_JS: &str = r#"
const [n, topic] = arguments;
window.__sources = [];
window.__got = new Array(n).fill(null);
for (let i = 0; i < n; i++) {
  const source = new EventSource('/stream?topic=' + encodeURIComponent(topic));
  source.onmessage = (e) => { window.__got[i] = JSON.parse(e.data).message; };
  window.__sources.push(source);
}
return n;
"#;

/// The state of those EventSources.
const SOURCES_JS: &str = r#"
const sources = window.__sources || [];
return {
  open: sources.filter((s) => s.readyState === 1).length,
  connecting: sources.filter((s) => s.readyState === 0).length,
  got: window.__got || [],
  published: window.__published === undefined ? null : window.__published,
};
"#;

/// Publishes from the page itself (over its HTTP/2 connection).
const PUBLISH_JS: &str = r#"
const [message, topic] = arguments;
window.__published = null;
fetch('/publish', {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ message, topic }),
}).then((r) => { window.__published = r.status; }, (e) => { window.__published = String(e); });
return true;
"#;

#[derive(Debug, Deserialize)]
struct Sources {
    open: usize,
    connecting: usize,
    got: Vec<Option<String>>,
    published: Option<serde_json::Value>,
}

impl Sources {
    fn received(&self, message: &str) -> usize {
        self.got
            .iter()
            .filter(|m| m.as_deref() == Some(message))
            .count()
    }
}

async fn sources(page: &Page<'_>) -> Result<Sources> {
    serde_json::from_value(page.run(SOURCES_JS, Vec::new()).await?).context("decoding sources")
}

/// Polls the EventSources until `holds`, for at most [`WAIT`].
async fn wait_sources(
    page: &Page<'_>,
    what: &str,
    holds: impl Fn(&Sources) -> bool,
) -> Result<Sources> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = sources(page).await?;
        if holds(&now) {
            return Ok(now);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_twelve_event_sources_share_one_connection_and_all_receive() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("off").with_tls())?;
    let browser = Browser::start_with(&[TRUST_ANY_CERTIFICATE]).await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live, over h2", |s| {
        s.is("live") && s.protocol.as_deref() == Some("h2")
    })
    .await?;

    page.run(OPEN_JS, vec![json!(SOURCES), json!("fan")])
        .await?;
    wait_sources(&page, "all twelve open", |s| s.open == SOURCES).await?;
    page.run(PUBLISH_JS, vec![json!("to all twelve"), json!("fan")])
        .await?;
    let done = wait_sources(&page, "all twelve to receive", |s| {
        s.received("to all twelve") == SOURCES
    })
    .await?;
    ensure!(done.published == Some(json!(200)), "{done:?}");
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_plain_http1_the_browser_opens_only_six_connections() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("off"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live, over http/1.1", |s| {
        s.is("live") && s.protocol.as_deref() == Some("http/1.1")
    })
    .await?;

    page.run(OPEN_JS, vec![json!(SOURCES), json!("fan")])
        .await?;
    // The page's own stream holds one of the six connections.
    let allowed = H1_CONNECTIONS - 1;
    wait_sources(&page, "five to open", |s| s.open == allowed).await?;
    // The others wait, with no error: once a publish has gone to the open
    // ones and back through the page, they still wait (a loopback server
    // answers at once, so a refusal or an error would have come by then).
    http::publish(server.addr(), "to whoever is connected", Some("fan")).await?;
    let done = wait_sources(&page, "the open ones to receive", |s| {
        s.received("to whoever is connected") == allowed
    })
    .await?;
    ensure!(
        done.open == allowed && done.connecting == SOURCES - allowed,
        "{done:?}"
    );
    ensure!(
        done.got.iter().filter(|m| m.is_none()).count() == SOURCES - allowed,
        "{done:?}"
    );
    browser.close().await
}
