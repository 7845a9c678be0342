//! TLS: a rustls server configuration (ring provider) from PEM files, and a task that reloads
//! it when the files change (cert-manager and kubelet rotate Secret volumes in place).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::metrics::{Metrics, ResultLabels};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no PEM certificate in {0}")]
    NoCertificate(String),
    #[error("bad certificate PEM in {path}: {message}")]
    BadCertificate { path: String, message: String },
    #[error("bad private key PEM in {path}: {message}")]
    BadKey { path: String, message: String },
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
}

/// A server configuration from PEM data (certificate chain, private key), with ring and ALPN
/// for HTTP/2 and HTTP/1.1.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &str,
    key_path: &str,
) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.into(),
        message: e.to_string(),
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// The certificate and key files, and what was last loaded from them.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    async fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((read(&self.cert).await?, read(&self.key).await?))
    }

    fn config(&self, cert: &[u8], key: &[u8]) -> Result<ServerConfig, TlsError> {
        server_config(
            cert,
            key,
            &self.cert.display().to_string(),
            &self.key.display().to_string(),
        )
    }

    /// Loads the configuration for the first time.
    pub async fn load(&self) -> Result<(RustlsConfig, Loaded), TlsError> {
        let (cert, key) = self.read().await?;
        let config = self.config(&cert, &key)?;
        Ok((
            RustlsConfig::from_config(Arc::new(config)),
            Loaded { cert, key },
        ))
    }

    /// Polls the files every `interval`; when their content changes and forms a valid
    /// configuration, swaps it in (new connections use it, open ones keep theirs). A half-written
    /// or mismatched pair is logged and retried at the next tick; the old certificate stays.
    pub async fn watch(
        self,
        config: RustlsConfig,
        mut loaded: Loaded,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (cert, key) = match self.read().await {
                Ok(files) => files,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read TLS files; keeping the current certificate");
                    continue;
                }
            };
            if cert == loaded.cert && key == loaded.key {
                continue;
            }
            match self.config(&cert, &key) {
                Ok(new) => {
                    config.reload_from_config(Arc::new(new));
                    metrics.served_certificate(&cert);
                    loaded = Loaded { cert, key };
                    metrics
                        .tls_reloads
                        .get_or_create(&ResultLabels { result: "ok" })
                        .inc();
                    tracing::info!(cert = %self.cert.display(), "reloaded TLS certificate");
                }
                Err(e) => {
                    metrics
                        .tls_reloads
                        .get_or_create(&ResultLabels { result: "error" })
                        .inc();
                    tracing::warn!(error = %e, "new TLS files are not usable yet; keeping the current certificate");
                    // Remember the bad pair so it is not retried (and logged) every tick.
                    loaded = Loaded { cert, key };
                }
            }
        }
    }
}

/// The bytes last loaded (compared on each poll; PEM files are small).
#[derive(Debug, Clone)]
pub struct Loaded {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Loaded {
    /// The certificate chain (PEM) loaded.
    pub fn cert(&self) -> &[u8] {
        &self.cert
    }
}
