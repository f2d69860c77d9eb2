//! `POST /publish` over real TCP: the good answer, every bad input's exact
//! status and error body, and that refused input changes nothing.

use crate::common;

use bytes::Bytes;
use common::{fetch, get, metric, publish_raw, start, Answer, Sse};
use http_body_util::Full;
use hyper::Request;
use shared::{ErrorBody, Item, PublishResponse};

fn error_of(answer: &Answer) -> ErrorBody {
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
}

fn assert_error(answer: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    let error = error_of(answer);
    assert_eq!(error.error, code);
    assert_eq!(error.message, message);
}

async fn post(addr: std::net::SocketAddr, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = Request::post("/publish");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    fetch(
        addr,
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn a_good_publish_answers_with_the_stored_event() {
    let server = start(&[]).await;
    let answer = publish_raw(server.addr, r#"{"message":"hello","topic":"news"}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let stored: PublishResponse = serde_json::from_str(&answer.body).expect("PublishResponse");
    let epoch = get(server.addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch");
    assert_eq!(stored.seq, 1);
    assert_eq!(stored.event_id, format!("{epoch}-1"));
    assert_eq!(stored.topic, "news");
    let default = publish_raw(server.addr, r#"{"message":"no topic"}"#).await;
    assert_eq!(default.json()["topic"], "default");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_its_status_and_error_and_changes_nothing() {
    let server = start(&["--max-body", "100"]).await;
    let addr = server.addr;
    let mut watcher = Sse::open(addr, "/stream", None).await;
    assert_eq!(
        watcher.next_item().await,
        Some(Item::Comment(" stream open".into()))
    );

    let json = [("content-type", "application/json")];
    assert_error(
        &post(addr, &json, "{\"message\": ").await,
        400,
        "invalid_json",
        "the body is not valid JSON: EOF while parsing a value at line 1 column 12",
    );
    assert_error(
        &post(addr, &json, "not json").await,
        400,
        "invalid_json",
        "the body is not valid JSON: expected ident at line 1 column 2",
    );
    assert_error(
        &post(addr, &json, "{\"topic\":\"a\"}").await,
        400,
        "invalid_body",
        "the JSON body is not a publish request: missing field `message` at line 1 column 13",
    );
    assert_error(
        &post(addr, &json, "{\"message\":\"x\",\"extra\":1}").await,
        400,
        "invalid_body",
        "the JSON body is not a publish request: unknown field `extra`, expected `message` or `topic` at line 1 column 22",
    );
    assert_error(
        &post(addr, &json, "{\"message\":42}").await,
        400,
        "invalid_body",
        "the JSON body is not a publish request: invalid type: integer `42`, expected a string at line 1 column 13",
    );
    assert_error(
        &post(addr, &json, "{\"message\":\"  \"}").await,
        400,
        "empty_message",
        "message must not be empty",
    );
    assert_error(
        &post(addr, &json, "{\"message\":\"x\",\"topic\":\"a/b\"}").await,
        400,
        "invalid_topic",
        "topic \"a/b\" contains '/'; use ASCII letters, digits, '-', '_' and '.'",
    );
    let too_big = format!("{{\"message\":\"{}\"}}", "x".repeat(200));
    assert_error(
        &post(addr, &json, &too_big).await,
        413,
        "payload_too_large",
        "the body is larger than the limit of 100 bytes",
    );
    // Without a Content-Length the limit holds while reading.
    let chunks = futures_util::stream::iter((0..20).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(
            b"xxxxxxxxxx",
        )))
    }));
    let answer = fetch_streamed(addr, chunks).await;
    assert_error(
        &answer,
        413,
        "payload_too_large",
        "the body is larger than the limit of 100 bytes",
    );
    assert_error(
        &post(
            addr,
            &[("content-type", "text/plain")],
            "{\"message\":\"x\"}",
        )
        .await,
        415,
        "unsupported_media_type",
        "content type text/plain is not accepted; send Content-Type: application/json (or application/x-ndjson for a batch)",
    );
    assert_error(
        &post(addr, &[], "{\"message\":\"x\"}").await,
        415,
        "unsupported_media_type",
        "content type none is not accepted; send Content-Type: application/json (or application/x-ndjson for a batch)",
    );
    assert_error(
        &get(addr, "/publish").await,
        405,
        "method_not_allowed",
        "method not allowed for this endpoint",
    );
    assert_error(
        &get(addr, "/nowhere").await,
        404,
        "not_found",
        "no such endpoint; see GET / for the list",
    );

    // Nothing was stored or sent: the next good publish is seq 1 and is the
    // first thing the watcher sees.
    assert_eq!(metric(addr, "sse_events_published_total").await, 0);
    assert_eq!(metric(addr, "sse_publish_errors_total").await, 11);
    let good = publish_raw(addr, "{\"message\":\"finally\"}").await;
    assert_eq!(good.json()["seq"], 1);
    let (_, message) = watcher.next_message().await;
    assert_eq!((message.seq, message.message.as_str()), (1, "finally"));
    server.stop().await;
}

async fn fetch_streamed<S>(addr: std::net::SocketAddr, chunks: S) -> Answer
where
    S: futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>
        + Send
        + Sync
        + 'static,
{
    use http_body_util::{BodyExt, StreamBody};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let request = Request::post("/publish")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(StreamBody::new(chunks))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

#[tokio::test]
async fn a_publish_token_is_required_when_configured() {
    let server = start(&["--publish-token", "s3cret"]).await;
    let addr = server.addr;
    let message =
        "publishing needs the header Authorization: Bearer <token> with the server's publish token";
    let json = ("content-type", "application/json");
    let body = "{\"message\":\"x\"}";
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic s3cret"),
        Some("s3cret"),
    ] {
        let mut headers = vec![json];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        let answer = post(addr, &headers, body).await;
        assert_error(&answer, 401, "unauthorized", message);
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
    }
    assert_eq!(metric(addr, "sse_events_published_total").await, 0);
    let ok = post(addr, &[json, ("authorization", "Bearer s3cret")], body).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.stop().await;
}
