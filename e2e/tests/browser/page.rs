//! The web page in headless Chromium against the real server binary.
//!
//! Each test starts its own server (serving the built `dist/`) and browser;
//! they run one at a time. Every wait polls the page with a deadline.

use anyhow::{ensure, Context, Result};
use e2e::browser::Browser;
use e2e::http;
use e2e::page::{check_newest_first, Page};
use e2e::proxy::Proxy;
use e2e::server::{Server, ServerOptions};
use shared::{DEFAULT_TOPIC, MAX_TOPIC_LEN, TICKER_TOPIC};

/// Rows the page keeps (client::feed::MAX_ROWS).
const MAX_ROWS: usize = 500;

fn only_topic(rows: &[e2e::page::Row], topic: &str) -> bool {
    rows.iter()
        .all(|row| row.kind == "event" && row.topic.as_deref() == Some(topic))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticker_messages_appear_and_keep_coming() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;

    let first = page
        .wait_until("live with at least 3 ticker rows", |s| {
            s.is("live") && s.events().count() >= 3
        })
        .await?;
    let top = first.max_seq().context("a seq")?;
    let later = page
        .wait_until("newer rows to keep arriving", |s| {
            s.max_seq().is_some_and(|seq| seq >= top + 5)
        })
        .await?;

    for row in later.events() {
        ensure!(row.topic.as_deref() == Some(TICKER_TOPIC), "{row:?}");
        ensure!(
            row.message.starts_with("Data pushed from server: ("),
            "{row:?}"
        );
        ensure!(
            row.id.as_deref()
                == Some(&format!(
                    "{}-{}",
                    row.epoch.unwrap_or(0),
                    row.seq.unwrap_or(0)
                )),
            "the row's id is <epoch>-<seq>: {row:?}"
        );
    }
    check_newest_first(&later.rows)?;
    // The newest is the first row: in view without scrolling.
    ensure!(later.rows[0].seq == later.max_seq(), "{}", later.summary());
    ensure!(later.received.unwrap_or(0) >= later.events().count() as u64);
    ensure!(
        later.last_id.as_deref().is_some_and(|id| id.contains('-')),
        "{}",
        later.summary()
    );
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_keeps_the_newest_500_rows_at_a_high_rate() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("4ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;

    let full = page
        .wait_until("more events received than the list keeps", |s| {
            s.received.unwrap_or(0) > MAX_ROWS as u64 + 100 && s.rows.len() == MAX_ROWS
        })
        .await?;
    check_newest_first(&full.rows)?;
    ensure!(
        full.duplicate_ids().is_empty(),
        "{:?}",
        full.duplicate_ids()
    );
    let seqs: Vec<u64> = full.events().filter_map(|row| row.seq).collect();
    // The kept rows are a contiguous run of the newest events.
    ensure!(
        seqs.windows(2).all(|pair| pair[0] == pair[1] + 1),
        "the rows skip events: {seqs:?}"
    );
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_from_the_form_appears_in_the_list() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live", |s| s.is("live")).await?;

    let text = "Hello from the end-to-end test <b>not bold</b> & friends";
    page.fill("#publish-message", text).await?;
    page.fill("#publish-topic", "e2e.form").await?;
    page.click("#publish-submit").await?;

    let row = page
        .wait_for("the published message in the list", |s| {
            s.events()
                .find(|row| row.topic.as_deref() == Some("e2e.form"))
                .cloned()
        })
        .await?;
    ensure!(row.message == text, "shown as text, not markup: {row:?}");
    let done = page
        .wait_until("the form to confirm", |s| {
            s.publish_result
                .as_deref()
                .is_some_and(|note| note.contains("e2e.form"))
        })
        .await?;
    ensure!(
        done.publish_result
            .as_deref()
            .is_some_and(|note| note.contains(&format!("#{}", row.seq.unwrap_or(0)))),
        "{}",
        done.summary()
    );
    ensure!(done.publish_error.is_none(), "{}", done.summary());
    ensure!(page.value("#publish-message").await?.is_empty());

    // Without a topic the server files it under "default".
    page.fill("#publish-message", "no topic given").await?;
    page.fill("#publish-topic", "").await?;
    page.click("#publish-submit").await?;
    page.wait_until("the message under the default topic", |s| {
        s.events().any(|row| {
            row.message == "no topic given" && row.topic.as_deref() == Some(DEFAULT_TOPIC)
        })
    })
    .await?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_error_is_shown_beside_the_form() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("off"))?;
    // What the server says, asked directly.
    let empty = http::publish_error(server.addr(), r#"{"message":""}"#).await?;
    ensure!(empty.error == "empty_message", "{empty:?}");
    let bad_topic = http::publish_error(
        server.addr(),
        &format!(
            r#"{{"message":"hi","topic":"{}"}}"#,
            "x".repeat(MAX_TOPIC_LEN + 1)
        ),
    )
    .await?;
    ensure!(bad_topic.error == "invalid_topic", "{bad_topic:?}");

    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live", |s| s.is("live")).await?;

    page.click("#publish-submit").await?;
    let shown = page
        .wait_for("the empty-message error", |s| s.publish_error.clone())
        .await?;
    ensure!(
        shown == empty.message,
        "shown {shown:?}, server said {empty:?}"
    );

    page.fill("#publish-message", "hi").await?;
    page.fill("#publish-topic", &"x".repeat(MAX_TOPIC_LEN + 1))
        .await?;
    page.click("#publish-submit").await?;
    page.wait_until("the invalid-topic error", |s| {
        s.publish_error.as_deref() == Some(bad_topic.message.as_str())
    })
    .await?;

    // A good request clears the error.
    page.fill("#publish-topic", "fine").await?;
    page.click("#publish-submit").await?;
    let ok = page
        .wait_until("the error to go away after a good publish", |s| {
            s.publish_error.is_none() && s.events().any(|row| row.topic.as_deref() == Some("fine"))
        })
        .await?;
    ensure!(ok.rows.len() == 1, "{}", ok.summary());
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_the_page_is_live_again_with_a_reset_notice_and_no_duplicates(
) -> Result<()> {
    let _serial = e2e::serial().await;
    let mut server = Server::start(&ServerOptions::ticker("50ms"))?;
    let port = server.addr().port();
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;

    let before = page
        .wait_until("live with rows", |s| {
            s.is("live") && s.events().count() >= 3
        })
        .await?;
    let old_epoch = before.rows[0].epoch.context("an epoch")?;

    server.stop();
    page.wait_until("the status to say reconnecting", |s| s.is("reconnecting"))
        .await?;

    let mut options = ServerOptions::ticker("50ms");
    options.port = port;
    let _restarted = Server::start(&options)?;
    let after = page
        .wait_until(
            "live again with the new run's events below a reset notice",
            |s| {
                let notice = s.rows.iter().position(|row| {
                    row.kind == "reset" && row.reason.as_deref() == Some("server_restarted")
                });
                let new_events = s.rows.iter().position(|row| {
                    row.kind == "event" && row.epoch.is_some_and(|e| e != old_epoch)
                });
                s.is("live") && matches!((new_events, notice), (Some(n), Some(r)) if n < r)
            },
        )
        .await?;

    ensure!(
        after.duplicate_ids().is_empty(),
        "duplicates: {:?}",
        after.duplicate_ids()
    );
    ensure!(after.resets().count() == 1, "{}", after.summary());
    ensure!(after.reconnects.unwrap_or(0) >= 1, "{}", after.summary());
    // Rows of the old run stay below the notice, the new run's above it.
    let notice = after
        .rows
        .iter()
        .position(|row| row.kind == "reset")
        .unwrap_or(0);
    ensure!(
        after.rows[..notice]
            .iter()
            .all(|row| row.epoch != Some(old_epoch))
            && after.rows[notice + 1..]
                .iter()
                .all(|row| row.epoch == Some(old_epoch)),
        "{}",
        after.summary()
    );
    check_newest_first(&after.rows)?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_without_gaps_or_duplicates() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let proxy = Proxy::start(server.addr()).await?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &proxy.url()).await?;

    let before = page
        .wait_until("live with rows", |s| {
            s.is("live") && s.events().count() >= 5
        })
        .await?;
    let at_cut = before.max_seq().context("a seq")?;
    ensure!(proxy.cut() >= 1, "the stream went through the proxy");
    page.wait_until("the status to say reconnecting", |s| s.is("reconnecting"))
        .await?;
    // The browser comes back with Last-Event-ID; the server replays what
    // was published in between, then goes on live.
    let after = page
        .wait_until("live again, well past the cut", |s| {
            s.is("live") && s.max_seq().is_some_and(|seq| seq >= at_cut + 40)
        })
        .await?;

    ensure!(
        after.duplicate_ids().is_empty(),
        "duplicates: {:?}",
        after.duplicate_ids()
    );
    ensure!(
        after.resets().count() == 0,
        "nothing was lost: {}",
        after.summary()
    );
    ensure!(after.reconnects == Some(1), "{}", after.summary());
    check_newest_first(&after.rows)?;
    let seqs: Vec<u64> = after.events().filter_map(|row| row.seq).collect();
    ensure!(
        seqs.windows(2).all(|pair| pair[0] == pair[1] + 1),
        "a gap in the list after the reconnect: {seqs:?}"
    );
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_shows_closed_and_the_page_retries() -> Result<()> {
    let _serial = e2e::serial().await;
    let mut options = ServerOptions::ticker("50ms");
    options.extra = vec!["--max-subscribers".to_owned(), "1".to_owned()];
    let server = Server::start(&options)?;
    // The only subscriber slot is taken: the page's EventSource gets a 503
    // and the browser gives up on it.
    let taken = http::hold_stream(server.addr()).await?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    let closed = page
        .wait_until("the status to say closed, with a retry planned", |s| {
            s.is("closed") && s.retry_note.is_some()
        })
        .await?;
    ensure!(closed.rows.is_empty(), "{}", closed.summary());

    drop(taken);
    page.wait_until("the page's own retry to get through", |s| {
        s.is("live") && s.events().count() >= 2
    })
    .await?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choosing_a_topic_shows_only_that_topic() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let addr = server.addr();
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live with ticker rows", |s| {
        s.is("live") && s.events().count() >= 2
    })
    .await?;

    // ticker: a default message published after the switch must not show,
    // and ticker rows with higher seqs prove it would have arrived by now.
    page.click("#topic-ticker + span").await?;
    page.wait_until("subscribed to ticker", |s| s.live_on(TICKER_TOPIC))
        .await?;
    let skipped = http::publish(addr, "not for the ticker view", Some(DEFAULT_TOPIC)).await?;
    let view = page
        .wait_until("ticker rows newer than the default message", |s| {
            s.max_seq().is_some_and(|seq| seq > skipped.seq)
        })
        .await?;
    ensure!(only_topic(&view.rows, TICKER_TOPIC), "{}", view.summary());

    // default
    page.click("#topic-default + span").await?;
    page.wait_until("subscribed to default", |s| s.live_on(DEFAULT_TOPIC))
        .await?;
    let wanted = http::publish(addr, "for the default view", Some(DEFAULT_TOPIC)).await?;
    let view = page
        .wait_until("the default message", |s| s.max_seq() == Some(wanted.seq))
        .await?;
    ensure!(only_topic(&view.rows, DEFAULT_TOPIC), "{}", view.summary());

    // A custom topic; a bad name is refused by the picker itself.
    page.fill("#topic-custom", "no spaces allowed").await?;
    page.click("#topic-apply").await?;
    page.wait_until("the picker to refuse the name", |s| s.topic_error.is_some())
        .await?;
    page.fill("#topic-custom", "news.e2e").await?;
    page.click("#topic-apply").await?;
    page.wait_until("subscribed to news.e2e", |s| {
        s.live_on("news.e2e") && s.topic_error.is_none()
    })
    .await?;
    http::publish(addr, "elsewhere", Some(DEFAULT_TOPIC)).await?;
    let news = http::publish(addr, "in the news", Some("news.e2e")).await?;
    let view = page
        .wait_until("the news message", |s| s.max_seq() == Some(news.seq))
        .await?;
    ensure!(only_topic(&view.rows, "news.e2e"), "{}", view.summary());
    ensure!(view.rows.len() == 1, "{}", view.summary());

    // Back to all topics.
    page.click("#topic-all + span").await?;
    page.wait_until("all topics again, ticker rows flowing", |s| {
        s.live_on("all topics") && s.events().count() >= 2
    })
    .await?;
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_freezes_the_list_and_clear_empties_it() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live with rows", |s| {
        s.is("live") && s.events().count() >= 2
    })
    .await?;

    page.click("#pause").await?;
    let frozen = page.wait_until("paused", |s| s.paused).await?;
    let received = frozen.received.unwrap_or(0);
    let still = page
        .wait_until("events to keep being counted while paused", |s| {
            s.received.unwrap_or(0) >= received + 10
        })
        .await?;
    ensure!(
        still
            .rows
            .iter()
            .map(|r| &r.id)
            .eq(frozen.rows.iter().map(|r| &r.id)),
        "the list changed while paused: before {} after {}",
        frozen.summary(),
        still.summary()
    );

    page.click("#pause").await?;
    let top = frozen.max_seq().unwrap_or(0);
    let resumed = page
        .wait_until("the list to catch up after resuming", |s| {
            !s.paused && s.max_seq().is_some_and(|seq| seq >= top + 10)
        })
        .await?;
    ensure!(resumed.duplicate_ids().is_empty(), "{}", resumed.summary());

    let newest = resumed.max_seq().unwrap_or(0);
    page.click("#clear").await?;
    let cleared = page
        .wait_until("only rows newer than the clear", |s| {
            s.events()
                .all(|row| row.seq.is_some_and(|seq| seq > newest))
        })
        .await?;
    ensure!(
        cleared.rows.len() < resumed.rows.len(),
        "{}",
        cleared.summary()
    );
    browser.close().await
}

/// Subscribes the page to a custom topic that has no events yet; returns
/// once the stream is live on it.
async fn follow_quiet_topic(page: &Page<'_>, topic: &str) -> Result<()> {
    page.fill("#topic-custom", topic).await?;
    page.click("#topic-apply").await?;
    let view = page
        .wait_until("live on the quiet topic", |s| s.live_on(topic))
        .await?;
    ensure!(view.rows.is_empty(), "{}", view.summary());
    Ok(())
}

/// Publishes two events to `topic` (and ticker events go on meanwhile);
/// returns their seqs.
async fn publish_two(addr: std::net::SocketAddr, topic: &str) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for message in ["while away 1", "while away 2"] {
        seqs.push(http::publish(addr, message, Some(topic)).await?.seq);
    }
    Ok(seqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_topic_misses_nothing_across_the_browsers_own_reconnect() -> Result<()> {
    let _serial = e2e::serial().await;
    // The ticker publishes to another topic all along: the quiet stream's
    // only id is its position.
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let proxy = Proxy::start(server.addr()).await?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &proxy.url()).await?;
    follow_quiet_topic(&page, "quiet.e2e").await?;

    // The network drops, and stays down while events are published.
    proxy.refuse();
    ensure!(proxy.cut() >= 1, "the stream went through the proxy");
    page.wait_until("the status to say reconnecting", |s| s.is("reconnecting"))
        .await?;
    let seqs = publish_two(server.addr(), "quiet.e2e").await?;
    proxy.forward();
    // EventSource reconnects with the position's id as Last-Event-ID.
    let view = page
        .wait_until("both events published while away", |s| {
            s.is("live") && s.events().count() == 2
        })
        .await?;
    let mut shown: Vec<u64> = view.events().filter_map(|row| row.seq).collect();
    shown.reverse();
    ensure!(shown == seqs, "{shown:?} != {seqs:?}: {}", view.summary());
    ensure!(view.resets().count() == 0, "{}", view.summary());
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_topic_misses_nothing_across_the_pages_own_reopen() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = Server::start(&ServerOptions::ticker("50ms"))?;
    let proxy = Proxy::start(server.addr()).await?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &proxy.url()).await?;
    follow_quiet_topic(&page, "quiet.e2e").await?;

    // Reconnects are answered 503: the browser gives up on the stream and
    // the page reopens it itself, with the last id it saw.
    proxy.unavailable();
    ensure!(proxy.cut() >= 1, "the stream went through the proxy");
    page.wait_until("the status to say closed", |s| s.is("closed"))
        .await?;
    let seqs = publish_two(server.addr(), "quiet.e2e").await?;
    proxy.forward();
    let view = page
        .wait_until("both events published while away", |s| {
            s.is("live") && s.events().count() == 2
        })
        .await?;
    let mut shown: Vec<u64> = view.events().filter_map(|row| row.seq).collect();
    shown.reverse();
    ensure!(shown == seqs, "{shown:?} != {seqs:?}: {}", view.summary());
    ensure!(view.resets().count() == 0, "{}", view.summary());
    browser.close().await
}

const JWT_SECRET: &str = "e2e secret";

/// An HS256 token for the e2e server, valid for an hour.
fn jwt(subscribe: &[&str], publish: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({
        "sub": "e2e",
        "exp": exp,
        "sse": { "subscribe": subscribe, "publish": publish },
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).expect("a key"),
    )
    .expect("a token")
}

fn jwt_server() -> Result<Server> {
    let mut options = ServerOptions::ticker("off");
    options.extra = [
        "--jwt-secret",
        JWT_SECRET,
        "--private",
        "vip",
        "--private",
        "secret.*",
    ]
    .map(str::to_owned)
    .to_vec();
    Server::start(&options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_publishes_with_a_token_and_reads_a_private_topic_through_the_cookie() -> Result<()>
{
    let _serial = e2e::serial().await;
    let server = jwt_server()?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live", |s| s.is("live")).await?;

    // Without a token the server refuses, and the page says why.
    page.fill("#publish-message", "for vips").await?;
    page.fill("#publish-topic", "vip").await?;
    page.click("#publish-submit").await?;
    let refused = page
        .wait_for("the publish refusal", |s| s.publish_error.clone())
        .await?;
    ensure!(refused.contains("publishing needs"), "{refused}");

    // With a token that may publish and read vip.
    page.fill("#token", &jwt(&["vip"], &["vip"])).await?;
    page.click("#token-read").await?;
    page.wait_until("reading with the token", |s| {
        s.is("live")
            && s.token_state
                .as_deref()
                .is_some_and(|t| t.contains("Reading with this token"))
    })
    .await?;
    page.fill("#topic-custom", "vip").await?;
    page.click("#topic-apply").await?;
    page.wait_until("subscribed to the private topic", |s| s.live_on("vip"))
        .await?;
    page.fill("#publish-message", "for vips").await?;
    page.fill("#publish-topic", "vip").await?;
    page.click("#publish-submit").await?;
    let view = page
        .wait_until("the private message in the list", |s| {
            s.publish_error.is_none()
                && s.events()
                    .any(|row| row.topic.as_deref() == Some("vip") && row.message == "for vips")
        })
        .await?;
    ensure!(only_topic(&view.rows, "vip"), "{}", view.summary());
    ensure!(view.topic_refused.is_none(), "{}", view.summary());
    browser.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_private_topic_is_shown_clearly_not_retried_for_ever() -> Result<()> {
    let _serial = e2e::serial().await;
    let server = jwt_server()?;
    let browser = Browser::start().await?;
    let page = Page::open(&browser, &server.url()).await?;
    page.wait_until("live", |s| s.is("live")).await?;
    // A token for vip only, then a topic it does not cover: 403.
    page.fill("#token", &jwt(&["vip"], &[])).await?;
    page.click("#token-read").await?;
    page.wait_until("live with the token", |s| s.is("live"))
        .await?;
    page.fill("#topic-custom", "secret.plans").await?;
    page.click("#topic-apply").await?;
    let shown = page
        .wait_for("the 403 beside the topic picker", |s| {
            s.topic_refused.clone()
        })
        .await?;
    ensure!(
        shown == "Not allowed with this token (403): the token does not allow reading secret.plans",
        "{shown}"
    );
    let view = page.snapshot().await?;
    ensure!(view.is("closed"), "{}", view.summary());
    ensure!(
        view.retry_note.is_none(),
        "no endless retry: {}",
        view.summary()
    );
    // No token at all: 401.
    page.click("#token-forget").await?;
    let shown = page
        .wait_until("the 401 beside the topic picker", |s| {
            s.topic_refused
                .as_deref()
                .is_some_and(|t| t.contains("(401)"))
        })
        .await?;
    ensure!(
        shown.topic_refused.as_deref()
            == Some("Not allowed without a valid token (401): reading secret.plans needs a token"),
        "{}",
        shown.summary()
    );
    // A public topic works again.
    page.click("#topic-all + span").await?;
    page.wait_until("live on all topics", |s| {
        s.live_on("all topics") && s.topic_refused.is_none()
    })
    .await?;
    browser.close().await
}
