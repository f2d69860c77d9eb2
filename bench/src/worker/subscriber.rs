//! One subscriber of a worker: it connects from the worker's source
//! address, reads its stream through the HTTP body decoder and the shared
//! WHATWG [`Parser`] into the worker's [`State`], and follows the
//! coordinator's wishes (reconnect, rejoin, stall, quit).

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use shared::{Item, Parser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::state::State;
use super::Control;
use crate::http::{parse_head, subscribe_request, BodyDecoder};
use crate::target::Endpoint;

/// How long one connection attempt (connect, request, response head) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause before a subscriber reconnects after its stream broke.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// How many times in a row a subscriber tries to reconnect before it gives up.
const MAX_RETRIES: u32 = 5;
/// Bytes read from a stream at a time.
const READ_BUF: usize = 8 * 1024;

/// How a stream ended.
enum End {
    Quit,
    Reconnect(Option<String>),
    /// Stay away this long, then resume from the last event id.
    Away(Duration),
    Broken(String),
}

/// Connects, sends the request and reads the response head.
async fn open(
    endpoint: &Endpoint,
    source: Ipv4Addr,
    last_event_id: Option<&str>,
) -> Result<(TcpStream, BodyDecoder, Vec<u8>), String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let mut stream = socket
        .connect(endpoint.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", endpoint.addr))?;
    stream
        .write_all(&subscribe_request(endpoint, last_event_id))
        .await
        .map_err(|e| format!("send request: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read response head: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response head".to_owned());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some((parsed, len)) = parse_head(&head).map_err(|e| e.to_string())? {
            if parsed.status != 200 {
                return Err(format!("status {}", parsed.status));
            }
            return Ok((stream, BodyDecoder::new(parsed.body), head.split_off(len)));
        }
    }
}

pub(super) struct Ctx {
    pub(super) idx: usize,
    /// The subscriber's group in the topic plan.
    pub(super) group: usize,
    pub(super) endpoint: Rc<Endpoint>,
    pub(super) source: Ipv4Addr,
    pub(super) state: Rc<RefCell<State>>,
    pub(super) gate: Rc<Semaphore>,
}

impl Ctx {
    /// Counts a failed connection attempt (the first one: an initial
    /// failure).
    fn connect_failed(&self, first: bool, error: String) {
        let mut state = self.state.borrow_mut();
        state.connect_errors += 1;
        if first {
            state.initial_failed += 1;
        }
        state.note_error(error);
    }

    /// Marks the subscriber open on `stream`.
    fn connected(&self, stream: &TcpStream, first: bool) {
        let mut state = self.state.borrow_mut();
        state.subs[self.idx].port = stream.local_addr().map_or(0, |a| a.port());
        state.subs[self.idx].open = true;
        if first {
            state.initial_ok += 1;
        }
    }

    /// Marks the subscriber gone for a while; the id it resumes from, as
    /// `EventSource` keeps it.
    fn left(&self) -> Option<String> {
        let mut state = self.state.borrow_mut();
        let sub = &mut state.subs[self.idx];
        sub.open = false;
        sub.warm = false;
        sub.last_id.clone()
    }

    /// Counts a stream that broke (`error`); the id of the newest measured
    /// event the subscriber has, to resume from.
    fn broken(&self, error: String) -> Option<String> {
        let mut state = self.state.borrow_mut();
        state.disconnects += 1;
        if let Some(g) = state.group(self.idx) {
            g.disconnects += 1;
        }
        state.note_error(error);
        let sub = &mut state.subs[self.idx];
        sub.open = false;
        sub.warm = false;
        sub.ring.back().map(|(_, id)| id.clone())
    }
}

/// Waits `pause`; false when everything ends meanwhile.
async fn stay_away(pause: Duration, control: &mut watch::Receiver<Control>) -> bool {
    let quit = async {
        loop {
            if control.changed().await.is_err() || control.borrow().quit {
                return;
            }
        }
    };
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        () = quit => false,
    }
}

/// One subscriber, from its first connection until [`Control::quit`].
pub(super) async fn subscriber(ctx: Ctx, mut control: watch::Receiver<Control>) {
    let mut resume: Option<String> = None;
    let mut generation = control.borrow().generation;
    let mut rejoin = control.borrow().rejoin;
    let mut first = true;
    let mut failures = 0u32;
    loop {
        if control.borrow().quit {
            return;
        }
        let attempt = {
            let _permit = ctx.gate.acquire().await;
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                open(&ctx.endpoint, ctx.source, resume.as_deref()),
            )
            .await
            .unwrap_or_else(|_| Err("timed out connecting".to_owned()))
        };
        let was_first = std::mem::replace(&mut first, false);
        let (stream, decoder, leftover) = match attempt {
            Ok(open) => open,
            Err(e) => {
                ctx.connect_failed(was_first, e);
                failures += 1;
                if was_first || failures > MAX_RETRIES {
                    return;
                }
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        ctx.connected(&stream, was_first);
        match read_stream(
            &ctx,
            stream,
            decoder,
            &leftover,
            &mut control,
            (&mut generation, &mut rejoin),
        )
        .await
        {
            End::Quit => return,
            End::Reconnect(id) => {
                failures = 0;
                resume = id;
            }
            End::Away(pause) => {
                failures = 0;
                resume = ctx.left();
                if !stay_away(pause, &mut control).await {
                    return;
                }
            }
            End::Broken(e) => {
                resume = ctx.broken(e);
                failures += 1;
                if failures > MAX_RETRIES {
                    return;
                }
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

async fn read_stream(
    ctx: &Ctx,
    mut stream: TcpStream,
    mut decoder: BodyDecoder,
    leftover: &[u8],
    control: &mut watch::Receiver<Control>,
    (generation, rejoin): (&mut u32, &mut u32),
) -> End {
    let mut parser = Parser::new();
    let mut items = Vec::new();
    let mut feed = |bytes: &[u8], decoder: &mut BodyDecoder, items: &mut Vec<Item>| {
        decoder
            .decode(bytes, |body| parser.feed(body, items))
            .map_err(|e| e.to_string())
    };
    if let Err(e) = feed(leftover, &mut decoder, &mut items) {
        return End::Broken(e);
    }
    ctx.state
        .borrow_mut()
        .on_items(ctx.idx, &mut items, crate::now_ns());
    let mut buf = vec![0u8; READ_BUF];
    loop {
        tokio::select! {
            biased;
            changed = control.changed() => {
                if changed.is_err() {
                    return End::Quit;
                }
                let wish = *control.borrow_and_update();
                if wish.quit {
                    return End::Quit;
                }
                if wish.generation != *generation {
                    *generation = wish.generation;
                    let id = ctx.state.borrow_mut().prepare_reconnect(ctx.idx, wish.behind);
                    return End::Reconnect(id);
                }
                if wish.rejoin != *rejoin {
                    *rejoin = wish.rejoin;
                    if wish.rejoin_group == ctx.group {
                        return End::Away(Duration::from_millis(wish.rejoin_after_ms));
                    }
                }
                if (ctx.idx as u64) < u64::from(wish.stall_below) {
                    ctx.state.borrow_mut().subs[ctx.idx].stalled = true;
                    // Keep the connection open without reading until the end.
                    loop {
                        if control.changed().await.is_err() || control.borrow().quit {
                            return End::Quit;
                        }
                    }
                }
            }
            read = stream.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return End::Broken("the server ended the stream".to_owned()),
                    Ok(n) => n,
                    Err(e) => return End::Broken(format!("read: {e}")),
                };
                let now = crate::now_ns();
                if let Err(e) = feed(&buf[..n], &mut decoder, &mut items) {
                    return End::Broken(e);
                }
                ctx.state.borrow_mut().on_items(ctx.idx, &mut items, now);
                if decoder.is_done() {
                    return End::Broken("the response body ended".to_owned());
                }
            }
        }
    }
}
