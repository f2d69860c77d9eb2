//! `server replay` and `GET /time` over real TCP: a recording is published
//! back in order with its topics and pace, a refusal stops it with the
//! server's status and message, events due together go as batches, and
//! the clock answers.

use crate::common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{get, start, Sse};
use server::replay::{replay, ReplayArgs, ReplayError};
use shared::{Recorded, RecordedEvent, ResetNotice, ResetReason, ServerEvent, ServerTime};

fn event(seq: u64, topic: &str, message: &str) -> Recorded {
    Recorded::Event(ServerEvent {
        id: Default::default(),
        seq,
        topic: topic.to_owned(),
        message: message.to_owned(),
        time: "2026-12-01T09:23:06.527Z".to_owned(),
    })
}

fn recording(lines: &[(u64, Recorded)]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let mut text = String::new();
    for (offset_ms, item) in lines {
        let line = RecordedEvent {
            offset_ms: *offset_ms,
            item: item.clone(),
        };
        text.push_str(&serde_json::to_string(&line).expect("serializes"));
        text.push('\n');
    }
    std::fs::write(file.path(), text).expect("write the recording");
    file
}

fn args(file: &tempfile::NamedTempFile, addr: std::net::SocketAddr, extra: &[&str]) -> ReplayArgs {
    args_to(file, &format!("http://{addr}"), extra)
}

/// The replay arguments for `file` to the URL `to`, then `extra`.
fn args_to(file: &tempfile::NamedTempFile, to: &str, extra: &[&str]) -> ReplayArgs {
    let mut argv = vec![
        "server replay".to_owned(),
        file.path().display().to_string(),
        "--to".to_owned(),
        to.to_owned(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    <ReplayArgs as clap::Parser>::try_parse_from(argv).expect("valid replay arguments")
}

#[tokio::test]
async fn a_recording_is_published_in_order_with_its_topics_at_its_pace() {
    let server = start(&[]).await;
    let epoch = get(server.addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch");
    let file = recording(&[
        (0, event(10, "news", "first")),
        (100, event(11, "ticker", "second")),
        (
            150,
            Recorded::Reset(ResetNotice {
                reason: ResetReason::HistoryExceeded,
                requested: Some("1-1".to_owned()),
                missed_from: Some(12),
                missed_to: Some(20),
                missed_count: Some(9),
                resume_seq: 21,
                message: "missed".to_owned(),
            }),
        ),
        (
            400,
            event(21, "news", "third, with \"quotes\"\nand a line break"),
        ),
    ]);
    let started = Instant::now();
    let summary = replay(&args(&file, server.addr, &["--speed", "2"]))
        .await
        .expect("the replay succeeds");
    // 400 ms recorded, twice as fast.
    assert!(started.elapsed() >= Duration::from_millis(200), "{summary}");
    assert_eq!(
        (summary.published, summary.topics, summary.resets),
        (3, 2, 1)
    );

    let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-0"))).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let (_, event) = sse.next_message().await;
        got.push((event.topic, event.message));
    }
    assert_eq!(
        got,
        [
            ("news".to_owned(), "first".to_owned()),
            ("ticker".to_owned(), "second".to_owned()),
            (
                "news".to_owned(),
                "third, with \"quotes\"\nand a line break".to_owned()
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_refusal_stops_the_replay_with_the_servers_status_and_message() {
    let server = start(&["--publish-token", "sesame"]).await;
    let file = recording(&[(0, event(1, "a", "one")), (10, event(2, "a", "two"))]);
    let error = replay(&args(&file, server.addr, &[]))
        .await
        .expect_err("refused without the token");
    let ReplayError::Refused {
        line,
        status,
        error: code,
        ..
    } = &error
    else {
        panic!("not a refusal: {error}");
    };
    assert_eq!((*line, *status, code.as_str()), (1, 401, "unauthorized"));
    assert!(
        error
            .to_string()
            .starts_with("line 1: the server refused the publish with 401: unauthorized: "),
        "{error}"
    );

    let summary = replay(&args(
        &file,
        server.addr,
        &["--token", "sesame", "--speed", "100"],
    ))
    .await
    .expect("accepted with the token");
    assert_eq!(summary.published, 2);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_line_publishes_nothing() {
    let server = start(&[]).await;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        file.path(),
        "{\"offset_ms\":0,\"event\":{\"id\":\"00000000-0000-0000-0000-000000000000\",\"seq\":1,\"topic\":\"a\",\"message\":\"m\",\"time\":\"t\"}}\n\nnot json\n",
    )
    .expect("write");
    let error = replay(&args(&file, server.addr, &[]))
        .await
        .expect_err("a bad line");
    assert!(
        matches!(error, ReplayError::Line { line: 3, .. }),
        "{error}"
    );
    assert_eq!(
        common::metric(server.addr, "sse_events_published_total").await,
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let file = recording(&[(0, event(1, "a", "one"))]);
    let error = replay(&args(&file, addr, &[]))
        .await
        .expect_err("nothing listens");
    assert!(
        error
            .to_string()
            .starts_with(&format!("line 1: cannot publish to {addr}: ")),
        "{error}"
    );
}

#[tokio::test]
async fn time_answers_the_servers_clock_uncached() {
    let server = start(&[]).await;
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let answer = get(server.addr, "/time").await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["cache-control"], "no-store");
    let time: ServerTime = serde_json::from_value(answer.json()).expect("a ServerTime");
    assert!(
        (before..=after).contains(&time.unix_ms),
        "{before} {time:?} {after}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_endless_line_is_cut_at_the_limit_and_named() {
    let server = start(&[]).await;
    let zero = std::path::Path::new("/dev/zero");
    let argv = [
        "server replay",
        "/dev/zero",
        "--to",
        &format!("http://{}", server.addr),
    ];
    let replay_args = <ReplayArgs as clap::Parser>::try_parse_from(argv).expect("valid");
    let error = replay(&replay_args).await.expect_err("a line without end");
    assert_eq!(
        error.to_string(),
        format!(
            "line 1 of {} is longer than 1048576 bytes (--max-line-bytes); nothing was published",
            zero.display()
        )
    );
    // The limit is the option's, and a line of exactly the limit is read.
    let file = recording(&[(0, event(1, "a", "one")), (5, event(2, "a", "two"))]);
    let longest = std::fs::read_to_string(file.path())
        .unwrap()
        .lines()
        .map(str::len)
        .max()
        .unwrap();
    let summary = replay(&args(
        &file,
        server.addr,
        &["--max-line-bytes", &longest.to_string()],
    ))
    .await
    .expect("lines within the limit");
    assert_eq!(summary.published, 2);
    let error = replay(&args(
        &file,
        server.addr,
        &["--max-line-bytes", &(longest - 1).to_string()],
    ))
    .await
    .expect_err("a line over the limit");
    assert!(
        matches!(error, ReplayError::LineTooLong { line: 1, .. }),
        "{error}"
    );
    assert_eq!(
        common::metric(server.addr, "sse_events_published_total").await,
        2,
        "nothing more was published"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_offset_beyond_30_days_and_odd_speeds_are_refused_up_front() {
    let server = start(&[]).await;
    let file = recording(&[
        (0, event(1, "a", "one")),
        (10_000_000_000_000_000_000, event(2, "a", "never")),
    ]);
    let error = replay(&args(&file, server.addr, &[]))
        .await
        .expect_err("an offset for ever away");
    assert!(
        matches!(
            error,
            ReplayError::OffsetTooLate {
                line: 2,
                offset_ms: 10_000_000_000_000_000_000,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("beyond 30 days"), "{error}");
    assert_eq!(
        common::metric(server.addr, "sse_events_published_total").await,
        0,
        "the first line was not published either"
    );
    let good = recording(&[(0, event(1, "a", "one"))]);
    for bad in ["1e-300", "0", "1e400", "-1"] {
        let argv = [
            "server replay".to_owned(),
            good.path().display().to_string(),
            "--to".to_owned(),
            format!("http://{}", server.addr),
            format!("--speed={bad}"),
        ];
        let error = <ReplayArgs as clap::Parser>::try_parse_from(argv)
            .expect_err("a speed out of bounds")
            .to_string();
        assert!(
            error.contains("is not a speed from 0.01 to 1000000"),
            "{bad}: {error}"
        );
        assert!(error.len() < 300, "a short message: {error}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_recording_is_published_over_https_trusting_the_given_certificate_only() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = common::make_cert(dir.path(), "replay");
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let server = start(&["--tls-cert", &cert_arg, "--tls-key", &key_arg]).await;
    let file = recording(&[(0, event(1, "a", "one")), (10, event(2, "b", "two"))]);
    let to = format!("https://{}", server.addr);
    let https = |extra: &[&str]| {
        let mut extra = extra.to_vec();
        extra.extend(["--speed", "100"]);
        args_to(&file, &to, &extra)
    };

    // The system's roots do not sign it: refused at the handshake, nothing
    // published.
    let error = replay(&https(&[]))
        .await
        .expect_err("an unknown issuer is not trusted");
    let ReplayError::Connection { line, reason, .. } = &error else {
        panic!("not a connection error: {error}");
    };
    assert_eq!(*line, 1);
    assert!(reason.contains("UnknownIssuer"), "{reason}");

    let summary = replay(&https(&["--ca-cert", &cert_arg]))
        .await
        .expect("published over HTTPS");
    assert_eq!((summary.published, summary.topics), (2, 2));

    // A --ca-cert that holds no certificate stops the replay before it
    // connects.
    let error = replay(&https(&["--ca-cert", &key_arg]))
        .await
        .expect_err("a key is not a certificate");
    assert!(matches!(error, ReplayError::CaCert { .. }), "{error}");
    assert!(
        error.to_string().ends_with("holds no PEM certificate"),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test]
async fn events_due_together_go_as_batches_of_at_most_the_batch_size() {
    const EVENTS: u64 = 1200;
    // Every event at offset 0: all are due at once.
    let lines: Vec<(u64, Recorded)> = (1..=EVENTS)
        .map(|i| (0, event(i, ["a", "b"][i as usize % 2], &format!("m{i}"))))
        .collect();
    let file = recording(&lines);
    for (extra, requests) in [
        (&[][..], 2),
        (&["--batch", "500"][..], 3),
        (&["--batch", "1"][..], EVENTS),
    ] {
        let server = start(&[]).await;
        let epoch = get(server.addr, "/healthz").await.json()["epoch"]
            .as_u64()
            .expect("epoch");
        let summary = replay(&args(&file, server.addr, extra))
            .await
            .expect("the replay succeeds");
        assert_eq!(
            (summary.published, summary.requests, summary.topics),
            (EVENTS, requests, 2),
            "{extra:?}: {summary}"
        );
        // In the recorded order, whatever the batches.
        let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-0"))).await;
        for i in 1..=EVENTS {
            let (_, got) = sse.next_message().await;
            assert_eq!((got.seq, got.message), (i, format!("m{i}")), "{extra:?}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_refused_batch_names_the_recordings_line_and_publishes_nothing() {
    let server = start(&["--max-body", "100"]).await;
    let long = "x".repeat(200);
    let file = recording(&[
        (0, event(1, "a", "one")),
        (0, event(2, "a", "two")),
        (0, event(3, "a", &long)),
        (0, event(4, "a", "four")),
    ]);
    let error = replay(&args(&file, server.addr, &[]))
        .await
        .expect_err("the long event is refused");
    let ReplayError::Refused {
        line,
        status,
        error: code,
        message,
    } = &error
    else {
        panic!("not a refusal: {error}");
    };
    assert_eq!(
        (*line, *status, code.as_str(), message.as_str()),
        (
            3,
            413,
            "payload_too_large",
            "the body is larger than the limit of 100 bytes"
        )
    );
    assert_eq!(
        common::metric(server.addr, "sse_events_published_total").await,
        0,
        "the batch was refused whole"
    );
    server.stop().await;
}
