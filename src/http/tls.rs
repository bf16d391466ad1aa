//! TLS for the API port: a certificate and key from PEM files, re-read when they change. A
//! Kubernetes Secret mounted as a volume is renewed by swapping its `..data` symlink, which leaves
//! the files' own paths unchanged: a change is noticed by where the path resolves to as well as by
//! the file's size and modification time.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read the TLS key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS set-up: {0}")]
    Config(String),
}

/// The certificate and key files, and what the server presents from them.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// What identifies the files' current content: where each path resolves to, its size and time.
type Stamp = Vec<Option<(PathBuf, u64, SystemTime)>>;

fn stamp(paths: &[&Path]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let resolved = std::fs::canonicalize(p).ok()?;
            let meta = std::fs::metadata(&resolved).ok()?;
            Some((resolved, meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        })
        .collect()
}

fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certificate { path: cert.display().to_string(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate { path: cert.display().to_string(), reason: "no certificate in it".into() });
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.display().to_string(), reason: e.to_string() })?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::Key { path: key.display().to_string(), reason: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Config(format!("the key does not belong to the certificate: {e}")))?;
    Ok(certified)
}

impl ReloadingCertificate {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = load(cert, key, &provider)?;
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// A server configuration that presents the current certificate (HTTP/2 and HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Re-reads the files whenever they change, until dropped. Files that do not load (half
    /// written, mismatched) keep the last good certificate in use, with a warning.
    pub async fn watch(self: Arc<Self>) {
        let paths = [self.cert.as_path(), self.key.as_path()];
        let mut last = stamp(&paths);
        let mut failed: Option<Stamp> = None;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let now = stamp(&paths);
            if now == last {
                continue;
            }
            match load(&self.cert, &self.key, &self.provider) {
                Ok(certified) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
                    last = now;
                    failed = None;
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                // Not recorded as seen: tried again on the next tick, when the rest may have
                // landed; warned about once per change.
                Err(error) => {
                    if failed.as_ref() != Some(&now) {
                        tracing::warn!(%error, "keeping the TLS certificate last loaded");
                        failed = Some(now);
                    }
                }
            }
        }
    }
}
