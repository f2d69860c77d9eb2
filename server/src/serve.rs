//! Accepting connections, serving them, and shutting down gracefully.
//!
//! The accept loop is ours rather than `warp::serve` for three reasons. Each
//! connection is served under the limits of [`crate::limits`]: deadlines,
//! head size, the connection cap. A subscriber that stops reading leaves its
//! response body unpolled, so the body cannot notice it was cut: each
//! connection gets a kill switch ([`Connection`]) that the hub's reaper
//! pulls, and the connection is dropped (over HTTP/2, each stream has its
//! own, and only that stream is reset). And at shutdown every stream is
//! ended first, then connections get a short grace period, then whatever is
//! left is closed: the process never waits on a client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::StatusCode;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer;
use tower_service::Service;
use warp::http::{header, HeaderName, HeaderValue, Method, Request};

use crate::app::App;
use crate::auth::Auth;
use crate::config::{Config, ConfigError};
use crate::event_log;
use crate::limits::{self, Admission, Connection, ConnectionCap, Ended, Limits, Protocols};
use crate::metrics::{Metrics, Refusal};
use crate::publish::PublishSettings;
use crate::rate::PublishLimiter;
use crate::routes::Router;
use crate::stream::StreamSettings;
use crate::throttle::Throttle;
use crate::ticker;
use crate::tls::Tls;

/// How often subscribers are checked for lag.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// The pause after a first failed accept; it doubles with each failure in
/// a row, up to [`ACCEPT_PAUSE_MAX`].
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);

/// The longest pause between accepts that fail.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

fn cors(origins: &[String]) -> CorsLayer {
    // `Config::validate` has checked that `*` comes alone.
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

/// Runs the server on `listener` until `shutdown` resolves, then ends every
/// stream, lets connections finish for `--shutdown-grace` and returns.
///
/// # Errors
/// [`ConfigError`] when the options contradict each other.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConfigError> {
    config.validate()?;
    let open_files = limits::raise_open_files_limit();
    let limits = Limits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_header_bytes: usize::try_from(config.max_header_bytes).unwrap_or(usize::MAX),
        max_connections: limits::max_connections(config.max_connections, open_files),
        h2_max_streams: config.h2_max_streams,
    };
    let max_subscribers = config.max_subscribers.unwrap_or(limits.max_connections);
    tracing::info!(
        open_files,
        max_connections = limits.max_connections,
        max_subscribers,
        "open-files limit allows {} connections",
        limits::connections_allowed(open_files)
    );

    let tasks = TaskTracker::new();
    let (hub, log) = event_log::open(&config, max_subscribers, &tasks).await?;
    let connections = Arc::new(ConnectionCap::new(limits.max_connections));
    let app = App {
        hub: hub.clone(),
        log: log.clone(),
        stream: StreamSettings {
            keep_alive: config.keep_alive,
            retry: config.retry,
            max_topics: usize::try_from(config.max_topics_per_stream).unwrap_or(usize::MAX),
        },
        publish: Arc::new(PublishSettings {
            max_body: config.max_body,
            body_timeout: config.body_timeout,
        }),
        auth: Arc::new(Auth::new(
            config.jwt_key()?,
            config.private.clone(),
            config.jwt_cookie.clone(),
            config.publish_token.clone(),
            config.metrics_token.clone(),
        )),
        limiter: config.publish_rate.and_then(NonZeroU32::new).map(|rate| {
            let burst = config
                .publish_burst
                .and_then(NonZeroU32::new)
                .unwrap_or(rate);
            Arc::new(PublishLimiter::new(
                rate,
                burst,
                config.trust_proxy.clone(),
                config.rate_ipv6_prefix,
            ))
        }),
        dist: Arc::new(config.dist.clone()),
        connections: connections.clone(),
        addr: listener.local_addr().unwrap_or(config.addr),
    };
    if app.dist.join("index.html").is_file() {
        tracing::info!(dist = %app.dist.display(), "serving the page at /");
    } else {
        tracing::info!(dist = %app.dist.display(), "no built page; / explains how to build it");
    }

    let tls = match config.tls_files() {
        Some((cert, key)) => {
            let tls = Arc::new(Tls::new(cert, key)?);
            tasks.spawn(tls.clone().reload_on_sighup(hub.shutdown_token().clone()));
            tracing::info!(cert = %cert.display(), "HTTPS (h2, http/1.1); SIGHUP reloads the certificate");
            Some(tls)
        }
        None => None,
    };
    let protocols = Arc::new(Protocols {
        tls,
        h2c: config.h2c,
        draining: hub.shutdown_token().clone(),
        tasks: tasks.clone(),
    });

    tasks.spawn(hub.clone().run_reaper(REAP_EVERY));
    if let Some(limiter) = &app.limiter {
        tasks.spawn(limiter.clone().sweep_until(hub.shutdown_token().clone()));
    }
    if let Some(every) = config.ticker_interval {
        tasks.spawn(ticker::run(hub.clone(), log.clone(), every));
    }

    let service = cors(&config.cors_origins).layer(Router::new(&app));
    let graceful = GracefulShutdown::new();
    let force_close = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_pause = ACCEPT_PAUSE_MIN;

    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    accept_pause = ACCEPT_PAUSE_MIN;
                    pair
                }
                Err(error) => {
                    // Out of file descriptors, most often: the connection
                    // stays queued and the listener ready, so retrying at
                    // once would spin. Pause longer with each failure.
                    static LOGGED: Throttle = Throttle::new();
                    Metrics::add(&hub.metrics.accept_errors, 1);
                    if let Some(left_out) = LOGGED.admit() {
                        tracing::error!(
                            %error,
                            pause_ms = accept_pause.as_millis(),
                            not_logged_since_last = left_out,
                            "accept failed; pausing"
                        );
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(accept_pause) => {}
                    }
                    accept_pause = (accept_pause * 2).min(ACCEPT_PAUSE_MAX);
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        match connections.admit() {
            Admission::Serve(slot) => {
                Metrics::add(&hub.metrics.connections, 1);
                let connection = Connection::new(force_close.child_token(), remote);
                let handler = handler(service.clone(), connection.clone());
                let watcher = graceful.watcher();
                let hub = hub.clone();
                let protocols = protocols.clone();
                tasks.spawn(async move {
                    let ended =
                        limits::serve(tcp, connection, limits, &protocols, handler, watcher).await;
                    // The socket is closed by now: its slot is free.
                    drop(slot);
                    record(&hub.metrics, remote, ended);
                });
            }
            Admission::Refuse(_) if protocols.tls.is_some() => {
                // A 503 over TLS would cost a handshake: closed unanswered.
                hub.metrics
                    .refuse(Refusal::TooManyConnections, Some(remote));
                drop(tcp);
            }
            Admission::Refuse(answering) => {
                hub.metrics
                    .refuse(Refusal::TooManyConnections, Some(remote));
                let stop = force_close.clone();
                let max = connections.max();
                tasks.spawn(async move {
                    tokio::select! {
                        () = limits::refuse(tcp, limits, max, answering) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
            Admission::Drop => {
                hub.metrics
                    .refuse(Refusal::TooManyConnections, Some(remote));
                drop(tcp);
            }
        }
    }

    tracing::info!("shutting down: ending streams");
    drop(listener);
    hub.shut_down();
    tasks.close();
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("closing connections still open after the grace period");
    }
    force_close.cancel();
    tasks.wait().await;
    tracing::info!("shut down");
    Ok(())
}

/// The service for one connection's requests: routes (behind CORS) with
/// the connection as a request extension, and a log line per request.
fn handler<S, B>(
    service: S,
    connection: Connection,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = hyper::Response<B>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<B>, Infallible>> + Send,
> + Send
where
    S: Service<Request<Incoming>, Response = hyper::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: hyper::body::Body,
{
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        with_path(&mut request);
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let remote = connection.remote;
        let connection = connection.clone();
        let mut service = service.clone();
        // Boxed per request: hyper keeps the allocation that holds a
        // connection's request future for the connection's whole life, so
        // this future (the routes' own and a clone of them, about 700
        // bytes) would otherwise stay with every idle stream.
        let answer: Pin<Box<dyn Future<Output = Result<hyper::Response<B>, Infallible>> + Send>> =
            Box::pin(async move {
                // Here, in the request's own future: over HTTP/2 that is the
                // stream's task, whose kill switch the request gets.
                request.extensions_mut().insert(connection.for_request());
                let response = service.call(request).await?;
                log_request(remote, &method, &path, response.status(), started);
                Ok::<_, Infallible>(response)
            });
        answer
    })
}

/// Gives a request target without a path (the authority form,
/// `GET host:port`, meant for CONNECT) the path `/`, as RFC 9112 has clients
/// do for an absolute URI without one: warp's path filters cannot read a
/// target with no path at all.
fn with_path<B>(request: &mut Request<B>) {
    if request.uri().path_and_query().is_some() {
        return;
    }
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// One line per request: at info when it succeeded, at debug when it was
/// refused, so that a client repeating bad requests cannot grow the log
/// (refusals are counted in `/metrics`, and logged once in a while).
fn log_request(
    remote: SocketAddr,
    method: &Method,
    path: &str,
    status: StatusCode,
    started: Instant,
) {
    let status = status.as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    if status < 400 {
        tracing::info!(%remote, %method, path, status, elapsed_ms, "request");
    } else {
        tracing::debug!(%remote, %method, path, status, elapsed_ms, "request");
    }
}

/// Counts and logs how a connection ended.
fn record(metrics: &Metrics, remote: SocketAddr, ended: Ended) {
    match ended {
        Ended::Done => {}
        Ended::Refused(reason) => metrics.refuse(reason, Some(remote)),
        Ended::Idle => Metrics::add(&metrics.idle_closed, 1),
        Ended::Killed => tracing::debug!(%remote, "connection closed by the server"),
        Ended::ClientLeft => tracing::debug!(%remote, "the client of a stream left"),
        Ended::Failed(error) => {
            tracing::debug!(%remote, %error, "connection ended with an error");
        }
    }
}

/// Connections a listener queues before they are accepted. Linux caps it
/// at `net.core.somaxconn` (4096 by default); tokio's own default, 1024, is
/// short for a reconnect storm after a redeploy, whose extra connections
/// are dropped and retried by their clients only a second later.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with room for a reconnect storm in its queue.
///
/// # Errors
/// When the address cannot be bound.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
