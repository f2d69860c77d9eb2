//! The routes, as warp filters. Handlers live with their feature: `stream`,
//! `publish`, `status`, `time`, `page`.
//!
//! Every route matches its path first and its method second, so that a
//! known path asked with another method is `405` with `Allow`, and an
//! unknown path is `404` whatever the method. Every GET route answers HEAD
//! too: hyper sends the head of the answer without its body.

use std::convert::Infallible;
use std::sync::Arc;

use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::http::header::{AUTHORIZATION, COOKIE, TRANSFER_ENCODING};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use warp::{Filter, Rejection, Reply};

use crate::app::App;
use crate::auth::{self, StreamAccess};
use crate::connection::{Connection, DirectStream, OpenStream};
use crate::cors::{CorsRules, WithCors};
use crate::error::{self, ApiError};
use crate::idempotency::KeyHeader;
use crate::metrics::Refusal;
use crate::page;
use crate::publish::{self, PublishHeaders, Publisher};
use crate::status;
use crate::stream::{self, StreamRequest};
use crate::time;
use crate::topics;

/// The methods of a route that reads: GET, and HEAD for its head alone.
const READ: (&[Method], &str) = (&[Method::GET, Method::HEAD], "GET, HEAD");

/// The method of a route that writes.
const WRITE: (&[Method], &str) = (&[Method::POST], "POST");

/// Every route, with errors turned into JSON bodies.
///
/// Boxed: hyper keeps one allocation of the route future's size for each
/// connection's whole life, and unboxed that future is as large as the
/// largest route's (serving files, reading a publish body). Boxed it is a
/// pointer, and the route's state lives only while a request is answered,
/// which for `/stream` ends as soon as the headers go out.
pub fn routes(app: &App) -> BoxedFilter<(warp::reply::Response,)> {
    transfer_coding(app.clone())
        .and(
            stream_route(app.clone())
                .or(publish_route(app.clone()))
                .unify()
                .or(topics_route(app.clone()))
                .unify()
                .or(healthz(app.clone()))
                .unify()
                .or(time_route())
                .unify()
                .or(metrics_route(app.clone()))
                .unify()
                .or(index(app.clone()))
                .unify()
                .or(assets(app))
                .unify(),
        )
        .recover(error::recover)
        .unify()
        .boxed()
}

/// The routes as one service: `POST /publish` goes straight to its
/// handler, every other request through [`routes`]' filters.
///
/// Publishing is the one request a client sends over and over: tens of
/// thousands a second from one publisher. Through warp, each one is matched
/// against the routes before it (every `or` of the chain moves the route
/// futures along), which cost about as much as storing and framing the
/// event; here it is one comparison of method and path. The checks and the
/// answers are `publish::handle`'s either way; anything else about the
/// request (another method, a transfer coding to refuse) takes the filters.
#[derive(Clone)]
pub struct Router {
    app: App,
    filters: BoxedFilter<(warp::reply::Response,)>,
}

impl Router {
    /// The routes of `app`.
    pub fn new(app: &App) -> Self {
        Self {
            app: app.clone(),
            filters: routes(app),
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

type Answer = futures_util::future::BoxFuture<'static, Result<warp::reply::Response, Infallible>>;

impl tower_service::Service<warp::http::Request<hyper::body::Incoming>> for Router {
    type Response = warp::reply::Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: warp::http::Request<hyper::body::Incoming>) -> Answer {
        mark_transfer_coding(&mut request);
        auth::join_cookie_fields(request.headers_mut());
        let direct = request.method() == Method::POST
            && request.uri().path() == "/publish"
            && request.extensions().get::<UnsupportedCoding>().is_none();
        if !direct {
            return Box::pin(warp::service(self.filters.clone()).call(request));
        }
        let app = self.app.clone();
        Box::pin(async move {
            let (head, body) = request.into_parts();
            let conn = head.extensions.get::<Connection>().cloned();
            let fields = PublishFields::read(&head.headers, conn);
            Ok(publish_with(&app, fields, http_body_util::BodyDataStream::new(body)).await)
        })
    }
}

fn with_app(app: App) -> impl Filter<Extract = (App,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// Passes the methods in `allowed`; any other is rejected with
/// `405 method_not_allowed` and `Allow`.
fn allow(
    (allowed, allow): (&'static [Method], &'static str),
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(move |method: Method| async move {
            if allowed.contains(&method) {
                Ok(())
            } else {
                Err(warp::reject::custom(ApiError::MethodNotAllowed { allow }))
            }
        })
        .untuple_one()
}

/// A header's value as sent. warp's typed header filters reject a value
/// that is not ASCII, which would answer with another route's error.
fn raw_header(
    name: &'static str,
) -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone {
    warp::header::value(name)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
}

/// The raw query string, empty when there is none.
fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// A transfer coding other than `chunked` that a request named, found by
/// [`mark_transfer_coding`] before routing.
#[derive(Debug, Clone)]
struct UnsupportedCoding(String);

/// Marks a request whose body is in a transfer coding other than chunked,
/// for [`transfer_coding`] to refuse: looked at in place, where warp's
/// filters could only see a clone of every header of every request.
fn mark_transfer_coding<B>(request: &mut warp::http::Request<B>) {
    if let Some(coding) = unsupported_coding(request.headers()) {
        request.extensions_mut().insert(UnsupportedCoding(coding));
    }
}

/// Refuses a body in a transfer coding other than chunked with
/// `501 not_implemented`, on any path: hyper decodes the chunked framing
/// and would pass the rest on undecoded (`gzip, chunked` as gzip bytes).
fn transfer_coding(app: App) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::ext::optional::<UnsupportedCoding>()
        .and(warp::ext::optional::<Connection>())
        .and_then(
            move |coding: Option<UnsupportedCoding>, conn: Option<Connection>| {
                let app = app.clone();
                async move {
                    let Some(UnsupportedCoding(coding)) = coding else {
                        return Ok(());
                    };
                    app.metrics
                        .refuse(Refusal::TransferCoding, conn.map(|c| c.remote));
                    Err(warp::reject::custom(ApiError::UnsupportedTransferCoding(
                        coding,
                    )))
                }
            },
        )
        .untuple_one()
}

/// The first transfer coding in `headers` that is not `chunked`.
fn unsupported_coding(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|coding| String::from_utf8_lossy(coding).trim().to_owned())
        .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("chunked"))
}

/// `GET /stream?topic=a&topic=b&lastEventId=<id>`, header `Last-Event-ID`.
/// HEAD checks the query and answers the stream's head, subscribing no one.
fn stream_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("stream")
        .and(allow(READ))
        .and(warp::method())
        .and(raw_header("last-event-id"))
        .and(raw_header("authorization"))
        .and(raw_header("cookie"))
        .and(raw_query())
        .and(warp::ext::optional::<Connection>())
        .and(with_app(app))
        .map(
            |method: Method,
             last_event_id: Option<HeaderValue>,
             authorization: Option<HeaderValue>,
             cookie: Option<HeaderValue>,
             query: String,
             conn: Option<Connection>,
             app: App| {
                let fields = StreamFields {
                    last_event_id: last_event_id.as_ref(),
                    authorization: authorization.as_ref(),
                    cookie: cookie.as_ref(),
                    query: &query,
                };
                let peer = conn.as_ref().map(|c| c.remote);
                let (request, access) = match stream_grant(&app, &fields) {
                    Ok(granted) => granted,
                    Err(error) => {
                        if let Some(reason) = Refusal::of_auth(&error) {
                            app.metrics.refuse(reason, peer);
                        }
                        return error.into_response();
                    }
                };
                if method == Method::HEAD {
                    return stream_head();
                }
                let kill = conn.as_ref().map(|c| c.kill.clone()).unwrap_or_default();
                match stream::subscribe(&app.hub, &app.log, request, access, kill, app.stream) {
                    Ok(feed) => {
                        if let Some(conn) = &conn {
                            conn.start_stream();
                        }
                        stream::response(feed)
                    }
                    Err(unopened) => unopened.answer(&app.hub).into_response(),
                }
            },
        )
}

/// What a stream request's answer depends on, as sent: the first field of
/// each header (split `Cookie` fields joined already), and the query.
pub(crate) struct StreamFields<'a> {
    pub(crate) last_event_id: Option<&'a HeaderValue>,
    pub(crate) authorization: Option<&'a HeaderValue>,
    pub(crate) cookie: Option<&'a HeaderValue>,
    pub(crate) query: &'a str,
}

/// What a stream request asks for and what its token grants, or the
/// answer that refuses it. It has no effect: a refusal is counted by the
/// one who answers it.
///
/// # Errors
/// The query's errors ([`ApiError::InvalidTopic`]), then the token's
/// (missing, invalid, expired, not for these topics).
pub(crate) fn stream_grant(
    app: &App,
    fields: &StreamFields<'_>,
) -> Result<(StreamRequest, StreamAccess), ApiError> {
    // An id that is not visible ASCII counts as none, as a malformed one
    // does: the stream starts live.
    let header_id = fields
        .last_event_id
        .and_then(|v| v.to_str().ok().map(str::to_owned));
    let request = StreamRequest::from_query(fields.query, header_id, app.stream.max_last)?;
    let grant = app.auth.for_stream(
        fields.authorization,
        fields.cookie,
        auth::query_token(fields.query).as_deref(),
    )?;
    let hidden = app.auth.check_stream(&grant, &request.patterns)?;
    let access = StreamAccess {
        hidden,
        expires_at: grant.expires_at,
    };
    Ok((request, access))
}

/// The head of a stream's answer, for HEAD: the headers `GET` sends.
pub(crate) fn stream_head() -> warp::reply::Response {
    let mut response = warp::reply().into_response();
    crate::stream::stream_headers(response.headers_mut());
    response
}

/// `GET /stream` on a connection of its own, answered by the connection
/// below hyper (`crate::connection`), so that an idle subscriber holds no
/// HTTP buffers. The answers are the route's: [`stream_grant`] decides,
/// [`stream::subscribe`] opens, and the CORS rules add their headers to
/// [`stream_head`]'s. Anything else, a refusal included, is left to the
/// route through hyper, which answers it as it would have.
#[derive(Clone)]
pub(crate) struct DirectStreams {
    app: App,
    cors: Arc<CorsRules>,
}

impl std::fmt::Debug for DirectStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectStreams").finish_non_exhaustive()
    }
}

impl DirectStreams {
    /// The streams of `app`, behind `cors` as every route is.
    pub(crate) fn new(app: &App, cors: Arc<CorsRules>) -> Self {
        Self {
            app: app.clone(),
            cors,
        }
    }

    /// The stream's headers with what the CORS layer adds to them for
    /// `request`.
    fn cors_headers(&self, request: warp::http::Request<()>) -> Option<HeaderMap> {
        use futures_util::FutureExt;
        let mut cors = WithCors::new(StreamHead, self.cors.clone());
        let response = cors.call(request).now_or_never()?;
        let Ok(response) = response;
        Some(response.into_parts().0.headers)
    }
}

impl OpenStream for DirectStreams {
    /// Opens the stream that an HTTP/1.1 `GET` of `target` (`/stream`,
    /// with its query) with `headers` asks for, on `conn`; `None` when the
    /// route would answer anything but the stream (then nothing has
    /// changed, nothing is counted).
    fn open(
        &self,
        target: &Uri,
        mut headers: HeaderMap,
        conn: &Connection,
    ) -> Option<DirectStream> {
        let started = std::time::Instant::now();
        if target.path() != "/stream" {
            return None;
        }
        auth::join_cookie_fields(&mut headers);
        let fields = StreamFields {
            last_event_id: headers.get("last-event-id"),
            authorization: headers.get(AUTHORIZATION),
            cookie: headers.get(COOKIE),
            query: target.query().unwrap_or(""),
        };
        let (request, access) = stream_grant(&self.app, &fields).ok()?;
        let mut asked = warp::http::Request::new(());
        *asked.uri_mut() = target.clone();
        *asked.headers_mut() = headers;
        let headers = self.cors_headers(asked)?;
        let app = &self.app;
        let kill = conn.kill.clone();
        let feed = stream::subscribe(&app.hub, &app.log, request, access, kill, app.stream).ok()?;
        crate::request_log::log_request(
            conn.remote,
            &Method::GET,
            "/stream",
            StatusCode::OK,
            started,
        );
        Some(DirectStream { headers, feed })
    }
}

/// The stream route's answer to a request it grants, as a service for the
/// CORS layer to add to.
#[derive(Clone, Copy)]
struct StreamHead;

impl tower_service::Service<warp::http::Request<()>> for StreamHead {
    type Response = warp::reply::Response;
    type Error = Infallible;
    type Future = std::future::Ready<Result<warp::reply::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: warp::http::Request<()>) -> Self::Future {
        std::future::ready(Ok(stream_head()))
    }
}

/// `POST /publish` with a JSON `{"message": "...", "topic": "..."}`.
fn publish_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("publish")
        .and(allow(WRITE))
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Connection>())
        .and(warp::body::stream())
        .and(with_app(app))
        .then(
            |headers: warp::http::HeaderMap, conn: Option<Connection>, body, app: App| async move {
                let fields = PublishFields::read(&headers, conn);
                publish_with(&app, fields, body).await
            },
        )
}

/// What `POST /publish` reads of its request's head, as sent.
struct PublishFields {
    authorization: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
    content_length: Option<HeaderValue>,
    forwarded: Option<HeaderValue>,
    idempotency_key: KeyHeader,
    conn: Option<Connection>,
}

impl PublishFields {
    /// The fields of a request's `headers`, on connection `conn`.
    fn read(headers: &warp::http::HeaderMap, conn: Option<Connection>) -> Self {
        let header = |name: &str| headers.get(name).cloned();
        Self {
            authorization: header("authorization"),
            content_type: header("content-type"),
            content_length: header("content-length"),
            forwarded: header("x-forwarded-for"),
            idempotency_key: KeyHeader::read(headers),
            conn,
        }
    }
}

/// Answers a `POST /publish`, whichever way it was routed.
async fn publish_with<S, B, E>(app: &App, fields: PublishFields, body: S) -> warp::reply::Response
where
    S: futures_util::Stream<Item = Result<B, E>>,
    B: bytes::Buf,
    E: std::fmt::Display,
{
    let publisher = Publisher {
        auth: &app.auth,
        limiter: app.limiter.as_deref(),
        peer: fields.conn.map(|c| c.remote),
        forwarded: fields.forwarded.as_ref(),
    };
    let headers = PublishHeaders {
        authorization: fields.authorization,
        content_type: fields.content_type,
        // hyper has already refused a Content-Length that is not a number.
        content_length: fields
            .content_length
            .and_then(|v| v.to_str().ok()?.parse().ok()),
        idempotency_key: fields.idempotency_key,
    };
    publish::handle(
        &app.metrics,
        &app.log,
        &app.publish,
        publisher,
        headers,
        body,
    )
    .await
}

/// `GET /topics?limit=100&after=NAME`.
fn topics_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("topics")
        .and(allow(READ))
        .and(raw_header("authorization"))
        .and(raw_header("cookie"))
        .and(raw_query())
        .and(with_app(app))
        .map(
            |authorization: Option<HeaderValue>,
             cookie: Option<HeaderValue>,
             query: String,
             app: App| {
                app.auth
                    .for_stream(
                        authorization.as_ref(),
                        cookie.as_ref(),
                        auth::query_token(&query).as_deref(),
                    )
                    .and_then(|grant| {
                        topics::list(&app.hub, &query, app.stream.max_last, |topic| {
                            app.auth.may_read(&grant, topic)
                        })
                    })
                    .unwrap_or_else(ApiError::into_response)
            },
        )
}

/// `GET /healthz`.
fn healthz(app: App) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(allow(READ))
        .and(raw_header("authorization"))
        .and(with_app(app))
        .map(|authorization: Option<HeaderValue>, app: App| {
            match app.auth.check_metrics(authorization.as_ref()) {
                Ok(()) => status::health(&app),
                Err(error) => error.into_response(),
            }
        })
}

/// `GET /time`: the server's clock, `{"unix_ms": N}`.
fn time_route() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("time").and(allow(READ)).map(time::now)
}

/// `GET /metrics`, Prometheus text format.
fn metrics_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(allow(READ))
        .and(raw_header("authorization"))
        .and(with_app(app))
        .map(|authorization: Option<HeaderValue>, app: App| {
            if let Err(error) = app.auth.check_metrics(authorization.as_ref()) {
                return error.into_response();
            }
            warp::reply::with_header(
                status::render(&app),
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .into_response()
        })
}

/// `GET /`: the built page, or a short text pointing to `/stream`.
fn index(app: App) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path::end()
        .and(allow(READ))
        .and(with_app(app))
        .then(|app: App| async move { page::index(&app.dist, app.addr).await })
}

/// `GET /<file>`: the page's assets from `dist/` (warp checks for GET or
/// HEAD first, so another method there is 404).
fn assets(app: &App) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let dist: Arc<std::path::PathBuf> = app.dist.clone();
    warp::fs::dir(dist.as_ref().clone()).map(|file: warp::fs::File| {
        let mut response = file.into_response();
        if response.status() == StatusCode::OK {
            response.headers_mut().insert(
                warp::http::header::CACHE_CONTROL,
                warp::http::HeaderValue::from_static("no-cache"),
            );
        }
        response
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunked_is_a_supported_transfer_coding() {
        let codings = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(TRANSFER_ENCODING, HeaderValue::from_static(value));
            }
            unsupported_coding(&headers)
        };
        assert_eq!(codings(&[]), None);
        assert_eq!(codings(&["chunked"]), None);
        assert_eq!(codings(&["Chunked"]), None);
        assert_eq!(codings(&[" , chunked"]), None);
        assert_eq!(codings(&["gzip, chunked"]).as_deref(), Some("gzip"));
        assert_eq!(codings(&["chunked", "br ,chunked"]).as_deref(), Some("br"));
    }
}
