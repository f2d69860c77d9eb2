//! Accepting connections, serving them, and shutting down gracefully.
//!
//! The accept loop is ours rather than `warp::serve` for three reasons. Each
//! connection is served ([`crate::connection`]) under the limits of [`crate::limits`]: deadlines,
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
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use warp::http::Request;

use crate::app::App;
use crate::connection::{self, Connection, Ended, Protocols};
use crate::cors::{CorsRules, WithCors};
use crate::event_log::{self, OpenError};
use crate::limits::{self, Admission, ConnectionCap, Limits};
use crate::metrics::{Metrics, Refusal};
use crate::request_log::log_request;
use crate::routes::{DirectStreams, Router};
use crate::settings::Settings;
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

/// Runs the server on `listener` until `shutdown` resolves, then ends every
/// stream, lets connections finish for `--shutdown-grace` and returns.
///
/// # Errors
/// [`OpenError`] when the event log cannot be opened (the data dir's store
/// cannot be read, the Redis URL cannot be used).
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OpenError> {
    let server = Server::start(listener, settings).await?;
    server.accept_until(shutdown).await;
    server.drain().await;
    Ok(())
}

/// The service every connection's requests go to: the routes behind CORS.
type Routes = WithCors<Router>;

/// A running server: its listener, its shared state, and what shutdown
/// waits for.
struct Server {
    listener: TcpListener,
    app: App,
    limits: Limits,
    protocols: Arc<Protocols>,
    service: Routes,
    /// Every task of the run: connections, background work.
    tasks: TaskTracker,
    /// Tells HTTP/1.1 connections to finish their request and close.
    graceful: GracefulShutdown,
    /// Closes whatever is left after the grace period.
    force_close: CancellationToken,
    shutdown_grace: Duration,
}

/// What one failed accept leads to.
enum AcceptPause {
    /// Paused, go on accepting.
    Resumed,
    /// Shutdown came during the pause.
    ShutDown,
}

impl Server {
    /// Opens the event log, builds the app and starts the background tasks
    /// (the reaper, the history's expiry sweep, the rate limiter's sweep, the ticker, the certificate's
    /// reload).
    async fn start(listener: TcpListener, settings: Settings) -> Result<Self, OpenError> {
        let open_files = limits::raise_open_files_limit();
        let limits = settings.connections.limits(open_files);
        let max_subscribers = settings.connections.max_subscribers(&limits);
        tracing::info!(
            open_files,
            max_connections = limits.max_connections,
            max_subscribers,
            "open-files limit allows {} connections",
            limits::connections_allowed(open_files)
        );
        let tasks = TaskTracker::new();
        let hub_options = settings.history.hub_options(max_subscribers);
        let (hub, log) = event_log::open(settings.log, hub_options, &tasks).await?;
        let app = App {
            hub,
            log,
            stream: settings.stream,
            publish: Arc::new(settings.publish),
            auth: Arc::new(settings.auth),
            limiter: settings.rate.map(|rate| Arc::new(rate.limiter())),
            dist: Arc::new(settings.dist),
            connections: Arc::new(ConnectionCap::new(limits.max_connections)),
            addr: listener.local_addr().unwrap_or(settings.addr),
            metrics: Arc::new(Metrics::default()),
            shutdown: CancellationToken::new(),
        };
        log_page(&app);
        spawn_background(
            &app,
            settings.ticker_interval,
            settings.tls.as_ref(),
            &tasks,
        );
        let cors = Arc::new(CorsRules::new(&settings.cors_origins));
        let protocols = Arc::new(Protocols {
            streams: Arc::new(DirectStreams::new(&app, cors.clone())),
            tls: settings.tls,
            h2c: settings.h2c,
            draining: app.shutdown.clone(),
            tasks: tasks.clone(),
        });
        Ok(Self {
            service: WithCors::new(Router::new(&app), cors),
            listener,
            app,
            limits,
            protocols,
            tasks,
            graceful: GracefulShutdown::new(),
            force_close: CancellationToken::new(),
            shutdown_grace: settings.shutdown_grace,
        })
    }

    /// Accepts connections until `shutdown` resolves, pausing after a
    /// failed accept (longer with each failure in a row).
    async fn accept_until(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut pause = ACCEPT_PAUSE_MIN;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, remote)) => {
                        pause = ACCEPT_PAUSE_MIN;
                        self.admit(tcp, remote);
                    }
                    Err(error) => {
                        if let AcceptPause::ShutDown =
                            self.pause_after(&error, pause, &mut shutdown).await
                        {
                            return;
                        }
                        pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                    }
                },
            }
        }
    }

    /// After a failed accept (out of file descriptors, most often: the
    /// connection stays queued and the listener ready, so retrying at once
    /// would spin), counts it, logs it now and then, and waits `pause`.
    async fn pause_after(
        &self,
        error: &std::io::Error,
        pause: Duration,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> AcceptPause {
        static LOGGED: Throttle = Throttle::new();
        Metrics::add(&self.app.metrics.accept_errors, 1);
        if let Some(left_out) = LOGGED.admit() {
            tracing::error!(
                %error,
                pause_ms = pause.as_millis(),
                not_logged_since_last = left_out,
                "accept failed; pausing"
            );
        }
        tokio::select! {
            () = shutdown => AcceptPause::ShutDown,
            () = tokio::time::sleep(pause) => AcceptPause::Resumed,
        }
    }

    /// Serves a new connection under the cap, or refuses it: with a 503
    /// while there is room to answer, else (and always over TLS, where an
    /// answer would cost a handshake) by closing it.
    fn admit(&self, tcp: TcpStream, remote: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let metrics = &self.app.metrics;
        match self.app.connections.admit() {
            Admission::Serve(slot) => {
                Metrics::add(&metrics.connections, 1);
                let connection = Connection::new(self.force_close.child_token(), remote);
                let handler = handler(self.service.clone(), connection.clone());
                let watcher = self.graceful.watcher();
                let metrics = metrics.clone();
                let protocols = self.protocols.clone();
                let limits = self.limits;
                self.tasks.spawn(async move {
                    let ended =
                        connection::serve(tcp, connection, limits, &protocols, handler, watcher)
                            .await;
                    // The socket is closed by now: its slot is free.
                    drop(slot);
                    record(&metrics, remote, ended);
                });
            }
            Admission::Refuse(answering) if self.protocols.tls.is_none() => {
                metrics.refuse(Refusal::TooManyConnections, Some(remote));
                let stop = self.force_close.clone();
                let max = self.app.connections.max();
                let limits = self.limits;
                self.tasks.spawn(async move {
                    tokio::select! {
                        () = connection::refuse(tcp, limits, max, answering) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
            Admission::Refuse(_) | Admission::Drop => {
                metrics.refuse(Refusal::TooManyConnections, Some(remote));
                drop(tcp);
            }
        }
    }

    /// Stops accepting, ends every stream, gives connections
    /// `--shutdown-grace` to finish, closes the rest, and waits for every
    /// task.
    async fn drain(self) {
        tracing::info!("shutting down: ending streams");
        drop(self.listener);
        self.app.shutdown.cancel();
        self.app.hub.close();
        self.tasks.close();
        if tokio::time::timeout(self.shutdown_grace, self.graceful.shutdown())
            .await
            .is_err()
        {
            tracing::info!("closing connections still open after the grace period");
        }
        self.force_close.cancel();
        self.tasks.wait().await;
        tracing::info!("shut down");
    }
}

/// Says whether `/` serves a built page.
fn log_page(app: &App) {
    if app.dist.join("index.html").is_file() {
        tracing::info!(dist = %app.dist.display(), "serving the page at /");
    } else {
        tracing::info!(dist = %app.dist.display(), "no built page; / explains how to build it");
    }
}

/// Starts the run's background tasks on `tasks`: the reaper of lagging
/// subscribers, the rate limiter's sweep, the demo ticker, and the
/// certificate's reload on SIGHUP.
fn spawn_background(
    app: &App,
    ticker_interval: Option<Duration>,
    tls: Option<&Arc<Tls>>,
    tasks: &TaskTracker,
) {
    tasks.spawn(app.hub.clone().run_reaper(REAP_EVERY));
    if app.hub.history_ttl().is_some() {
        tasks.spawn(app.hub.clone().run_expiry());
    }
    if let Some(limiter) = &app.limiter {
        tasks.spawn(limiter.clone().sweep_until(app.shutdown.clone()));
    }
    if let Some(every) = ticker_interval {
        tasks.spawn(ticker::run(app.log.clone(), every, app.shutdown.clone()));
    }
    if let Some(tls) = tls {
        tasks.spawn(tls.clone().reload_on_sighup(app.shutdown.clone()));
        tracing::info!(cert = %tls.cert().display(), "HTTPS (h2, http/1.1); SIGHUP reloads the certificate");
    }
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
        Ended::Broken(error) => {
            tracing::debug!(%remote, %error, "a stream's connection broke");
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
