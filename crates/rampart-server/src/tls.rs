//! Native TLS: the server certificate and key (`RAMPART_TLS_CERT_FILE`,
//! `RAMPART_TLS_KEY_FILE`) and the CA roots of an https upstream (`RAMPART_UPSTREAM_CA_FILE`).
//!
//! # Security considerations
//! - rustls with the ring provider and its safe defaults: TLS 1.3 and 1.2 with forward-secret
//!   AEAD suites only. ALPN offers `h2` then `http/1.1`.
//! - Every file is read and checked at startup; an unreadable file, a file without a
//!   certificate or key, or a key that does not belong to the certificate stops startup with
//!   the setting named. The files are read once: rotate a certificate by restarting.
//! - The handshake must finish within `RAMPART_HEADER_READ_TIMEOUT` (10 s by default), so slow
//!   or stalled handshakes cannot hold connections.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::proxy::TlsSettings;
use crate::startup::StartupError;

const CERT: &str = "RAMPART_TLS_CERT_FILE";
const KEY: &str = "RAMPART_TLS_KEY_FILE";

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, StartupError> {
    std::fs::read(path).map_err(|e| {
        StartupError::new(setting, format!("cannot read {}: {}", path.display(), e.kind()))
    })
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err("no certificate found".to_owned());
    }
    Ok(certs)
}

/// The rustls server configuration of `settings`: certificate chain and key checked to match,
/// ALPN `h2` and `http/1.1`.
///
/// # Errors
/// A [`StartupError`] naming the certificate or key setting.
pub fn server_config(settings: &TlsSettings) -> Result<ServerConfig, StartupError> {
    let cert_pem = read(&settings.cert_file, CERT)?;
    let key_pem = read(&settings.key_file, KEY)?;
    let certs = certificates(&cert_pem)
        .map_err(|m| StartupError::new(CERT, format!("{}: {m}", settings.cert_file.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        StartupError::new(
            KEY,
            format!("{}: no PEM private key found ({e})", settings.key_file.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::new(CERT, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            StartupError::new(KEY, format!("the key does not fit the certificate ({e})"))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS acceptor for `settings`.
///
/// # Errors
/// As [`server_config`].
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, StartupError> {
    server_config(settings).map(|c| TlsAcceptor::from(Arc::new(c)))
}

/// The CA certificates of a PEM file, as trust roots.
///
/// # Errors
/// A message when the file cannot be read or holds no usable certificate.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(&pem).map_err(|m| format!("{}: {m}", path.display()))? {
        roots.add(cert).map_err(|e| format!("{}: unusable certificate ({e})", path.display()))?;
    }
    Ok(roots)
}
