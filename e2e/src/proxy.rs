//! A TCP proxy in front of the server whose connections the test can cut,
//! as a flaky network would, while the server keeps running; and which can
//! turn new connections away for a while, by closing them at once or by
//! answering `503` itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
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
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let now = *watcher.borrow();
                let task = tokio::spawn(async move {
                    match now {
                        Mode::Forward => {
                            if let Ok(mut server) = TcpStream::connect(backend).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
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
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
