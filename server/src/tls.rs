//! HTTPS: the certificate chain and key (PEM files given with `--tls-cert`
//! and `--tls-key`), the TLS settings every connection is accepted with,
//! and the certificate's reload on SIGHUP.
//!
//! TLS is rustls with the `ring` provider (no OpenSSL, nothing to build
//! but Rust and a little C). ALPN offers `h2` first, then `http/1.1`, so a
//! browser multiplexes every stream of an origin over one connection.
//!
//! A reload reads both files again and swaps the certificate that new
//! handshakes get; open connections keep the session they have, so no
//! stream is dropped. A new pair that cannot be read, or whose key does not
//! match the certificate, is logged and the old pair stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The ALPN protocol id of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("--tls-cert {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    #[error("--tls-key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key cannot be used, or is not the certificate's.
    #[error("--tls-key {key} does not fit --tls-cert {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The crypto provider: `ring`.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key, and
/// checks that the key is the certificate's.
///
/// # Errors
/// [`TlsError`] naming the file that is wrong.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    load_with(cert, key, &provider())
}

fn load_with(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let bad_cert = |reason: String| TlsError::Certificate {
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad_cert("no PEM certificate in the file".to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// The certificate new handshakes get; swapped by a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// TLS for the listener: the acceptor, and the files to reload.
pub struct Tls {
    /// Accepts a TLS connection with the current certificate.
    acceptor: TlsAcceptor,
    /// What the acceptor's certificate resolver hands out.
    current: Arc<Current>,
    /// The certificate chain's file.
    cert: PathBuf,
    /// The key's file.
    key: PathBuf,
    /// Loads keys on reload.
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS 1.2 and 1.3 with the pair in `cert` and `key`, ALPN `h2` and
    /// `http/1.1`.
    ///
    /// # Errors
    /// [`TlsError`] when the files cannot be used.
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let provider = provider();
        let current = Arc::new(Current(RwLock::new(Arc::new(load_with(
            cert, key, &provider,
        )?))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
        })
    }

    /// The certificate file.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The acceptor for new connections.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again: new handshakes get the new pair; on error the
    /// current one stays.
    ///
    /// # Errors
    /// [`TlsError`] when the new files cannot be used.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_with(&self.cert, &self.key, &self.provider)?;
        *self.current.0.write() = Arc::new(fresh);
        Ok(())
    }

    /// Reloads on every SIGHUP until `stop` is cancelled, logging the
    /// outcome.
    pub(crate) async fn reload_on_sighup(self: Arc<Self>, stop: CancellationToken) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGHUP: no certificate reload");
                    return;
                }
            };
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    received = hangups.recv() => {
                        if received.is_none() {
                            return;
                        }
                    }
                }
                match self.reload() {
                    Ok(()) => tracing::info!(
                        cert = %self.cert.display(),
                        "SIGHUP: certificate reloaded; new connections use it"
                    ),
                    Err(error) => tracing::error!(
                        %error,
                        "SIGHUP: the new certificate cannot be used; keeping the current one"
                    ),
                }
            }
        }
        #[cfg(not(unix))]
        stop.cancelled().await;
    }
}
