//! The page's HTTP calls: `POST /publish`, and the probe of `/stream` that
//! tells why a stream was refused (an `EventSource` never sees the status).

use gloo_net::http::Request;
use shared::{ErrorBody, PublishRequest, PublishResponse};

/// Publishes `request` through the server that served the page, with
/// `Authorization: Bearer <token>` when the page holds a token.
///
/// # Errors
/// The server's own `message` when it refuses the request (its
/// [`ErrorBody`]), or a sentence saying the server could not be reached or
/// answered something unexpected.
pub async fn publish(request: &PublishRequest) -> Result<PublishResponse, String> {
    let mut builder = Request::post("/publish");
    if let Some(token) = crate::token::stored() {
        builder = builder.header("authorization", &format!("Bearer {token}"));
    }
    let response = builder
        .json(request)
        .map_err(|err| format!("could not encode the request: {err}"))?
        .send()
        .await
        .map_err(|err| format!("could not reach the server: {err}"))?;
    if response.ok() {
        return response
            .json::<PublishResponse>()
            .await
            .map_err(|err| format!("the server's answer was not understood: {err}"));
    }
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => Err(body.message),
        Err(_) => Err(format!(
            "the server answered {status} {}",
            response.status_text()
        )),
    }
}

/// Asks for the stream at `url` once with `fetch`, to learn why the browser
/// refused it: `Some(message)` for a 401 or 403 (the server's own message),
/// `None` when the stream opens (it is closed at once) or fails another way.
pub async fn stream_refusal(url: &str) -> Option<(u16, String)> {
    let abort = web_sys::AbortController::new().ok()?;
    let response = Request::get(url)
        .abort_signal(Some(&abort.signal()))
        .send()
        .await
        .ok()?;
    let status = response.status();
    if !matches!(status, 401 | 403) {
        // A stream that opened would go on for good.
        abort.abort();
        return None;
    }
    let message = response
        .json::<ErrorBody>()
        .await
        .map_or_else(|_| format!("the server answered {status}"), |b| b.message);
    Some((status, message))
}
