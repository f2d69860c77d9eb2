//! The TCP connection as hyper's transport, shared with the connection's
//! task.
//!
//! hyper owns its transport, but the task must still look at the socket
//! while a stream is under way: with half-closed requests allowed, hyper
//! reads nothing then, and a subscriber whose client closed the connection
//! would otherwise be noticed only when a write fails, up to two keep-alive
//! intervals later. So both hold the `TcpStream` through an `Arc` and use
//! its `&self` readiness API; the task only peeks. Reads are also counted,
//! for the head deadline.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Activity;

/// hyper's side of a shared `TcpStream`.
#[derive(Debug)]
pub(super) struct Socket {
    /// The connection.
    tcp: Arc<TcpStream>,
    /// Where reads are counted.
    activity: Arc<Activity>,
    /// Bytes read already (to tell HTTP/2 from HTTP/1.1), handed out before
    /// the socket's; empty, and unallocated, on most connections.
    unread: Vec<u8>,
}

impl Socket {
    pub(super) fn new(tcp: Arc<TcpStream>, activity: Arc<Activity>) -> Self {
        Self {
            tcp,
            activity,
            unread: Vec::new(),
        }
    }

    /// The connection, as the task watches it.
    pub(super) fn tcp(&self) -> &Arc<TcpStream> {
        &self.tcp
    }

    /// Puts `bytes` back before what the socket reads next.
    pub(super) fn unread(&mut self, bytes: &[u8]) {
        self.unread.splice(0..0, bytes.iter().copied());
    }
}

/// Retries `io` until it does not answer `WouldBlock`, waiting for
/// readiness (`ready`) in between.
fn poll_io<T>(
    cx: &mut Context<'_>,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    mut io: impl FnMut() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        ready!(ready(cx))?;
        match io() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.drain(..n);
            if this.unread.is_empty() {
                this.unread = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        let tcp = &this.tcp;
        // Into the unfilled part as it is: zeroing it first would make all
        // of hyper's read buffer resident on every idle connection.
        let n = ready!(poll_io(
            cx,
            |cx| tcp.poll_read_ready(cx),
            || tcp.try_read_buf(buf)
        ))?;
        this.activity
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.tcp;
        poll_io(cx, |cx| tcp.poll_write_ready(cx), || tcp.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.tcp;
        poll_io(
            cx,
            |cx| tcp.poll_write_ready(cx),
            || tcp.try_write_vectored(bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.tcp).shutdown(std::net::Shutdown::Write))
    }
}
