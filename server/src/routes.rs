//! The routes, as warp filters. Handlers live with their feature: `stream`,
//! `publish`, `metrics`, `page`.

use std::convert::Infallible;
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::app::App;
use crate::error::{self, ApiError};
use crate::metrics;
use crate::page;
use crate::publish::{self, PublishHeaders};
use crate::serve::Connection;
use crate::stream::{self, StreamRequest};
use crate::topics;

/// Every route, with errors turned into JSON bodies.
///
/// Boxed: hyper keeps one allocation of the route future's size for each
/// connection's whole life, and unboxed that future is as large as the
/// largest route's (serving files, reading a publish body). Boxed it is a
/// pointer, and the route's state lives only while a request is answered,
/// which for `/stream` ends as soon as the headers go out.
pub fn routes(app: &App) -> BoxedFilter<(warp::reply::Response,)> {
    stream_route(app.clone())
        .or(publish_route(app.clone()))
        .unify()
        .or(topics_route(app.clone()))
        .unify()
        .or(healthz(app.clone()))
        .unify()
        .or(metrics_route(app.clone()))
        .unify()
        .or(index(app.clone()))
        .unify()
        .or(assets(app))
        .unify()
        .recover(error::recover)
        .unify()
        .boxed()
}

fn with_app(app: App) -> impl Filter<Extract = (App,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// The raw query string, empty when there is none.
fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// `GET /stream?topic=a&topic=b&lastEventId=<id>`, header `Last-Event-ID`.
fn stream_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("stream")
        .and(warp::get())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(raw_query())
        .and(warp::ext::optional::<Connection>())
        .and(with_app(app))
        .map(
            |header_id: Option<String>, query: String, conn: Option<Connection>, app: App| {
                let answer = StreamRequest::from_query(&query, header_id).and_then(|request| {
                    let kill = conn.map(|c| c.kill).unwrap_or_default();
                    stream::open(&app.hub, &app.log, request, kill, app.stream)
                });
                answer.unwrap_or_else(ApiError::into_response)
            },
        )
}

/// `POST /publish` with a JSON `{"message": "...", "topic": "..."}`.
fn publish_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("publish")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_app(app))
        .then(
            |authorization, content_type, content_length, body, app: App| async move {
                let headers = PublishHeaders {
                    authorization,
                    content_type,
                    content_length,
                };
                publish::handle(&app.hub, app.log.as_ref(), &app.publish, headers, body).await
            },
        )
}

/// `GET /topics?limit=100&after=NAME`.
fn topics_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("topics")
        .and(warp::get())
        .and(raw_query())
        .and(with_app(app))
        .map(|query: String, app: App| {
            topics::list(&app.hub, &query).unwrap_or_else(ApiError::into_response)
        })
}

/// `GET /healthz`.
fn healthz(app: App) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: App| metrics::health(&app))
}

/// `GET /metrics`, Prometheus text format.
fn metrics_route(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: App| {
            warp::reply::with_header(
                metrics::render(&app),
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .into_response()
        })
}

/// `GET /`: the built page, or a short text pointing to `/stream`.
fn index(app: App) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path::end()
        .and(warp::get())
        .and(warp::header::optional::<String>("host"))
        .and(with_app(app))
        .then(|host: Option<String>, app: App| async move { page::index(&app.dist, host).await })
}

/// `GET /<file>`: the page's assets from `dist/`.
fn assets(app: &App) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let dist: Arc<std::path::PathBuf> = app.dist.clone();
    warp::get()
        .and(warp::fs::dir(dist.as_ref().clone()))
        .map(|file: warp::fs::File| {
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
