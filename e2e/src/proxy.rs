//! A TCP proxy in front of the server whose connections the test can cut,
//! as a flaky network would, while the server keeps running; which can
//! turn new connections away for a while, by closing them at once or by
//! answering `503` itself; and which can hold back what the server sends
//! and release it in one write, as a buffering proxy does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// What the proxy does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards it to the backend.
    Forward,
    /// Closes it at once: a network error to the browser, which keeps
    /// reconnecting on its own.
    Refuse,
    /// Answers `503` without asking the backend: the browser gives up on
    /// the `EventSource`, and the page reopens it on its own.
    Unavailable,
}

/// Forwards every connection to a backend until dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    acceptor: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    mode: watch::Sender<Mode>,
    held: watch::Sender<bool>,
    /// Frames held back since the last [`Proxy::hold`].
    frames_held: watch::Sender<usize>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `backend`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(backend: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = Arc::clone(&connections);
        let (mode, watcher) = watch::channel(Mode::Forward);
        let (held, hold_watcher) = watch::channel(false);
        let (frames_held, _) = watch::channel(0usize);
        let counter = frames_held.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let now = *watcher.borrow();
                let hold = hold_watcher.clone();
                let counter = counter.clone();
                let task = tokio::spawn(async move {
                    match now {
                        Mode::Forward => {
                            if let Ok(server) = TcpStream::connect(backend).await {
                                let (mut client_read, client_write) = client.into_split();
                                let (server_read, mut server_write) = server.into_split();
                                let up = async {
                                    let _ =
                                        tokio::io::copy(&mut client_read, &mut server_write).await;
                                    let _ = server_write.shutdown().await;
                                };
                                let down = downstream(server_read, client_write, hold, counter);
                                let _ = tokio::join!(up, down);
                            }
                        }
                        Mode::Refuse => {}
                        Mode::Unavailable => {
                            let _ = client
                                .write_all(
                                    b"HTTP/1.1 503 Service Unavailable\r\n\
                                      content-length: 0\r\nconnection: close\r\n\r\n",
                                )
                                .await;
                        }
                    }
                });
                if let Ok(mut list) = tracked.lock() {
                    list.retain(|handle| !handle.is_finished());
                    list.push(task.abort_handle());
                }
            }
        });
        Ok(Self {
            addr,
            acceptor,
            connections,
            mode,
            held,
            frames_held,
        })
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every open connection (both sides); new ones are still
    /// accepted. Returns how many were cut.
    pub fn cut(&self) -> usize {
        let cut: Vec<AbortHandle> = match self.connections.lock() {
            Ok(mut list) => list.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let open = cut.iter().filter(|handle| !handle.is_finished()).count();
        for handle in cut {
            handle.abort();
        }
        open
    }

    /// From now on, closes new connections at once (a network error).
    pub fn refuse(&self) {
        self.mode.send_replace(Mode::Refuse);
    }

    /// From now on, answers new connections with `503`.
    pub fn unavailable(&self) {
        self.mode.send_replace(Mode::Unavailable);
    }

    /// From now on, forwards new connections again.
    pub fn forward(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Holds back what the server sends on every connection, open or new,
    /// until [`Proxy::release`].
    pub fn hold(&self) {
        self.frames_held.send_replace(0);
        self.held.send_replace(true);
    }

    /// Waits until the proxy holds back at least `frames` event-stream
    /// frames (blocks ended by a blank line), over all its connections.
    ///
    /// # Errors
    /// When that many do not come within `within`.
    pub async fn wait_held(&self, frames: usize, within: std::time::Duration) -> Result<()> {
        let mut held = self.frames_held.subscribe();
        tokio::time::timeout(within, held.wait_for(|n| *n >= frames))
            .await
            .with_context(|| format!("the proxy did not hold {frames} frames"))?
            .context("the proxy stopped")?;
        Ok(())
    }

    /// Sends everything held back, each connection's bytes in one write,
    /// and forwards as it comes again.
    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

/// Copies the server's bytes to the client, keeping them while `held` is
/// true and writing what was kept in one go when it turns false; counts the
/// frames it keeps in `frames_held`.
async fn downstream(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut held: watch::Receiver<bool>,
    frames_held: watch::Sender<usize>,
) -> std::io::Result<()> {
    let mut buf = vec![0; 16 * 1024];
    let mut kept = Vec::new();
    let mut gate = true;
    // Whether the last byte read was a line feed: a blank line may straddle
    // two reads.
    let mut after_newline = false;
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    to.write_all(&kept).await?;
                    return to.shutdown().await;
                }
                if *held.borrow() {
                    let frames = count_frame_ends(&buf[..n], &mut after_newline);
                    frames_held.send_modify(|held| *held += frames);
                }
                kept.extend_from_slice(&buf[..n]);
            }
            changed = held.changed(), if gate => {
                // The proxy is gone: nothing will hold any more.
                gate = changed.is_ok();
            }
        }
        if !*held.borrow() && !kept.is_empty() {
            to.write_all(&kept).await?;
            to.flush().await?;
            kept.clear();
        }
    }
}

/// Blank lines (`\n\n`, CRs aside) in `bytes`, given whether the bytes
/// before ended with a line feed; updates that for the next call.
fn count_frame_ends(bytes: &[u8], after_newline: &mut bool) -> usize {
    let mut ends = 0;
    for &byte in bytes {
        match byte {
            b'\n' if *after_newline => {
                ends += 1;
                *after_newline = false;
            }
            b'\n' => *after_newline = true,
            b'\r' => {}
            _ => *after_newline = false,
        }
    }
    ends
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
