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

/// Names what has the keyboard focus, as [`Snapshot::focus`] does.
const FOCUS_JS: &str = r#"
const active = document.activeElement;
if (!active || active === document.body) { return null; }
if (active.id) { return active.id; }
if (active.dataset && active.dataset.key !== undefined) { return 'row:' + active.dataset.key; }
if (active.dataset && active.dataset.follow) { return 'topic:' + active.dataset.follow; }
return active.tagName.toLowerCase() + ':' + (active.textContent || '').trim().slice(0, 30);
"#;

/// Reads the page's state; see [`Snapshot`].
const SNAPSHOT_JS: &str = r#"
const text = (sel) => { const el = document.querySelector(sel); return el ? el.textContent.trim() : null; };
const shown = (sel) => { const el = document.querySelector(sel); return el && !el.hidden ? el.textContent.trim() : null; };
const num = (v) => (v === undefined || v === null || v === '' || isNaN(Number(v))) ? null : Number(v);
const data = (sel, key) => { const el = document.querySelector(sel); return el ? num(el.dataset[key]) : null; };
const status = document.querySelector('#status');
const pause = document.querySelector('#pause');
const details = document.querySelector('#details');
const open = details && !details.hidden;
const active = document.activeElement;
const download = document.querySelector('#record-download');
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
  http_version: text('#transport-http'),
  advised_retry: text('#transport-retry'),
  offset_ms: data('#transport-offset', 'ms'),
  rtt_ms: data('#transport-offset', 'rttMs'),
  p50_ms: data('#latency-now', 'p50'),
  p99_ms: data('#latency-now', 'p99'),
  chart_points: data('#latency-chart', 'points'),
  hint_buffering: text('#hint-buffering'),
  hint_limit: text('#hint-limit'),
  timeline: Array.from(document.querySelectorAll('#timeline li')).map((li) => [li.dataset.kind, li.textContent]),
  details_sse: open ? text('#details-sse') : null,
  details_json: open ? text('#details-json') : null,
  details_curl: open ? text('#details-curl') : null,
  details_copied: open ? text('#details-copied') : null,
  search_count: text('#search-count') || null,
  topics: Array.from(document.querySelectorAll('#topic-list tbody tr[data-topic]')).map((tr) => tr.dataset.topic),
  recording: (document.querySelector('#record') || {}).ariaPressed === 'true',
  record_status: text('#record-status'),
  record_url: download ? download.href : null,
  record_name: download ? download.getAttribute('download') : null,
  focus: active ? (active.id || (active.dataset && active.dataset.key !== undefined ? 'row:' + active.dataset.key
      : (active.dataset && active.dataset.follow ? 'topic:' + active.dataset.follow
      : active.tagName.toLowerCase() + ':' + (active.textContent || '').trim().slice(0, 30)))) : null,
  rows: Array.from(document.querySelectorAll('#messages li')).map((li) => ({
    kind: li.dataset.kind || '',
    id: li.dataset.id || null,
    epoch: num(li.dataset.epoch),
    seq: num(li.dataset.seq),
    topic: li.dataset.topic || null,
    reason: li.dataset.reason || null,
    message: (li.querySelector('.message') || li).textContent,
    key: num(li.dataset.key),
    latency: num(li.dataset.latency),
    replayed: li.dataset.replayed === 'true',
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
    /// The list's key (`data-key`).
    pub key: Option<u64>,
    /// Its latency in ms, once the page has a clock offset.
    pub latency: Option<f64>,
    /// Whether the server replayed it at a resume.
    pub replayed: bool,
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
    /// The transport panel's HTTP version.
    pub http_version: Option<String>,
    /// The transport panel's advised retry delay.
    pub advised_retry: Option<String>,
    /// The clock offset estimate, in ms (server minus page).
    pub offset_ms: Option<f64>,
    /// The round trip of that estimate.
    pub rtt_ms: Option<f64>,
    /// The live p50 latency.
    pub p50_ms: Option<f64>,
    /// The live p99 latency.
    pub p99_ms: Option<f64>,
    /// Points on the latency chart.
    pub chart_points: Option<f64>,
    /// The bulk-arrival hint, when shown.
    pub hint_buffering: Option<String>,
    /// The connection-limit hint, when shown.
    pub hint_limit: Option<String>,
    /// The transport timeline, newest first: (kind, text).
    pub timeline: Vec<(String, String)>,
    /// The open event details: its SSE lines.
    pub details_sse: Option<String>,
    /// Its pretty JSON.
    pub details_json: Option<String>,
    /// Its resume command.
    pub details_curl: Option<String>,
    /// What the copy button said.
    pub details_copied: Option<String>,
    /// "N of M rows" while searching.
    pub search_count: Option<String>,
    /// The live topics listed.
    pub topics: Vec<String>,
    /// Whether a recording runs.
    pub recording: bool,
    /// The recorder's status line.
    pub record_status: Option<String>,
    /// The recording's object URL, once stopped.
    pub record_url: Option<String>,
    /// The recording's file name.
    pub record_name: Option<String>,
    /// What has the keyboard focus: its id, `row:<key>`, `topic:<name>`,
    /// or `<tag>:<text>`.
    pub focus: Option<String>,
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

/// Keys for [`Page::press`]: WebDriver's codes for the keys the tests use.
pub mod keys {
    /// Tab.
    pub const TAB: char = '\u{E004}';
    /// Shift (held with the next key).
    pub const SHIFT: char = '\u{E008}';
    /// Enter.
    pub const ENTER: char = '\u{E007}';
    /// Escape.
    pub const ESCAPE: char = '\u{E00C}';
    /// Arrow down.
    pub const DOWN: char = '\u{E015}';
    /// Arrow up.
    pub const UP: char = '\u{E013}';
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

    /// What has the keyboard focus (see [`Snapshot::focus`]); `None` for
    /// the page itself.
    ///
    /// # Errors
    /// When the script fails.
    pub async fn focused(&self) -> Result<Option<String>> {
        let value = self.client.execute(FOCUS_JS, Vec::new()).await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        self.client
    }

    /// Presses `key` (down, then up) wherever the focus is, as a keyboard
    /// does: [`keys`] or a character.
    ///
    /// # Errors
    /// When WebDriver refuses the actions.
    pub async fn press(&self, key: char) -> Result<()> {
        self.press_with(None, key).await
    }

    /// Presses `key` while holding `modifier` (e.g. [`keys::SHIFT`]).
    ///
    /// # Errors
    /// When WebDriver refuses the actions.
    pub async fn press_with(&self, modifier: Option<char>, key: char) -> Result<()> {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let mut actions = KeyActions::new("keyboard".to_owned());
        if let Some(modifier) = modifier {
            actions = actions.then(KeyAction::Down { value: modifier });
        }
        actions = actions
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        if let Some(modifier) = modifier {
            actions = actions.then(KeyAction::Up { value: modifier });
        }
        self.client
            .perform_actions(actions)
            .await
            .context("pressing a key")?;
        Ok(())
    }

    /// Runs `script` (the body of an async function whose last argument is
    /// the callback to call with the result) and returns what it passed.
    ///
    /// # Errors
    /// When the script fails or times out.
    pub async fn run_async(&self, script: &str) -> Result<serde_json::Value> {
        self.client
            .execute_async(script, Vec::new())
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
