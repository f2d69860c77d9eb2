//! CORS (`--cors-origin`): tower-http's layer, and its answer worked out
//! once where it is known in advance.
//!
//! The layer answers a preflight (`OPTIONS`) itself and adds its headers to
//! every other answer, configured origins or not. For a request without
//! `Origin` those headers are always the same (`vary: origin`, and
//! `access-control-allow-origin: *` when every origin is allowed):
//! [`CorsRules`] asks the layer for them once, at start, and [`WithCors`]
//! adds them itself, so that such a request (publishers, probes, a page of
//! the same origin) goes straight to the routes. A request with `Origin`,
//! and every `OPTIONS`, goes through the layer. Each connection holds a
//! pointer to the rules rather than a copy of the layer's lists.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer;
use tower_service::Service;
use warp::http::header::{self, HeaderMap, HeaderName, HeaderValue, ORIGIN, VARY};
use warp::http::{Method, Request, Response};

/// The CORS layer of `--cors-origin`, and what it adds to the answer of a
/// request without `Origin`.
#[derive(Debug)]
pub(crate) struct CorsRules {
    layer: CorsLayer,
    /// The `vary` value the layer appends.
    vary: Option<HeaderValue>,
    /// The other headers it sets.
    set: HeaderMap,
}

impl CorsRules {
    /// The rules for `origins` (`*` alone: any origin).
    pub(crate) fn new(origins: &[String]) -> Self {
        let layer = layer(origins);
        let mut probe = layer.layer(Empty);
        let request = Request::builder()
            .uri("/")
            .body(())
            .expect("a request to `/` is valid");
        let mut set = match probe.call(request).now_or_never() {
            Some(Ok(response)) => response.into_parts().0.headers,
            None => HeaderMap::new(),
        };
        let vary = set.remove(VARY);
        Self { layer, vary, set }
    }

    /// Whether the layer must see a request with `method` and `headers`:
    /// a preflight, or a request from another origin.
    fn needs_layer(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS || headers.contains_key(ORIGIN)
    }

    /// Adds to an answer's `headers` what the layer would add for a request
    /// without `Origin`, as the layer does: `vary` appended, the others set.
    fn add_without_origin(&self, headers: &mut HeaderMap) {
        if let Some(vary) = &self.vary {
            headers.append(VARY, vary.clone());
        }
        headers.extend(self.set.clone());
    }
}

/// The layer for `origins`.
fn layer(origins: &[String]) -> CorsLayer {
    // `Config::into_settings` has checked that `*` comes alone.
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600))
}

/// An empty answer, for the layer to add its headers to.
#[derive(Debug, Clone, Copy)]
struct Empty;

impl Service<Request<()>> for Empty {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(())))
    }
}

/// `inner` behind the CORS rules.
#[derive(Debug, Clone)]
pub(crate) struct WithCors<S> {
    inner: S,
    rules: Arc<CorsRules>,
}

impl<S> WithCors<S> {
    pub(crate) fn new(inner: S, rules: Arc<CorsRules>) -> Self {
        Self { inner, rules }
    }
}

impl<S, B, R> Service<Request<B>> for WithCors<S>
where
    S: Service<Request<B>, Response = Response<R>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<R>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if CorsRules::needs_layer(request.method(), request.headers()) {
            let mut cors = self.rules.layer.layer(self.inner.clone());
            return Box::pin(cors.call(request));
        }
        let answer = self.inner.call(request);
        let rules = self.rules.clone();
        Box::pin(async move {
            let mut response = answer.await?;
            rules.add_without_origin(response.headers_mut());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without_origin(origins: &[&str]) -> HeaderMap {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        let rules = CorsRules::new(&origins);
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("accept"));
        rules.add_without_origin(&mut headers);
        headers
    }

    #[test]
    fn without_origin_the_layer_adds_vary_and_a_wildcard_only() {
        for origins in [&[][..], &["http://a.example"]] {
            let headers = without_origin(origins);
            let vary: Vec<_> = headers.get_all(VARY).iter().collect();
            assert_eq!(vary, ["accept", "origin"]);
            assert_eq!(headers.len(), 2, "{headers:?}");
        }
        let any = without_origin(&["*"]);
        assert_eq!(any.get_all(VARY).iter().count(), 1);
        assert_eq!(any["access-control-allow-origin"], "*");
    }
}
