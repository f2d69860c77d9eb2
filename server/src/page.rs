//! The built page (`trunk build` output in `dist/`), served at `/` so one
//! process runs everything; without it, `/` explains where to go.

use std::net::SocketAddr;
use std::path::Path;

use warp::http::{header, HeaderValue};
use warp::Reply;

/// What `/` says when the page has not been built.
const NO_PAGE: &str = "\
This is the live event stream server.

  curl -N http://HOST/stream                 watch events arrive
  curl -N 'http://HOST/stream?topic=ticker'  only some topics
  curl -X POST http://HOST/publish -H 'content-type: application/json' -d '{\"message\":\"hi\"}'
  curl http://HOST/healthz  |  curl http://HOST/metrics

The web page is not built yet: run `trunk build --release` at the top of the
project (or scripts/dev.sh), then reload. See README.md.
";

/// Answers `GET /`: the page's index.html, or the text above with the
/// address the server listens on (never the request's Host header, which
/// the client chooses).
pub async fn index(dist: &Path, listening: SocketAddr) -> warp::reply::Response {
    match tokio::fs::read(dist.join("index.html")).await {
        Ok(html) => {
            let mut response = warp::reply::html(html).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(_) => NO_PAGE
            .replace("HOST", &listening.to_string())
            .into_response(),
    }
}
