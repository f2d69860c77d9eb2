//! A new tab opens on the topic's current state: the page's first stream
//! (and the one after a topic change) asks for the newest events
//! (`?last=N`), as many as the list keeps within the server's
//! `--history-per-topic`, which `GET /topics` tells; never more, so a
//! server that keeps fewer still opens at once instead of answering `400`
//! to an `EventSource` that would retry for ever.

use std::net::SocketAddr;

use anyhow::{ensure, Result};
use e2e::browser::Browser;
use e2e::http;
use e2e::page::{Page, Snapshot};
use e2e::server::{Server, ServerOptions};

/// One published event as the list shows it: seq, topic, message.
type Shown = (u64, String, String);

/// A quiet server (no ticker) with `--history-per-topic per_topic`, or the
/// default (100) for `None`.
fn quiet_server(per_topic: Option<u64>) -> Result<Server> {
    let mut options = ServerOptions::ticker("off");
    if let Some(n) = per_topic {
        options.extra = vec!["--history-per-topic".to_owned(), n.to_string()];
    }
    Server::start(&options)
}

/// Publishes `count` events to `topic`, in order; returns them.
async fn publish_many(addr: SocketAddr, topic: &str, count: usize) -> Result<Vec<Shown>> {
    let mut sent = Vec::new();
    for i in 0..count {
        let message = format!("{topic} event {i}");
        let answer = http::publish(addr, &message, Some(topic)).await?;
        sent.push((answer.seq, topic.to_owned(), message));
    }
    Ok(sent)
}

/// The rows as published events, newest first.
fn shown(view: &Snapshot) -> Vec<Shown> {
    view.events()
        .map(|row| {
            (
                row.seq.unwrap_or(0),
                row.topic.clone().unwrap_or_default(),
                row.message.clone(),
            )
        })
        .collect()
}

/// The newest `n` of `sent`, newest first, as the list shows them.
fn newest_first(sent: &[Shown], n: usize) -> Vec<Shown> {
    sent[sent.len().saturating_sub(n)..]
        .iter()
        .rev()
        .cloned()
        .collect()
}

/// The timeline's `opening` entries, newest first, without their time
/// (`09:23:06.527 opening /stream?last=100 (…)`).
fn openings(view: &Snapshot) -> Vec<&str> {
    view.timeline
        .iter()
        .filter(|(kind, _)| kind == "opening")
        .map(|(_, text)| text.split_once(' ').map_or(text.as_str(), |(_, rest)| rest))
        .collect()
}

/// The timeline (refreshed four times a second, apart from the list) has
/// caught up with the open of the stream at `url`: its newest entry is the
/// open, right after the opening of `url`.
fn timeline_shows_open(view: &Snapshot, url: &str) -> bool {
    view.timeline
        .first()
        .is_some_and(|(kind, _)| kind == "open")
        && openings(view)
            .first()
            .is_some_and(|text| text.starts_with(&format!("opening {url}")))
}

/// The list shows exactly `expected` (newest first), every row replayed
/// (published before the stream opened), nothing else, no reset.
fn ensure_exactly(view: &Snapshot, expected: &[Shown]) -> Result<()> {
    let rows = shown(view);
    ensure!(
        rows == expected,
        "shown {rows:?}, expected {expected:?}: {}",
        view.summary()
    );
    ensure!(
        view.rows.len() == expected.len() && view.events().all(|row| row.replayed),
        "{}",
        view.summary()
    );
    ensure!(view.duplicate_ids().is_empty(), "{}", view.summary());
    Ok(())
}

/// Opens no more than one stream, and was never refused or closed.
fn ensure_one_clean_open(view: &Snapshot, url: &str) -> Result<()> {
    let opened = openings(view);
    ensure!(opened.len() == 1, "{opened:?}");
    ensure!(
        opened[0].starts_with(&format!("opening {url}")),
        "{opened:?}"
    );
    ensure!(
        !view
            .timeline
            .iter()
            .any(|(kind, _)| matches!(kind.as_str(), "closed" | "refused" | "error")),
        "{:?}",
        view.timeline
    );
    ensure!(view.reconnects == Some(0), "{}", view.summary());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tab_shows_the_last_events_at_once_and_a_new_topic_all_it_holds() -> Result<()> {
    let _serial = e2e::serial().await;
    // The default server keeps 100 events a topic: fewer than the list's
    // 500, so 100 is what the page may ask for.
    let server = quiet_server(None)?;
    let addr = server.addr();
    let mut sent = publish_many(addr, "warm", 130).await?;
    let few = publish_many(addr, "few", 3).await?;
    sent.extend(few.iter().cloned());

    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    // Nothing is published from here on: whatever shows came with the open.
    let view = page
        .wait_until("live with the last 100 events", |s| {
            s.live_on("all topics") && s.rows.len() == 100 && timeline_shows_open(s, "/stream?")
        })
        .await?;
    ensure_exactly(&view, &newest_first(&sent, 100))?;
    ensure!(view.received == Some(100), "{}", view.summary());
    ensure!(view.resets().count() == 0, "{}", view.summary());
    ensure_one_clean_open(&view, "/stream?last=100 ")?;

    // Another topic, holding fewer than the page asks for: all of them.
    page.fill("#topic-custom", "few").await?;
    page.click("#topic-apply").await?;
    let view = page
        .wait_until("live on few with its 3 events", |s| {
            s.live_on("few") && s.rows.len() == 3 && timeline_shows_open(s, "/stream?topic=few&")
        })
        .await?;
    ensure_exactly(&view, &newest_first(&few, 3))?;
    let opened = openings(&view);
    ensure!(
        opened.len() == 2 && opened[0].starts_with("opening /stream?topic=few&last=100 "),
        "the limit is known: the switch opens at once with it: {opened:?}"
    );

    // Back to a topic that holds more than the server lets a stream ask for.
    page.fill("#topic-custom", "warm").await?;
    page.click("#topic-apply").await?;
    let view = page
        .wait_until("live on warm with its last 100 events", |s| {
            s.live_on("warm")
                && s.rows.len() == 100
                && timeline_shows_open(s, "/stream?topic=warm&")
        })
        .await?;
    let warm: Vec<Shown> = sent.iter().filter(|e| e.1 == "warm").cloned().collect();
    ensure_exactly(&view, &newest_first(&warm, 100))?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeping_fewer_events_a_topic_opens_with_as_many_and_streams() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = quiet_server(Some(7))?;
    let addr = server.addr();
    let sent = publish_many(addr, "small", 12).await?;

    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    let view = page
        .wait_until("live with the last 7 events", |s| {
            s.live_on("all topics") && s.rows.len() == 7 && timeline_shows_open(s, "/stream?")
        })
        .await?;
    ensure_exactly(&view, &newest_first(&sent, 7))?;
    // The page asked for 7 (not its 500, which is a 400 here), once.
    ensure_one_clean_open(&view, "/stream?last=7 ")?;

    // And the stream is live: a new event arrives, as it happens.
    let live = http::publish(addr, "after the open", Some("small")).await?;
    let view = page
        .wait_until("the live event on top", |s| {
            s.events().next().and_then(|row| row.seq) == Some(live.seq)
        })
        .await?;
    ensure!(view.rows.len() == 8, "{}", view.summary());
    ensure!(!view.rows[0].replayed, "{}", view.summary());
    ensure_one_clean_open(&view, "/stream?last=7 ")?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeping_no_events_a_topic_opens_live_without_last() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = quiet_server(Some(0))?;
    let addr = server.addr();
    publish_many(addr, "gone", 3).await?;

    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live, and the open in the timeline", |s| {
        s.live_on("all topics") && timeline_shows_open(s, "/stream")
    })
    .await?;
    let live = http::publish(addr, "after the open", Some("gone")).await?;
    let view = page
        .wait_until("the live event", |s| s.max_seq() == Some(live.seq))
        .await?;
    // Only the event published after the open: `last=0` is no `last`.
    ensure!(
        shown(&view) == [(live.seq, "gone".to_owned(), "after the open".to_owned())],
        "{}",
        view.summary()
    );
    let opened = openings(&view);
    ensure!(opened == ["opening /stream"], "{opened:?}");
    ensure_one_clean_open(&view, "/stream")?;
    browser.close().await
}
