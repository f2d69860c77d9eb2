//! The page as the tests see it: one JavaScript call reads everything a
//! check needs, and [`Page::wait_for`] polls that until a condition holds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde::Deserialize;

use crate::browser::Browser;

/// How long a condition may take to become true.
pub const WAIT: Duration = Duration::from_secs(30);
/// Time between two looks at the page while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Reads the page's state; see [`Snapshot`].
const SNAPSHOT_JS: &str = r#"
const text = (sel) => { const el = document.querySelector(sel); return el ? el.textContent.trim() : null; };
const shown = (sel) => { const el = document.querySelector(sel); return el && !el.hidden ? el.textContent.trim() : null; };
const num = (v) => (v === undefined || v === null || v === '' || isNaN(Number(v))) ? null : Number(v);
const status = document.querySelector('#status');
const pause = document.querySelector('#pause');
return {
  state: status ? status.dataset.state : null,
  subscription: status ? (status.dataset.subscription || null) : null,
  topic: text('#stat-topic'),
  received: num(text('#stat-received')),
  reconnects: num(text('#stat-reconnects')),
  duplicates: num(text('#stat-duplicates')),
  last_id: text('#stat-last-id'),
  protocol: text('#stat-protocol'),
  retry_note: text('#retry-note') || null,
  publish_error: shown('#publish-error'),
  publish_result: text('#publish-result'),
  topic_error: shown('#topic-error'),
  topic_refused: shown('#topic-refused'),
  token_state: text('#token-state'),
  paused: pause ? pause.getAttribute('aria-pressed') === 'true' : false,
  rows: Array.from(document.querySelectorAll('#messages li')).map((li) => ({
    kind: li.dataset.kind || '',
    id: li.dataset.id || null,
    epoch: num(li.dataset.epoch),
    seq: num(li.dataset.seq),
    topic: li.dataset.topic || null,
    reason: li.dataset.reason || null,
    message: (li.querySelector('.message') || li).textContent,
  })),
};
"#;

/// One row of `#messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    /// `event` or `reset`.
    pub kind: String,
    /// The SSE id (`<epoch>-<seq>`).
    pub id: Option<String>,
    /// The server run (events only).
    pub epoch: Option<u64>,
    /// The sequence number (events only).
    pub seq: Option<u64>,
    /// The topic (events only).
    pub topic: Option<String>,
    /// Why events were missed (reset notices only).
    pub reason: Option<String>,
    /// The message text.
    pub message: String,
}

/// Everything the tests look at, read in one go.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    /// `#status`'s `data-state`: connecting, live, reconnecting or closed.
    pub state: Option<String>,
    /// `#status`'s `data-subscription`: the topic of the open connection.
    pub subscription: Option<String>,
    /// The subscription shown in the status bar.
    pub topic: Option<String>,
    /// Events received.
    pub received: Option<u64>,
    /// Reconnects counted.
    pub reconnects: Option<u64>,
    /// Duplicates dropped.
    pub duplicates: Option<u64>,
    /// The last event id shown.
    pub last_id: Option<String>,
    /// The HTTP version shown (`h2`, `http/1.1`).
    pub protocol: Option<String>,
    /// When the page waits before opening a new connection, what it says.
    pub retry_note: Option<String>,
    /// The publish form's error, when shown.
    pub publish_error: Option<String>,
    /// The publish form's success note.
    pub publish_result: Option<String>,
    /// The topic picker's error, when shown.
    pub topic_error: Option<String>,
    /// Why the server refused the stream (401/403), when shown.
    pub topic_refused: Option<String>,
    /// What the token panel says.
    pub token_state: Option<String>,
    /// Whether rendering is paused.
    pub paused: bool,
    /// The list, top (newest) first.
    pub rows: Vec<Row>,
}

impl Snapshot {
    /// The event rows (not reset notices), newest first.
    pub fn events(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|row| row.kind == "event")
    }

    /// The reset notices.
    pub fn resets(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|row| row.kind == "reset")
    }

    /// The highest sequence number shown.
    pub fn max_seq(&self) -> Option<u64> {
        self.events().filter_map(|row| row.seq).max()
    }

    /// Whether the state is `state`.
    pub fn is(&self, state: &str) -> bool {
        self.state.as_deref() == Some(state)
    }

    /// Whether the connection is open and subscribed to `topic` (the label:
    /// a topic name or `all topics`).
    pub fn live_on(&self, topic: &str) -> bool {
        self.is("live") && self.subscription.as_deref() == Some(topic)
    }

    /// Ids shown more than once.
    pub fn duplicate_ids(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.rows
            .iter()
            .filter_map(|row| row.id.clone())
            .filter(|id| !seen.insert(id.clone()))
            .collect()
    }

    /// A short description for failure messages.
    pub fn summary(&self) -> String {
        let first: Vec<String> = self
            .rows
            .iter()
            .take(8)
            .map(|row| {
                format!(
                    "{}:{}:{}:{}",
                    row.kind,
                    row.id.as_deref().unwrap_or("-"),
                    row.topic.as_deref().unwrap_or("-"),
                    row.message.trim()
                )
            })
            .collect();
        format!(
            "state={:?} retry_note={:?} subscription={:?} topic={:?} received={:?} reconnects={:?} publish_error={:?} \
             publish_result={:?} topic_error={:?} paused={} rows={} first={first:?}",
            self.state,
            self.retry_note,
            self.subscription,
            self.topic,
            self.received,
            self.reconnects,
            self.publish_error,
            self.publish_result,
            self.topic_error,
            self.paused,
            self.rows.len()
        )
    }
}

/// The page open in a browser.
#[derive(Debug)]
pub struct Page<'a> {
    client: &'a Client,
}

impl<'a> Page<'a> {
    /// Loads `url` and waits until the app has rendered its status.
    ///
    /// # Errors
    /// When the page does not load or never renders (e.g. the wasm failed).
    pub async fn open(browser: &'a Browser, url: &str) -> Result<Self> {
        let client = browser.client();
        client
            .goto(url)
            .await
            .with_context(|| format!("loading {url}"))?;
        let page = Self { client };
        page.wait_for("the app to render its status", |s| s.state.clone())
            .await?;
        Ok(page)
    }

    /// Reads the page's state now.
    ///
    /// # Errors
    /// When the script fails or the answer does not fit [`Snapshot`].
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let value = self
            .client
            .execute(SNAPSHOT_JS, Vec::new())
            .await
            .context("reading the page")?;
        serde_json::from_value(value).context("decoding the page's state")
    }

    /// Looks at the page every 50 ms until `check` returns `Some`, for at
    /// most [`WAIT`].
    ///
    /// # Errors
    /// When the time is up (with `what` and the last state seen), or the page
    /// cannot be read.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        mut check: impl FnMut(&Snapshot) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            let snapshot = self.snapshot().await?;
            if let Some(found) = check(&snapshot) {
                return Ok(found);
            }
            if Instant::now() > deadline {
                bail!(
                    "gave up after {WAIT:?} waiting for {what}; the page showed {}",
                    snapshot.summary()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Like [`Page::wait_for`] with a yes/no condition; returns the snapshot
    /// in which it held.
    ///
    /// # Errors
    /// As [`Page::wait_for`].
    pub async fn wait_until(
        &self,
        what: &str,
        mut holds: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Snapshot> {
        self.wait_for(what, |s| holds(s).then(|| s.clone())).await
    }

    /// Clicks the element matching `css`.
    ///
    /// # Errors
    /// When there is no such element or it cannot be clicked.
    pub async fn click(&self, css: &str) -> Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?
            .click()
            .await
            .with_context(|| format!("clicking {css}"))?;
        Ok(())
    }

    /// Replaces the text of the input matching `css` as a person would:
    /// select all, delete, type `text`.
    ///
    /// # Errors
    /// When there is no such element or it does not take the keys.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let input = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?;
        let keys = format!(
            "{}a{}{}{text}",
            char::from(Key::Control),
            char::from(Key::Null),
            char::from(Key::Backspace)
        );
        input
            .send_keys(&keys)
            .await
            .with_context(|| format!("typing into {css}"))?;
        Ok(())
    }

    /// The current value of the input matching `css`.
    ///
    /// # Errors
    /// When there is no such element.
    pub async fn value(&self, css: &str) -> Result<String> {
        let input = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?;
        Ok(input.prop("value").await?.unwrap_or_default())
    }

    /// Runs `script` in the page (a function body: `arguments` and
    /// `return` as in WebDriver's execute) and returns what it returned.
    ///
    /// # Errors
    /// When the script throws.
    pub async fn run(
        &self,
        script: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        self.client
            .execute(script, args)
            .await
            .context("running a script in the page")
    }

    /// Saves a PNG screenshot of the window.
    ///
    /// # Errors
    /// When the screenshot cannot be taken or written.
    pub async fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        let png = self.client.screenshot().await?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// Asserts that `rows` are newest first: sequence numbers strictly decrease
/// down the list within one server run.
///
/// # Errors
/// Names the first pair out of order.
pub fn check_newest_first(rows: &[Row]) -> Result<()> {
    let events: Vec<&Row> = rows.iter().filter(|row| row.kind == "event").collect();
    for pair in events.windows(2) {
        let (upper, lower) = (pair[0], pair[1]);
        if upper.epoch == lower.epoch && upper.seq <= lower.seq {
            bail!(
                "row {:?} is above row {:?}: the list is not newest first",
                upper.id,
                lower.id
            );
        }
    }
    Ok(())
}
