//! A TCP proxy in front of the server whose connections the test can cut,
//! as a flaky network would, while the server keeps running.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Forwards every connection to a backend until dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    acceptor: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
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
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
