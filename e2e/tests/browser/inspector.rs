//! The page as a stream inspector, in headless Chromium against the real
//! server binary: latency against a skewed clock, a buffering proxy, the
//! connection limit over seven tabs, an event's details and its resume
//! command run with curl, search, a recording replayed into a fresh server,
//! the keyboard, and the page's frame time at 1,000 events per second.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::browser::Browser;
use e2e::http;
use e2e::page::{keys, Page};
use e2e::proxy::Proxy;
use e2e::server::{server_binary, Server, ServerOptions};
use serde_json::json;
use shared::{EventId, Recorded, RecordedEvent};

/// Runs `command` to its end off the test's threads.
async fn run(command: &mut std::process::Command) -> Result<std::process::Output> {
    let mut command = std::mem::replace(command, std::process::Command::new("true"));
    tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running a command")
}

/// The page's clock is put this far ahead of the server's.
const SKEW_MS: f64 = 3_600_000.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_measured_per_event_and_corrected_for_the_pages_clock() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;

    let live = page
        .wait_until("latency on the newest rows and in the status bar", |s| {
            s.is("live")
                && s.offset_ms.is_some()
                && s.p99_ms.is_some()
                && s.events().take(5).filter(|r| r.latency.is_some()).count() == 5
        })
        .await?;
    // One machine, one clock: the estimate is within its own error.
    let (offset, rtt) = (
        live.offset_ms.unwrap_or(f64::NAN),
        live.rtt_ms.unwrap_or(0.0),
    );
    ensure!(
        offset.abs() <= rtt / 2.0 + 2.0,
        "offset {offset} ms, rtt {rtt} ms"
    );
    // Rows the stream opened with (its last events) were published before
    // it: their figure is their age, shown as `replay`, not a latency.
    for row in live.events().filter(|r| r.latency.is_some() && !r.replayed) {
        let latency = row.latency.unwrap_or(-1.0);
        ensure!((0.0..1000.0).contains(&latency), "{row:?}");
    }
    let (p50, p99) = (live.p50_ms.unwrap_or(-1.0), live.p99_ms.unwrap_or(-1.0));
    ensure!(
        0.0 <= p50 && p50 <= p99 && p99 < 1000.0,
        "p50 {p50} p99 {p99}"
    );
    ensure!(
        live.http_version.as_deref() == Some("http/1.1"),
        "{:?}",
        live.http_version
    );
    ensure!(
        live.advised_retry.as_deref() == Some("2000 ms"),
        "{:?}",
        live.advised_retry
    );

    // The page's clock jumps an hour ahead; the next connection measures
    // the clock again.
    page.client()
        .execute(
            &format!("const now = Date.now.bind(Date); Date.now = () => now() + {SKEW_MS};"),
            Vec::new(),
        )
        .await?;
    page.click("#topic-ticker + span").await?;
    let skewed = page
        .wait_until("an offset of about minus an hour", |s| {
            s.live_on("ticker") && s.offset_ms.is_some_and(|o| (o + SKEW_MS).abs() < 100.0)
        })
        .await?;
    let after = page
        .wait_until("new rows and a live p99 measured with that offset", |s| {
            let newest: Vec<_> = s.events().take(5).collect();
            newest.len() == 5
                && newest
                    .iter()
                    .all(|r| r.latency.is_some_and(|l| (0.0..1000.0).contains(&l)))
                && s.p99_ms.is_some_and(|p| (0.0..1000.0).contains(&p))
        })
        .await?;
    ensure!(
        after.p50_ms.unwrap_or(-1.0) >= 0.0,
        "{:?} {}",
        skewed.offset_ms,
        after.summary()
    );
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_proxy_holds_back_and_releases_at_once_raise_the_buffering_hint() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let proxy = Proxy::start(server.addr()).await?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &proxy.url()).await?;
    let before = page
        .wait_until("live, measured, with rows", |s| {
            s.is("live") && s.offset_ms.is_some() && s.events().count() >= 10
        })
        .await?;
    ensure!(
        before.hint_buffering.is_none(),
        "{:?}",
        before.hint_buffering
    );
    // A steady stream is no bulk arrival, even after a while: twenty more
    // events (a second at 50 ms).
    let seen = before.events().count();
    let later = page
        .wait_until("twenty more events", |s| s.events().count() >= seen + 20)
        .await?;
    ensure!(later.hint_buffering.is_none(), "{:?}", later.hint_buffering);

    // Forty events (two seconds) held back, then released in one write.
    proxy.hold();
    proxy.wait_held(40, Duration::from_secs(20)).await?;
    proxy.release();
    let hint = page
        .wait_for("the buffering hint", |s| s.hint_buffering.clone())
        .await?;
    ensure!(hint.contains("Events arrive in bulk."), "{hint}");
    ensure!(hint.contains("X-Accel-Buffering: no"), "{hint}");
    ensure!(hint.contains("proxy_buffering off;"), "{hint}");
    let view = page.snapshot().await?;
    ensure!(
        view.timeline
            .iter()
            .any(|(kind, text)| kind == "bulk" && text.contains("events arrived at once")),
        "{:?}",
        view.timeline
    );
    // The events were only late: nothing lost, nothing twice, no reconnect.
    ensure!(view.duplicate_ids().is_empty(), "{}", view.summary());
    ensure!(
        view.resets().count() == 0 && view.reconnects == Some(0),
        "{}",
        view.summary()
    );
    let seqs: Vec<u64> = view.events().filter_map(|row| row.seq).collect();
    ensure!(seqs.windows(2).all(|p| p[0] == p[1] + 1), "a gap: {seqs:?}");
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_streams_over_http1_raise_the_connection_limit_hint() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("200ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    let first = page
        .wait_until("live over HTTP/1.1", |s| {
            s.is("live") && s.http_version.as_deref() == Some("http/1.1")
        })
        .await?;
    ensure!(first.hint_limit.is_none(), "{:?}", first.hint_limit);

    // Six more tabs of the page: with this one, seven streams to one origin
    // over HTTP/1.1. Six get a connection; the seventh tab waits.
    page.client()
        .execute(
            "for (let i = 0; i < 6; i++) { window.open(location.href, '_blank'); }",
            Vec::new(),
        )
        .await?;
    let hint = page
        .wait_for("the connection-limit hint", |s| s.hint_limit.clone())
        .await?;
    ensure!(
        hint.contains("6 event streams are open to this origin from 6 tabs of this page"),
        "{hint}"
    );
    ensure!(
        hint.contains("at most 6 connections to one origin"),
        "{hint}"
    );
    ensure!(hint.contains("HTTP/2"), "{hint}");
    ensure!(hint.contains("/stream?topic=a&topic=b"), "{hint}");
    let windows = page.client().windows().await?;
    ensure!(windows.len() == 7, "{} windows", windows.len());
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rows_details_show_its_sse_lines_and_its_resume_command_resumes_after_it() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("100ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    let view = page
        .wait_until("live with rows", |s| {
            s.is("live") && s.events().count() >= 5
        })
        .await?;
    let row = view.events().nth(2).cloned().context("a row")?;
    let (id, seq, key) = (
        row.id.clone().context("an id")?,
        row.seq.context("a seq")?,
        row.key.context("a key")?,
    );
    page.click(&format!("#messages > li[data-key='{key}']"))
        .await?;
    let open = page
        .wait_until("the details", |s| s.details_sse.is_some())
        .await?;

    let sse = open.details_sse.clone().unwrap_or_default();
    let lines: Vec<&str> = sse.lines().collect();
    ensure!(lines.len() == 2, "{sse:?}");
    ensure!(lines[0] == format!("id: {id}"), "{sse:?}");
    ensure!(lines[1].starts_with("data: {\"id\":\""), "{sse:?}");
    let data: shared::ServerEvent = serde_json::from_str(&lines[1]["data: ".len()..])?;
    ensure!(data.seq == seq && data.message == row.message, "{data:?}");
    let json = open.details_json.clone().unwrap_or_default();
    ensure!(json.starts_with("{\n  \"id\": \""), "{json}");
    ensure!(json.contains(&format!("\n  \"seq\": {seq},\n")), "{json}");
    let command = open.details_curl.clone().unwrap_or_default();
    ensure!(
        command == format!("curl -N -H 'Last-Event-ID: {id}' '{}/stream'", server.url()),
        "{command}"
    );
    page.click("#details-copy").await?;
    page.wait_until("the copy button's answer", |s| {
        s.details_copied.as_deref().is_some_and(|t| !t.is_empty())
    })
    .await?;

    // The command, run as it was copied (with a time limit), resumes right
    // after the row's event.
    let script = format!("{command} --silent --max-time 2");
    let output = run(std::process::Command::new("sh").arg("-c").arg(script)).await?;
    let resumed = message_ids(&output.stdout);
    let at: EventId = id.parse()?;
    ensure!(
        resumed.first() == Some(&EventId::new(at.epoch, at.seq + 1).to_string()),
        "curl got {resumed:?} ({} bytes)",
        output.stdout.len()
    );
    // Closing gives the focus back to the row.
    page.click("#details-close").await?;
    let closed = page
        .wait_until("the details closed", |s| s.details_sse.is_none())
        .await?;
    ensure!(
        closed.focus == Some(format!("row:{key}")),
        "{:?}",
        closed.focus
    );
    browser.close().await
}

/// The ordinary events' ids in a stream read whole.
fn message_ids(stream: &[u8]) -> Vec<String> {
    shared::Parser::parse_all(stream)
        .into_iter()
        .filter_map(|item| match item {
            shared::Item::Event(e) if e.event == "message" => Some(e.last_event_id),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_topics_resume_command_asks_for_a_token_and_never_shows_it() -> Result<()> {
    let _serial = e2e::serial().await;
    let secret = "inspector secret";
    let mut options = ServerOptions::ticker("off");
    options.extra = ["--jwt-secret", secret, "--private", "vip"]
        .map(str::to_owned)
        .to_vec();
    let server = Server::start(&options)?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "e2e", "exp": exp, "sse": { "subscribe": ["vip"], "publish": ["vip"] } }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())?,
    )?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live", |s| s.is("live")).await?;
    page.fill("#token", &token).await?;
    page.click("#token-read").await?;
    page.fill("#topic-custom", "vip").await?;
    page.click("#topic-apply").await?;
    page.wait_until("reading the private topic", |s| s.live_on("vip"))
        .await?;
    for message in ["first secret", "second secret"] {
        page.fill("#publish-message", message).await?;
        page.fill("#publish-topic", "vip").await?;
        page.click("#publish-submit").await?;
        page.wait_until("the message in the list", |s| {
            s.events().any(|r| r.message == message)
        })
        .await?;
    }
    let view = page.snapshot().await?;
    let first = view.events().last().cloned().context("the first message")?;
    let second = view
        .events()
        .next()
        .cloned()
        .context("the second message")?;
    page.click(&format!(
        "#messages > li[data-key='{}']",
        first.key.unwrap_or(0)
    ))
    .await?;
    let open = page
        .wait_until("the details", |s| s.details_curl.is_some())
        .await?;
    let command = open.details_curl.clone().unwrap_or_default();
    let id = first.id.clone().unwrap_or_default();
    ensure!(
        command
            == format!(
                "curl -N -H 'Last-Event-ID: {id}' -H 'Authorization: Bearer <token>' '{}/stream?topic=vip'",
                server.url()
            ),
        "{command}"
    );
    ensure!(
        !command.contains(&token),
        "the token is in the page's command"
    );
    // With the placeholder filled in, it resumes right after the first.
    let script = format!(
        "{} --silent --max-time 2",
        command.replace("<token>", &token)
    );
    let output = run(std::process::Command::new("sh").arg("-c").arg(script)).await?;
    let resumed = message_ids(&output.stdout);
    ensure!(
        resumed.first() == second.id.as_ref(),
        "curl got {resumed:?}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_the_kept_rows_as_you_type() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("100ms"))?;
    let addr = server.addr();
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live", |s| s.is("live")).await?;
    let alpha = http::publish(addr, "A needle in the haystack", Some("search.alpha")).await?;
    let beta = http::publish(addr, "Another NEEDLE", Some("search.beta")).await?;
    http::publish(addr, "nothing to see", Some("search.gamma")).await?;
    page.wait_until("the published rows", |s| {
        s.events()
            .filter(|r| r.topic.as_deref().is_some_and(|t| t.starts_with("search.")))
            .count()
            == 3
    })
    .await?;

    page.fill("#search", "needle").await?;
    let found = page
        .wait_until("only the rows with the word, whatever its case", |s| {
            s.rows.len() == 2
        })
        .await?;
    let seqs: Vec<u64> = found.events().filter_map(|r| r.seq).collect();
    ensure!(seqs == [beta.seq, alpha.seq], "{}", found.summary());
    ensure!(
        found
            .search_count
            .as_deref()
            .is_some_and(|c| c.starts_with("2 of ")),
        "{:?}",
        found.search_count
    );
    // The stream goes on meanwhile: new ticker rows are counted, not shown.
    let received = found.received.unwrap_or(0);
    page.wait_until("more events received while searching", |s| {
        s.received.unwrap_or(0) >= received + 5 && s.rows.len() == 2
    })
    .await?;

    // By topic, and by seq.
    page.fill("#search", "search.gamma").await?;
    page.wait_until("the gamma row", |s| {
        s.rows.len() == 1 && s.rows[0].topic.as_deref() == Some("search.gamma")
    })
    .await?;
    page.fill("#search", &format!("#{}", alpha.seq)).await?;
    page.wait_until("the row of that seq", |s| {
        !s.rows.is_empty()
            && s.events().all(|r| {
                r.seq
                    .is_some_and(|q| q.to_string().starts_with(&alpha.seq.to_string()))
            })
            && s.events().any(|r| r.seq == Some(alpha.seq))
    })
    .await?;
    page.fill("#search", "").await?;
    page.wait_until("every row again", |s| {
        s.rows.len() > 3 && s.search_count.is_none()
    })
    .await?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_downloads_as_ndjson_and_server_replay_publishes_it_into_a_fresh_server(
) -> Result<()> {
    let _serial = e2e::serial().await;
    let recorded = Server::start(&ServerOptions::ticker("off"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &recorded.url()).await?;
    page.wait_until("live", |s| s.is("live")).await?;
    page.click("#record").await?;
    page.wait_until("recording", |s| s.recording).await?;
    let sent: Vec<(String, String)> = (0..6)
        .map(|i| {
            let topic = if i % 2 == 0 { "replay.a" } else { "replay.b" };
            (
                topic.to_owned(),
                format!("message {i} with \"quotes\" and ünïcode"),
            )
        })
        .collect();
    for (topic, message) in &sent {
        http::publish(recorded.addr(), message, Some(topic)).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page.wait_until("every message in the list", |s| {
        s.events().count() == sent.len()
    })
    .await?;
    page.click("#record").await?;
    let done = page
        .wait_until("the download link", |s| {
            !s.recording && s.record_url.is_some()
        })
        .await?;
    ensure!(
        done.record_status.as_deref() == Some("Recorded 6 events."),
        "{:?}",
        done.record_status
    );
    let name = done.record_name.clone().context("a file name")?;
    ensure!(
        name.starts_with("events-") && name.ends_with(".ndjson"),
        "{name}"
    );

    // The browser saves the file where it keeps downloads.
    page.click("#record-download").await?;
    let file = browser.downloads().join(&name);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !file.is_file() {
        if std::time::Instant::now() > deadline {
            bail!("{} was not downloaded", file.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&file)?;
    // Kept apart from the browser's profile, which goes when it closes.
    let kept = tempfile::Builder::new().suffix(".ndjson").tempfile()?;
    std::fs::write(kept.path(), &text)?;
    let file = kept.path().to_owned();
    let lines: Vec<RecordedEvent> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line).with_context(|| format!("not a recorded event: {line}"))
        })
        .collect::<Result<_>>()?;
    let got: Vec<(String, String)> = lines
        .iter()
        .filter_map(|line| match &line.item {
            Recorded::Event(e) => Some((e.topic.clone(), e.message.clone())),
            Recorded::Reset(_) => None,
        })
        .collect();
    ensure!(got == sent, "recorded {got:?}");
    ensure!(
        lines.windows(2).all(|p| p[0].offset_ms <= p[1].offset_ms)
            && lines.last().map_or(0, |l| l.offset_ms) >= 400,
        "offsets {:?}",
        lines.iter().map(|l| l.offset_ms).collect::<Vec<_>>()
    );
    browser.close().await?;

    // Replayed into a fresh server, twice as fast.
    let fresh = Server::start(&ServerOptions::ticker("off"))?;
    let mut replay = std::process::Command::new(server_binary()?);
    replay
        .arg("replay")
        .arg(&file)
        .args(["--to", &fresh.url(), "--speed", "2"]);
    let output = run(&mut replay).await?;
    ensure!(
        output.status.success(),
        "server replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    ensure!(
        summary.starts_with("published 6 events to 2 topics"),
        "{summary}"
    );
    let health: serde_json::Value =
        serde_json::from_slice(&http::get(fresh.addr(), "/healthz").await?.body)?;
    let epoch = health["epoch"].as_u64().context("an epoch")?;
    let replayed = http::read_events(fresh.addr(), "/stream", &format!("{epoch}-0"), 6).await?;
    let replayed: Vec<(String, String)> = replayed
        .into_iter()
        .map(|(_, e)| (e.topic, e.message))
        .collect();
    ensure!(replayed == sent, "replayed {replayed:?}");
    Ok(())
}

/// Presses Tab until the focus is on `target`; returns every stop on the way.
async fn tab_to(page: &Page<'_>, target: &str, most: usize) -> Result<Vec<String>> {
    let mut stops = Vec::new();
    for _ in 0..most {
        page.press(keys::TAB).await?;
        let focus = page.focused().await?.unwrap_or_default();
        stops.push(focus.clone());
        if focus == target {
            return Ok(stops);
        }
    }
    bail!("Tab never reached {target}: {stops:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_is_reachable_and_usable_by_keyboard() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("100ms"))?;
    http::publish(server.addr(), "for the list of topics", Some("keys")).await?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live with rows and topics", |s| {
        s.is("live") && s.events().count() >= 3 && s.topics.len() >= 2
    })
    .await?;

    // From the top of the page, Tab visits every control.
    let stops = tab_to(&page, "record", 80).await?;
    let visited: HashSet<&str> = stops.iter().map(String::as_str).collect();
    for control in [
        "topic-all",
        "topic-custom",
        "topic-apply",
        "summary:Live topics",
        "topic:keys",
        "topic:ticker",
        "publish-message",
        "publish-topic",
        "publish-submit",
        "token",
        "token-read",
        "token-forget",
        "pause",
        "clear",
        "search",
        "messages",
        "summary:Transport",
        "record",
    ] {
        ensure!(
            visited.contains(control),
            "Tab skipped {control}: {stops:?}"
        );
    }

    // Into the list, down a row, Enter: the details, with the focus there.
    page.click("#search").await?;
    tab_to(&page, "messages", 3).await?;
    page.press(keys::DOWN).await?;
    page.press(keys::DOWN).await?;
    let row = page.focused().await?.context("a focused row")?;
    ensure!(row.starts_with("row:"), "{row}");
    page.press(keys::ENTER).await?;
    let open = page
        .wait_until("the details", |s| s.details_sse.is_some())
        .await?;
    ensure!(
        open.focus.as_deref() == Some("details-title"),
        "{:?}",
        open.focus
    );
    tab_to(&page, "details-close", 2).await?;
    // The scrollable blocks of lines are stops of their own.
    tab_to(&page, "details-copy", 5).await?;
    // Escape closes them and goes back to the row.
    page.press(keys::ESCAPE).await?;
    let closed = page
        .wait_until("the details closed", |s| s.details_sse.is_none())
        .await?;
    ensure!(
        closed.focus.as_deref() == Some(row.as_str()),
        "{:?}",
        closed.focus
    );

    // `p` pauses and resumes; `/` goes to the search.
    page.press('p').await?;
    page.wait_until("paused by p", |s| s.paused).await?;
    page.press('p').await?;
    page.wait_until("resumed by p", |s| !s.paused).await?;
    page.press('/').await?;
    ensure!(page.focused().await?.as_deref() == Some("search"));
    // In the search field, p is a letter, not a shortcut.
    page.press('p').await?;
    let typed = page.snapshot().await?;
    ensure!(!typed.paused, "{}", typed.summary());
    ensure!(page.value("#search").await? == "p");
    // A topic of the list follows with Enter.
    page.client()
        .execute(
            "document.querySelector('[data-follow=keys]').focus();",
            Vec::new(),
        )
        .await?;
    page.press(keys::ENTER).await?;
    page.wait_until("following the topic", |s| s.live_on("keys"))
        .await?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_up_with_1000_events_a_second_with_the_panels_open() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("1ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live and measured", |s| {
        s.is("live") && s.p99_ms.is_some() && s.rows.len() >= 100
    })
    .await?;
    // A row that moves down the list 1,000 times a second: clicked by script.
    page.client()
        .execute(
            "document.querySelector('#messages > li:nth-child(3)').click();",
            Vec::new(),
        )
        .await?;
    page.wait_until("the details", |s| s.details_sse.is_some())
        .await?;
    // Rows are kept as they are while they move down: the same element. The
    // list is full first; then one row is followed until the list next
    // changes: it must still be in the page, further down, and the list
    // still full.
    page.wait_until("a full list", |s| s.rows.len() == 500)
        .await?;
    let kept = page
        .run_async(
            r#"
const done = arguments[arguments.length - 1];
const list = document.querySelector('#messages');
const row = list.children[1];
const index = () => Array.prototype.indexOf.call(list.children, row);
const from = index();
const observer = new MutationObserver(() => {
  const to = index();
  if (row.isConnected && to === from) return;
  observer.disconnect();
  done({ connected: row.isConnected, from, to, rows: list.children.length });
});
observer.observe(list, { childList: true });
"#,
        )
        .await?;
    ensure!(
        kept["connected"] == json!(true)
            && kept["to"].as_u64() > kept["from"].as_u64()
            && kept["rows"] == json!(500),
        "rows are rebuilt, not moved: {kept}"
    );
    // For 5 s: the frames, the list's redraws and the events that came
    // meanwhile. The page redraws the list at most ten times a second and
    // its other signals once a frame, however fast events come; that is
    // what keeps it responsive, and it holds on a slow machine as well as
    // on a fast one (the frame times are printed, not judged).
    let measured = page
        .run_async(
            r#"
const done = arguments[arguments.length - 1];
const received = () => Number(document.querySelector('#stat-received').textContent);
const list = document.querySelector('#messages');
let redraws = 0;
const observer = new MutationObserver(() => { redraws += 1; });
observer.observe(list, { childList: true });
const gaps = [];
let longTasks = 0;
try { new PerformanceObserver((l) => { longTasks += l.getEntries().length; }).observe({ type: 'longtask' }); } catch (e) {}
const start = performance.now();
const first = received();
let last = start;
const frame = (t) => {
  gaps.push(t - last);
  last = t;
  if (t - start < 5000) { requestAnimationFrame(frame); return; }
  observer.disconnect();
  gaps.sort((a, b) => a - b);
  const at = (q) => gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))];
  done({ seconds: (t - start) / 1000, frames: gaps.length, p50: at(0.5), p95: at(0.95),
         max: gaps[gaps.length - 1], long_tasks: longTasks, redraws,
         events: received() - first });
};
requestAnimationFrame(frame);
"#,
        )
        .await?;
    eprintln!("1,000 events/s with the panels open: {measured}");
    let figure = |name: &str| measured[name].as_f64().unwrap_or(f64::NAN);
    // One redraw of the list is one mutation callback; ten a second, and
    // one more at each end of the window.
    ensure!(
        figure("redraws") <= 10.0 * figure("seconds").ceil() + 2.0,
        "the list is redrawn more often than ten times a second: {measured}"
    );
    ensure!(
        figure("events") > figure("redraws"),
        "events are not batched into redraws: {measured}"
    );
    // The page is not left behind: it reaches the seq the server had
    // published when the window closed.
    let health: serde_json::Value =
        serde_json::from_slice(&http::get(server.addr(), "/healthz").await?.body)?;
    let published = health["last_seq"].as_u64().context("/healthz last_seq")?;
    page.wait_until("the page catching up with the server", |s| {
        s.max_seq().is_some_and(|seq| seq >= published)
    })
    .await?;
    let view = page.snapshot().await?;
    ensure!(
        view.rows.len() == 500 && view.duplicate_ids().is_empty(),
        "{}",
        view.summary()
    );
    browser.close().await
}
