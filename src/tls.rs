//! The certificate of the TLS listeners, re-read from disk when its files change.
//!
//! Pingora's rustls listener reads a certificate once when it is built. The gateway gives it
//! a certificate resolver instead ([`CertStore`]): every handshake takes the certificate in
//! force, and [`CertStore::reload_if_changed`] (called by the reload watcher) swaps in a new
//! one when the certificate or key file changed — a renewed certificate (cert-manager,
//! certbot) is served without a restart. A pair that does not load (half-written, key and
//! certificate that do not match) is refused and the previous one stays in force.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The files hold no certificate or no private key in PEM.
    #[error(
        "{cert} / {key}: no PEM certificate or no PEM private key (PKCS#8, PKCS#1 or SEC1) found"
    )]
    Missing {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// The key cannot sign, or does not belong to the certificate.
    #[error("{cert} / {key}: {reason}")]
    Unusable {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls says.
        reason: String,
    },
    /// The TLS listener settings could not be made.
    #[error("TLS listener settings: {0}")]
    Settings(String),
}

/// The certificate in force for the TLS listeners.
pub struct CertStore {
    cert_file: String,
    key_file: String,
    current: ArcSwap<CertifiedKey>,
    /// The file contents the certificate in force was loaded from.
    loaded_from: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: Path::new(path).to_path_buf(),
        source,
    })
}

/// Loads a certificate chain and its key as rustls serves them.
fn load(cert_file: &str, key_file: &str) -> Result<CertifiedKey, TlsError> {
    pingora::tls::install_default_crypto_provider();
    let missing = || TlsError::Missing {
        cert: cert_file.into(),
        key: key_file.into(),
    };
    let (certs, key) = pingora::tls::load_certs_and_key_files(cert_file, key_file)
        .map_err(|_| missing())?
        .ok_or_else(missing)?;
    let unusable = |reason: String| TlsError::Unusable {
        cert: cert_file.into(),
        key: key_file.into(),
        reason,
    };
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| unusable("no TLS crypto provider is installed".into()))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| unusable(e.to_string()))
}

/// Checks that `path` is a PEM bundle with at least one CA certificate; returns how many.
pub fn check_ca_file(path: &str) -> Result<usize, TlsError> {
    let mut store = pingora::tls::RootCertStore::empty();
    pingora::tls::load_ca_file_into_store(path, &mut store).map_err(|e| TlsError::Unusable {
        cert: path.into(),
        key: String::new(),
        reason: e.to_string(),
    })?;
    if store.is_empty() {
        return Err(TlsError::Missing {
            cert: path.into(),
            key: String::new(),
        });
    }
    Ok(store.len())
}

/// Checks that `cert_file` and `key_file` load as a servable pair (for `check-config`).
pub fn check_files(cert_file: &str, key_file: &str) -> Result<(), TlsError> {
    load(cert_file, key_file).map(|_| ())
}

impl CertStore {
    /// Loads the pair now; fails when it cannot be served.
    pub fn open(cert_file: &str, key_file: &str) -> Result<Arc<CertStore>, TlsError> {
        let contents = (read(cert_file)?, read(key_file)?);
        let key = load(cert_file, key_file)?;
        Ok(Arc::new(CertStore {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            current: ArcSwap::from_pointee(key),
            loaded_from: Mutex::new(contents),
        }))
    }

    /// Re-reads the pair when either file changed since it was loaded. `Ok(true)`: a new
    /// certificate is in force; `Ok(false)`: nothing changed; an error: the files changed
    /// but cannot be served, and the certificate in force stays (it is tried again at the
    /// next call, so a pair written in two steps is taken once both halves are there).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let contents = (read(&self.cert_file)?, read(&self.key_file)?);
        let mut loaded_from = match self.loaded_from.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if *loaded_from == contents {
            return Ok(false);
        }
        let key = load(&self.cert_file, &self.key_file)?;
        self.current.store(Arc::new(key));
        *loaded_from = contents;
        Ok(true)
    }

    /// The certificate file.
    pub fn cert_file(&self) -> &str {
        &self.cert_file
    }

    /// Pingora listener settings serving this store's certificate, HTTP/2 and HTTP/1.1 by
    /// ALPN.
    pub fn listener_settings(self: &Arc<Self>) -> Result<TlsSettings, TlsError> {
        let mut settings = TlsSettings::intermediate(&self.cert_file, &self.key_file)
            .map_err(|e| TlsError::Settings(e.to_string()))?;
        settings.set_cert_resolver(self.clone());
        settings.enable_h2();
        Ok(settings)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
