//! Whether a process of a target answers yet: `PING` for a Redis, one
//! `GET` for a server or a backend (over TLS for a server serving HTTPS).

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::http::parse_head;
use crate::target::Endpoint;

/// Sends `PING` to the Redis at `addr`; `Ok` once it answers `+PONG` (not
/// while it is still loading its data).
///
/// # Errors
/// When the connection fails, times out, or the answer is another.
pub async fn ping(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while !buf.ends_with(b"\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("closed before answering");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if buf != b"+PONG\r\n" {
            bail!("answered {:?}", String::from_utf8_lossy(&buf).trim_end());
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .context("timed out")?
}

/// One `GET` on a fresh connection; `Ok` with the status when the server
/// answered with one below 500.
///
/// # Errors
/// When the connection fails, the answer is not HTTP, or the status is 5xx.
pub async fn probe(endpoint: &Endpoint) -> anyhow::Result<u16> {
    probe_with(endpoint, None).await
}

/// As [`probe`], over TLS when `tls` is given.
///
/// # Errors
/// As [`probe`], and when the handshake fails.
pub async fn probe_with(endpoint: &Endpoint, tls: Option<&TlsConnector>) -> anyhow::Result<u16> {
    let io = async {
        let (mut stream, _) = crate::tls::connect(endpoint.addr, tls).await?;
        stream
            .write_all(
                format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    endpoint.path,
                    endpoint.host()
                )
                .as_bytes(),
            )
            .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("closed before the response head");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((head, _)) = parse_head(&buf)? {
                return Ok(head.status);
            }
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .context("timed out")??;
    if status >= 500 {
        bail!("status {status}");
    }
    Ok(status)
}
