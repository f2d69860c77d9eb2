//! Accepting connections, serving them, and shutting down gracefully.
//!
//! The accept loop is ours rather than `warp::serve` for two reasons. A
//! subscriber that stops reading leaves its response body unpolled, so the
//! body cannot notice it was cut: each connection gets a kill switch
//! ([`Connection`]) that the hub's reaper pulls, and the connection is dropped.
//! And at shutdown every stream is ended first, then connections get a short
//! grace period, then whatever is left is closed: the process never waits on
//! a client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer;
use tower_service::Service;
use warp::http::{header, HeaderName, HeaderValue, Method, Request};

use crate::app::App;
use crate::config::{Config, ConfigError};
use crate::event_log;
use crate::publish::PublishSettings;
use crate::routes::routes;
use crate::stream::StreamSettings;
use crate::ticker;

/// How often subscribers are checked for lag.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// File descriptors kept for things other than subscribers.
const RESERVED_FDS: u64 = 64;

/// One accepted connection, as handlers see it (a request extension).
#[derive(Debug, Clone)]
pub struct Connection {
    /// Cancelling it closes the connection, even when nothing is reading.
    pub kill: CancellationToken,
    /// The peer.
    pub remote: SocketAddr,
}

/// Raises the soft open-files limit to the hard limit and returns it.
fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect::<Vec<_>>();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
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
    let fd_limit = raise_open_files_limit();
    let max_subscribers = config.max_subscribers.unwrap_or_else(|| {
        usize::try_from(fd_limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
    });
    tracing::info!(
        open_files = fd_limit,
        max_subscribers,
        "open-files limit allows about {} subscribers",
        fd_limit.saturating_sub(RESERVED_FDS)
    );

    let tasks = TaskTracker::new();
    let (hub, log) = event_log::open(&config, max_subscribers, &tasks).await?;
    let app = App {
        hub: hub.clone(),
        log: log.clone(),
        stream: StreamSettings {
            keep_alive: config.keep_alive,
            retry: config.retry,
            max_topics: usize::try_from(config.max_topics_per_stream).unwrap_or(usize::MAX),
        },
        publish: Arc::new(PublishSettings {
            token: config.publish_token.clone(),
            max_body: config.max_body,
        }),
        dist: Arc::new(config.dist.clone()),
    };
    if app.dist.join("index.html").is_file() {
        tracing::info!(dist = %app.dist.display(), "serving the page at /");
    } else {
        tracing::info!(dist = %app.dist.display(), "no built page; / explains how to build it");
    }

    tasks.spawn(hub.clone().run_reaper(REAP_EVERY));
    if let Some(every) = config.ticker_interval {
        tasks.spawn(ticker::run(hub.clone(), log.clone(), every));
    }

    let service = cors(&config.cors_origins).layer(warp::service(routes(&app)));
    let graceful = GracefulShutdown::new();
    let force_close = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors, most often: back off briefly
                    // instead of spinning.
                    tracing::error!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            kill: force_close.child_token(),
            remote,
        };
        let kill = connection.kill.clone();
        let service = service.clone();
        let handler = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let started = Instant::now();
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            request.extensions_mut().insert(connection.clone());
            let mut service = service.clone();
            async move {
                let response = service.call(request).await?;
                tracing::info!(
                    %remote,
                    %method,
                    path,
                    status = response.status().as_u16(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "request"
                );
                Ok::<_, Infallible>(response)
            }
        });
        let watcher = graceful.watcher();
        tasks.spawn(async move {
            // HTTP/1.1 only: EventSource and curl speak it, and hyper-util's
            // protocol-sniffing `auto` builder costs about 10 KiB more per
            // idle connection.
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler);
            let conn = watcher.watch(conn);
            tokio::select! {
                result = conn => {
                    if let Err(error) = result {
                        tracing::debug!(%remote, %error, "connection ended with an error");
                    }
                }
                () = kill.cancelled() => {
                    tracing::debug!(%remote, "connection closed by the server");
                }
            }
        });
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
