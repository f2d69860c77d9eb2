//! The page's one HTTP call: `POST /publish`.

use gloo_net::http::Request;
use shared::{ErrorBody, PublishRequest, PublishResponse};

/// Publishes `request` through the server that served the page.
///
/// # Errors
/// The server's own `message` when it refuses the request (its
/// [`ErrorBody`]), or a sentence saying the server could not be reached or
/// answered something unexpected.
pub async fn publish(request: &PublishRequest) -> Result<PublishResponse, String> {
    let response = Request::post("/publish")
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
