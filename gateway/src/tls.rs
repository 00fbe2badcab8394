//! RTMPS: RTMP over TLS. The server's certificate chain and private key come from PEM files;
//! the handshake is rustls's (through `tokio-rustls`) with the crypto provider the edge client
//! already uses (aws-lc-rs, through reqwest), so the binary carries one TLS stack.
//!
//! Each accepted connection gets [`HANDSHAKE_TIMEOUT`] to finish its TLS handshake; a failed
//! or slow one closes that connection only, and the RTMP connection ([`server::connection`])
//! then runs over the TLS stream like over TCP.
//!
//! A renewed certificate is taken without a restart: [`Certificate::reload`] (on SIGHUP)
//! reads the files again and new connections get it; connections already open keep theirs;
//! files that do not load leave the certificate in use as it was.
//!
//! [`server::connection`]: crate::server::connection

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::TlsError;
use crate::stream::Gateway;
use crate::{info, server, warn};

/// Time a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS server set-up of `cert` (a PEM certificate chain, the server's certificate first)
/// and `key` (a PEM private key: PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    server_config(cert, key).map(TlsAcceptor::from)
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key = private_key(key)?;
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The certificate RTMPS serves, from its files, reloadable.
#[derive(Debug)]
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

impl Certificate {
    /// The certificate of the files `cert` and `key` (see [`acceptor`]).
    ///
    /// # Errors
    /// A file that cannot be read, or that holds no usable certificate or key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            config: RwLock::new(server_config(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// What new connections are accepted with.
    pub fn current(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.config.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }

    /// Reads the files again; new connections get what they hold.
    ///
    /// # Errors
    /// As [`Certificate::load`]; the certificate in use is then kept.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.cert, &self.key)?;
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            reason: "no CERTIFICATE section".into(),
        });
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: match e {
            tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY section".into()
            }
            other => other.to_string(),
        },
    })
}

/// Accepts RTMPS connections forever: a TLS handshake (at most [`HANDSHAKE_TIMEOUT`]), then
/// the RTMP connection over it.
pub async fn serve(listener: TcpListener, certificate: Arc<Certificate>, gateway: Arc<Gateway>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                // Over the address's limit: closed at once, before any TLS work.
                let Some(slot) = gateway.admit(peer, "rtmps") else {
                    continue;
                };
                let gateway = Arc::clone(&gateway);
                let acceptor = certificate.current();
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = socket.set_nodelay(true);
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            info!(
                                "TLS handshake failed",
                                peer = peer.to_string(),
                                error = e.to_string()
                            );
                            return;
                        }
                        Err(_) => {
                            info!("TLS handshake timed out", peer = peer.to_string());
                            return;
                        }
                    };
                    if let Err(e) = server::connection(tls, &gateway).await {
                        info!("connection closed", peer = peer.to_string(), reason = e);
                    }
                });
            }
            Err(e) => {
                warn!("accept failed", error = e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn refused(cert: &Path, key: &Path) -> TlsError {
        match acceptor(cert, key) {
            Ok(_) => panic!("{} and {} were taken", cert.display(), key.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let missing = Path::new("/nonexistent/gateway/cert.pem");
        let key = temp("key-for-missing.pem", "");
        let err = refused(missing, &key);
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/gateway/cert.pem"),
            "{err}"
        );
    }

    #[test]
    fn files_without_pem_sections_are_refused() {
        let cert = temp("empty-cert.pem", "not a certificate\n");
        let key = temp("empty-key.pem", "not a key\n");
        let err = refused(&cert, &key);
        assert!(err.to_string().contains("no CERTIFICATE section"), "{err}");

        let cert = temp(
            "garbage-cert.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let err = refused(&cert, &key);
        assert!(err.to_string().contains("no PRIVATE KEY section"), "{err}");
    }

    #[test]
    fn a_key_that_is_no_key_is_a_config_error() {
        // PEM-framed, but neither the certificate nor the key is DER rustls can use.
        let cert = temp(
            "bad-cert.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let key = temp(
            "bad-key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let err = refused(&cert, &key);
        assert!(matches!(err, TlsError::Config(_)), "{err:?}");
    }
}
