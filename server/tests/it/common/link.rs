//! A TCP link between a server and its Redis that a test can pause (bytes
//! are held, as on a congested or partitioned network), cut (every
//! connection closed, new ones refused) and restore.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// What the link does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Forwards bytes both ways.
    Open,
    /// Holds bytes (reads are not forwarded until the link opens again).
    Paused,
    /// Closes every connection and refuses new ones.
    Cut,
}

/// Forwards connections on a loopback port to `backend`.
pub struct Link {
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    acceptor: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Link {
    pub async fn start(backend: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (state, _) = watch::channel(State::Open);
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = Arc::clone(&connections);
        let watcher = state.subscribe();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watcher.borrow() == State::Cut {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(backend).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let mut list = tracked.lock().expect("lock");
                list.retain(|handle| !handle.is_finished());
                for task in [
                    tokio::spawn(pump(client_read, server_write, watcher.clone())),
                    tokio::spawn(pump(server_read, client_write, watcher.clone())),
                ] {
                    list.push(task.abort_handle());
                }
            }
        });
        Link {
            addr,
            state,
            acceptor,
            connections,
        }
    }

    /// `redis://` URL of the link, for a server's `--redis`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Holds every byte from now on until [`Link::open`].
    pub fn pause(&self) {
        self.state.send_replace(State::Paused);
    }

    /// Closes every connection; new ones are refused until [`Link::open`].
    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
        for handle in self.connections.lock().expect("lock").drain(..) {
            handle.abort();
        }
    }

    /// Forwards again (what a pause held goes through).
    pub fn open(&self) {
        self.state.send_replace(State::Open);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.acceptor.abort();
        for handle in self.connections.lock().expect("lock").drain(..) {
            handle.abort();
        }
    }
}

/// Copies `from` to `to`, holding what it read while the link is paused.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<State>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(now) = state.wait_for(|s| *s != State::Paused).await.map(|s| *s) else {
            return;
        };
        if now == State::Cut {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
