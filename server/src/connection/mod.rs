//! Serving one connection under the [`crate::limits`]: [`serve`] runs it
//! until hyper is done with it, it is killed ([`Connection::kill`]), or the
//! client of a stream leaves; [`refuse`] answers one over the cap.
//!
//! With `--tls-cert` it first completes the TLS handshake (within
//! `--header-timeout` of accept) and serves HTTP/2 or HTTP/1.1 as ALPN
//! chose; with `--h2c`, a cleartext connection that opens with HTTP/2's
//! preface is served as HTTP/2. An HTTP/2 connection (`h2.rs`) gives each
//! stream a kill switch of its own, so the reaper resets one stream, not
//! the connection its siblings share; `--h2-max-streams` bounds the streams
//! of one connection. The head deadline is `deadline.rs`'s, the socket
//! shared with hyper `socket.rs`'s.

mod deadline;
mod direct;
mod h2;
mod socket;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::Reply;

use crate::error::ApiError;
use crate::metrics::Refusal;
use crate::tls::{Tls, ALPN_H2};

use self::deadline::HeadTimer;
pub(crate) use self::direct::{DirectStream, OpenStream};
use self::socket::Socket;

use crate::limits::Limits;

/// How connections are spoken to, and what they share beyond the limits.
#[derive(Debug, Clone)]
pub(crate) struct Protocols {
    /// TLS (`--tls-cert`): every connection is HTTPS, HTTP/2 or HTTP/1.1 as
    /// ALPN chose.
    pub(crate) tls: Option<Arc<Tls>>,
    /// `--h2c`: a cleartext connection that opens with HTTP/2's preface is
    /// served as HTTP/2.
    pub(crate) h2c: bool,
    /// Cancelled at shutdown: HTTP/2 connections send `GOAWAY`.
    pub(crate) draining: CancellationToken,
    /// Where HTTP/2 streams run, so that shutdown waits for them.
    pub(crate) tasks: TaskTracker,
    /// Plain HTTP/1.1 `GET /stream` as the first request of a connection,
    /// answered below hyper (`direct.rs`).
    pub(crate) streams: Arc<dyn OpenStream>,
}

/// One accepted connection, as handlers see it (a request extension).
#[derive(Debug, Clone)]
pub struct Connection {
    /// Cancelling it closes the connection, even when nothing is reading it:
    /// the hub's reaper cuts a subscriber that fell behind this way, and
    /// shutdown closes what is left after the grace period.
    pub kill: CancellationToken,
    /// The peer, for logs.
    pub remote: SocketAddr,
    /// Told when a stream starts on this connection: from then on the
    /// connection's task watches for the client closing its end, which
    /// hyper no longer reads while a response is under way (half-closed
    /// requests are allowed so that they get their answer).
    stream_started: Arc<Notify>,
}

impl Connection {
    /// A connection that `kill` closes.
    pub fn new(kill: CancellationToken, remote: SocketAddr) -> Self {
        Self {
            kill,
            remote,
            stream_started: Arc::new(Notify::new()),
        }
    }

    /// The connection as one request sees it: over HTTP/2, its kill switch
    /// resets only that request's stream, and the others on the connection
    /// go on. Call it from the request's future, which runs in the stream.
    pub(crate) fn for_request(&self) -> Connection {
        match h2::stream_kill() {
            Some(kill) => Connection {
                kill,
                ..self.clone()
            },
            None => self.clone(),
        }
    }

    /// Says that this connection now carries a stream, which ends when the
    /// client closes its end of the connection.
    pub fn start_stream(&self) {
        self.stream_started.notify_one();
    }
}

/// What the socket, the head deadline and the connection's task share.
#[derive(Debug, Default)]
struct Activity {
    /// Bytes read from the client so far: a change means a request began.
    bytes_read: AtomicU64,
    /// Set when the deadline that fired was the idle one, not the head one.
    idle_expired: AtomicBool,
}

impl Activity {
    fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
}

/// How a served connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The client closed it, or hyper did after a `Connection: close`, or at
    /// shutdown.
    Done,
    /// Its kill switch was pulled.
    Killed,
    /// The client of its stream closed its end.
    ClientLeft,
    /// A keep-alive connection got no next request in `--idle-timeout`.
    Idle,
    /// A limit or the HTTP parser refused it.
    Refused(Refusal),
    /// Another error (the peer reset it, a write failed).
    Failed(hyper::Error),
    /// A stream answered below hyper could not be written (the peer reset
    /// the connection).
    Broken(std::io::Error),
}

/// The bytes a cleartext HTTP/2 connection opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection with `handler` under `limits` until hyper is done
/// with it, it is killed, or the client of its stream leaves. `graceful`
/// lets shutdown end it once its response is done.
///
/// With TLS the handshake comes first, within `--header-timeout` of
/// accept (the time left is the first request head's); ALPN then says
/// HTTP/2 or HTTP/1.1. With `--h2c`, a cleartext connection whose first
/// bytes are HTTP/2's preface is served as HTTP/2.
pub(crate) async fn serve<S, B>(
    tcp: TcpStream,
    connection: Connection,
    limits: Limits,
    protocols: &Protocols,
    handler: S,
    graceful: Watcher,
) -> Ended
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    h2::StreamExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    let accepted = Instant::now();
    let tcp = Arc::new(tcp);
    let activity = Arc::new(Activity::default());
    let socket = Socket::new(tcp.clone(), activity.clone());
    let served = Served {
        connection,
        limits,
        accepted,
        graceful,
        activity,
    };
    // Each way of serving is a future of its own, boxed: a connection's
    // task holds only the one it uses. Inline, every task would be as big
    // as the largest of them (the TLS session and HTTP/2's state, about
    // 8 KiB) on every plain HTTP/1.1 connection too.
    if let Some(tls) = &protocols.tls {
        return Box::pin(served.tls(socket, tls, protocols, handler)).await;
    }
    if protocols.h2c {
        return Box::pin(served.h2c(socket, protocols, handler)).await;
    }
    Box::pin(served.plain(socket, handler, protocols)).await
}

/// What every way of serving a connection needs.
struct Served {
    connection: Connection,
    limits: Limits,
    accepted: Instant,
    graceful: Watcher,
    activity: Arc<Activity>,
}

impl Served {
    /// HTTPS: the handshake within `--header-timeout` of accept, then
    /// HTTP/2 or HTTP/1.1 as ALPN chose.
    async fn tls<S, B>(self, socket: Socket, tls: &Tls, protocols: &Protocols, handler: S) -> Ended
    where
        S: HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        h2::StreamExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
    {
        let kill = self.connection.kill.clone();
        let handshake = tokio::time::timeout_at(
            self.accepted + self.limits.header_timeout,
            tls.acceptor().accept(socket),
        );
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(remote = %self.connection.remote, %error, "TLS handshake failed");
                    return Ended::Refused(Refusal::TlsHandshake);
                }
                Err(_) => return Ended::Refused(Refusal::TlsHandshake),
            },
            () = kill.cancelled() => return Ended::Killed,
        };
        let alpn_h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
        let io = TokioIo::new(stream);
        if alpn_h2 {
            return self.h2(io, protocols, handler).await;
        }
        // HTTP/1.1 over TLS: the socket carries TLS records, among them the
        // client's close_notify, so hyper itself reads to notice a client
        // that leaves (no half-closed requests here).
        self.h1(io, handler, None).await
    }

    /// `--h2c`: HTTP/2 when the connection opens with its preface,
    /// HTTP/1.1 otherwise.
    async fn h2c<S, B>(self, socket: Socket, protocols: &Protocols, handler: S) -> Ended
    where
        S: HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        h2::StreamExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
    {
        let sniffed = tokio::select! {
            sniffed = tokio::time::timeout_at(self.accepted + self.limits.header_timeout, sniff(socket)) => sniffed,
            () = self.connection.kill.cancelled() => return Ended::Killed,
        };
        match sniffed {
            Ok(Ok((socket, true))) => self.h2(TokioIo::new(socket), protocols, handler).await,
            Ok(Ok((socket, false))) => Box::pin(self.plain(socket, handler, protocols)).await,
            // The client broke the connection before its first request.
            Ok(Err(_)) => Ended::Done,
            Err(_) => Ended::Refused(Refusal::HeaderTimeout),
        }
    }

    /// Plain HTTP/1.1: a first request that is an ordinary `GET /stream`
    /// is answered below hyper (`direct.rs`); anything else goes to hyper
    /// with the bytes read so far.
    async fn plain<S, B>(self, mut socket: Socket, handler: S, protocols: &Protocols) -> Ended
    where
        S: HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut head = Vec::new();
        let deadline = self.accepted + self.limits.header_timeout;
        let max = self.limits.max_header_bytes;
        tokio::select! {
            // When the head is not in by the deadline, hyper's own head
            // timeout answers it at once.
            _ = tokio::time::timeout_at(deadline, direct::read_head(&mut socket, &mut head, max)) => {}
            // At shutdown, hyper closes a connection that has no request yet.
            () = protocols.draining.cancelled() => {}
            () = self.connection.kill.cancelled() => return Ended::Killed,
        }
        let opened = direct::asked(&head).and_then(|asked| {
            protocols
                .streams
                .open(&asked.target, asked.headers, &self.connection)
        });
        if let Some(stream) = opened {
            drop((head, handler));
            return Box::pin(self.stream(socket, stream)).await;
        }
        socket.unread(&head);
        drop(head);
        let tcp = socket.tcp().clone();
        Box::pin(self.h1(TokioIo::new(socket), handler, Some(&tcp))).await
    }

    /// Sends a stream below hyper until it ends, its kill switch is pulled,
    /// or its client leaves.
    async fn stream(self, mut socket: Socket, stream: DirectStream) -> Ended {
        let tcp = socket.tcp().clone();
        let ended = tokio::select! {
            ended = direct::send(&mut socket, stream) => ended,
            () = self.connection.kill.cancelled() => Ended::Killed,
            () = client_left(&tcp) => Ended::ClientLeft,
        };
        drop(self.graceful);
        ended
    }

    /// HTTP/2 on `io`, each stream with a kill switch of its own.
    async fn h2<I, S, B>(self, io: I, protocols: &Protocols, handler: S) -> Ended
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin,
        S: HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        h2::StreamExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
    {
        let draining = protocols.draining.clone();
        let tasks = protocols.tasks.clone();
        let kill = self.connection.kill.clone();
        let ended = h2::serve(
            io,
            kill,
            self.limits,
            self.accepted,
            handler,
            draining,
            tasks,
        )
        .await;
        drop(self.graceful);
        ended
    }

    /// HTTP/1.1 on `io`. `watch`, the TCP socket of a cleartext
    /// connection, is watched for the client of a stream leaving (hyper
    /// reads nothing then, with half-closed requests allowed).
    async fn h1<I, S, B>(self, io: I, handler: S, watch: Option<&TcpStream>) -> Ended
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
        S: HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Served {
            connection,
            limits,
            accepted,
            graceful,
            activity,
        } = self;
        let (connection, activity) = (&connection, &activity);
        // The first head's deadline counts from accept, a handshake or a sniff
        // included.
        let first_head = (accepted + limits.header_timeout)
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        // The builder is dropped here rather than kept in this future's state
        // for the connection's whole life.
        let served = {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(HeadTimer::new(
                activity.clone(),
                limits.header_timeout,
                limits.idle_timeout,
            ))
            .header_read_timeout(first_head)
            .max_header_size(limits.max_header_bytes)
            // A client that sends its request and then closes its sending side
            // (`nc -N`, some health probes) still gets the answer.
            .half_close(watch.is_some());
            // HTTP/1.1 only here: hyper-util's protocol-sniffing `auto` builder
            // costs about 10 KiB more per idle connection.
            graceful.watch(http.serve_connection(io, handler))
        };
        let client_left = async {
            match watch {
                Some(tcp) => stream_client_left(tcp, &connection.stream_started).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = served => match result {
                Ok(()) => Ended::Done,
                Err(error) if error.is_timeout() => {
                    if activity.idle_expired.load(Ordering::Relaxed) {
                        Ended::Idle
                    } else {
                        Ended::Refused(Refusal::HeaderTimeout)
                    }
                }
                Err(error) if error.is_parse_too_large() => Ended::Refused(Refusal::HeaderTooLarge),
                Err(error) if error.is_parse() => Ended::Refused(Refusal::MalformedRequest),
                Err(error) => Ended::Failed(error),
            },
            () = connection.kill.cancelled() => Ended::Killed,
            () = client_left => Ended::ClientLeft,
        }
    }
}

/// Reads the first bytes of a cleartext connection, as far as they could
/// be HTTP/2's preface; whether they are. What was read is handed to hyper
/// first.
async fn sniff(mut socket: Socket) -> std::io::Result<(Socket, bool)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; H2_PREFACE.len()];
    let mut got = 0;
    while got < head.len() {
        let n = socket.read(&mut head[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
        if head[..got] != H2_PREFACE[..got] {
            break;
        }
    }
    let h2 = head[..got] == *H2_PREFACE;
    socket.unread(&head[..got]);
    Ok((socket, h2))
}

/// Resolves once a stream has started on the connection and its client then
/// closed its end (or the connection broke). A client that sends bytes in
/// the middle of a stream is not watched any further: hyper does not read
/// them, so the end could not be told from them; its stream then ends when
/// a write fails.
async fn stream_client_left(tcp: &TcpStream, stream_started: &Notify) {
    stream_started.notified().await;
    client_left(tcp).await;
}

/// Resolves once the client closes its end of the connection (or it
/// broke); never once the client has sent a byte, which no one reads.
async fn client_left(tcp: &TcpStream) {
    let mut byte = [0u8; 1];
    // `poll_peek` shares the read waker with hyper's reads, which is fine:
    // both are polled by this connection's task.
    let peeked = std::future::poll_fn(|cx| tcp.poll_peek(cx, &mut ReadBuf::new(&mut byte))).await;
    match peeked {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Answers a connection over the cap, whatever it asks, with
/// `503 too_many_connections` and `Retry-After`, then closes it. The whole
/// exchange gets `--header-timeout`; `answering` is held meanwhile.
pub(crate) async fn refuse(
    tcp: TcpStream,
    limits: Limits,
    max_connections: usize,
    answering: OwnedSemaphorePermit,
) {
    let answer = hyper::service::service_fn(move |_request| async move {
        Ok::<_, std::convert::Infallible>(
            ApiError::TooManyConnections(max_connections).into_response(),
        )
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(false)
        .half_close(true);
    let served = http.serve_connection(TokioIo::new(tcp), answer);
    let _ = tokio::time::timeout(limits.header_timeout, served).await;
    drop(answering);
}
