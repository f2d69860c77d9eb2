//! TLS for the `https` workload: a self-signed certificate for 127.0.0.1
//! made with rcgen (the files a server is started with), and the client
//! side that trusts it (rustls, as our server uses).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The ALPN id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// A certificate for 127.0.0.1 and its key, as PEM files in a temporary
/// directory of their own (removed when this is dropped).
#[derive(Debug)]
pub struct TlsFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    certificate: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Makes a fresh self-signed certificate for `127.0.0.1`.
    ///
    /// # Errors
    /// When the key cannot be made or the files cannot be written.
    pub fn make() -> anyhow::Result<Self> {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .context("cannot make a certificate")?;
        let dir = tempfile::Builder::new().prefix("bench-tls-").tempdir()?;
        // nginx's workers run as another user (its master reads these).
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, made.cert.pem())?;
        std::fs::write(&key, made.signing_key.serialize_pem())?;
        Ok(Self {
            cert,
            key,
            certificate: made.cert.der().clone(),
            _dir: dir,
        })
    }

    /// A client that trusts this certificate alone and offers `alpn`.
    ///
    /// # Errors
    /// When rustls refuses the certificate or the settings.
    pub fn connector(&self, alpn: &[&[u8]]) -> anyhow::Result<TlsConnector> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.certificate.clone())?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// A byte stream to a server: a TCP connection, or TLS over one.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Connects to `addr` (with TCP_NODELAY), over TLS when `tls` is given;
/// with TLS, also the protocol the server chose by ALPN.
///
/// # Errors
/// When the connection or the handshake fails.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
) -> std::io::Result<(Box<dyn Io>, Option<Vec<u8>>)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(match tls {
        Some(tls) => {
            let stream = tls
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await?;
            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            (Box::new(stream), alpn)
        }
        None => (Box::new(tcp), None),
    })
}
